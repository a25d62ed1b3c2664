"""Convert one source: reader → converter → row validation → per-source Parquet (+ rejects, counts).

The result is committed as one unit: everything is written into a temporary folder that is renamed
to its final name (`<work>/convert/<source>/<key>/`) only when complete, so a killed build never
leaves a half-converted source that a later run could mistake for a finished one. The key covers
everything the output depends on (tool version, catalogue entry, converter version, file checksums),
so an unchanged source is never converted twice.

Two ways through a source give the same bytes. Records go through the converter one by one, or, for
the converters that have a column-wise twin (the generic ones, huatuo26m, toyhom), a batch at a time: the
twin shapes the batch into flat columns, etl/batchrows.py checks and hashes them with Arrow kernels,
and only the records the twin cannot take (anything unusual, every would-be reject) go through the
converter one by one, in their place. Rows are written in row groups of exactly BATCH_ROWS rows, so
the Parquet bytes depend on the rows alone.

A large source is converted in work units (`plan_units` → `convert_unit` anywhere → `merge_units`):
one per file, a large JSON Lines or text file cut into byte ranges at line boundaries. Each unit
writes into its own temporary folder with a log of the content hashes and native ids it numbered;
the merge concatenates the units in order, renumbers the ids as one pass would have (`-2` suffixes
run across units), sums the counts and commits like `convert_source`. A native id claimed by two
units would need a `duplicate_id` reject with the record's text, so that source is converted whole.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from etl import __version__
from etl.batchrows import check, constants_problem, rows_table
from etl.catalog import Source
from etl.convert.base import Filtered, RecordContext, Reject, Shaped, get_converter
from etl.convert.shape import SCHEMA_MISMATCH, mismatch_by_file
from etl.faults import checkpoint
from etl.fetch.base import FetchedSource
from etl.read.base import RawRecord, ReadError, SourceFile, SourceFileError, cut, get_reader
from etl.read.containers import GZIP_MAGIC, check_payload, is_zip
from etl.read.encoding import ENCODING_SAMPLE, detect_encoding
from etl.read.jsonfamily import _json_lines as json_lines
from etl.read.jsonfamily import sniff_layout
from etl.read.streams import SNIFF_BYTES, buffered
from etl.read.text import parse_text_lines
from etl.rows import RowBuilder
from etl.schemas import REJECTS_SCHEMA, arrow_schema, json_schema
from etl.seen import NativeIds, SeenKeys, digest_key
from etl.write import RowGroupWriter

log = logging.getLogger(__name__)

BATCH_ROWS = 5_000
DONE = "DONE"


@dataclass
class SourceCounts:
    read: int = 0
    converted: int = 0
    rejected: int = 0
    filtered: int = 0
    rows: int = 0
    eval_rows: int = 0
    partial_rejects: int = 0
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    filtered_by_reason: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read, "converted": self.converted, "rejected": self.rejected,
            "filtered": self.filtered, "rows": self.rows, "eval_rows": self.eval_rows,
            "partial_rejects": self.partial_rejects,
            "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
            "filtered_by_reason": dict(sorted(self.filtered_by_reason.items())),
        }


@dataclass(frozen=True)
class Converted:
    """Where a converted source lives and what happened to its records."""

    source_id: str
    key: str
    folder: Path
    counts: dict[str, Any]
    from_cache: bool

    @property
    def rows_path(self) -> Path:
        return self.folder / "rows.parquet"

    @property
    def eval_path(self) -> Path:
        return self.folder / "eval.parquet"

    @property
    def rejects_path(self) -> Path:
        return self.folder / "rejects.parquet"


def conversion_key(source: Source, fetched: FetchedSource) -> str:
    converter = get_converter(source.format)
    parts = {
        "tool": __version__,
        "entry": source.entry_hash(),
        "converter": [converter.name, converter.version],
        "schema": json_schema(source.task),  # a changed output schema invalidates every cached conversion
        "files": [[f.relpath, f.sha256] for f in fetched.files],
    }
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _reject_row(source_id: str, file: str, location: str, reason: str, message: str, raw: Any) -> dict[str, str]:
    if not isinstance(raw, str):
        try:
            raw = json.dumps(raw, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            raw = repr(raw)
    return {"source": source_id, "file": file, "location": location, "reason": reason,
            "message": message, "raw": cut(raw)}


def _records(source: Source, files: list[SourceFile]) -> Iterator[RawRecord | ReadError]:
    converter = get_converter(source.format)
    read = get_reader(source.reader or converter.reader)
    return read(files, dict(source.options))


class _Conversion:
    """Records → the three Parquet files of `folder` and the counts. Records go through the converter
    one by one, or, when it has a column-wise twin and `columnar` is set, a batch at a time
    (etl/batchrows.py), the records the twin cannot take going through the converter one by one in
    their place. `units`: the output of one unit of a source, with the `_hash` column and `ids.json`
    that `merge_units` renumbers ids from."""

    def __init__(self, source: Source, folder: Path, columnar: bool, units: bool = False) -> None:
        self.source = source
        self.converter = get_converter(source.format)
        self.columns = self.converter.columns if columnar and source.task in ("sft", "pretrain") else None
        self.units = units
        self.folder = folder
        schema = arrow_schema(source.task)
        if units:
            schema = schema.append(pa.field("_hash", pa.int64()))
        self.rows_out = RowGroupWriter(folder / "rows.parquet", schema, BATCH_ROWS)
        self.eval_out = RowGroupWriter(folder / "eval.parquet", schema, BATCH_ROWS)
        self.rejects_out = RowGroupWriter(folder / "rejects.parquet", REJECTS_SCHEMA, BATCH_ROWS)
        self.writers = (self.rows_out, self.eval_out, self.rejects_out)
        self.counts = SourceCounts()
        self.builder = RowBuilder(source, log=units)
        self._split_problems: dict[str, str | None] = {}
        self._file_splits: dict[str, str] = {}
        self._eval_splits: set[str] = set()  # the splits seen so far that are eval splits
        self.columnar_rows = 0  # rows the column-wise path built (the rest went record by record)

    def run(self, items: Iterator[RawRecord | ReadError]) -> dict[str, Any]:
        try:
            batch: list[RawRecord | ReadError] = []
            for item in items:
                self.counts.read += 1
                if self.counts.read == 2:
                    checkpoint(f"convert:{self.source.id}")
                if self.columns is None:
                    for out in self.one(item):
                        self.emit(out)
                    continue
                batch.append(item)
                if len(batch) >= BATCH_ROWS:
                    self.many(batch)
                    batch = []
            if batch:
                self.many(batch)
            for writer in self.writers:
                writer.close()
            if self.columns is not None:
                log.debug("%s: %d rows built column-wise, %d record by record", self.source.id,
                          self.columnar_rows, self.counts.rows + self.counts.eval_rows - self.columnar_rows)
        except BaseException:
            for writer in self.writers:
                with contextlib.suppress(Exception):  # the original error is what matters
                    writer.writer.close()
            raise
        if self.units:
            logs = {"hashes": self.builder.hash_log, "natives": self.builder.native_log}
            (self.folder / "ids.json").write_text(json.dumps(logs), encoding="utf-8")
        return self.counts.as_dict()

    def emit(self, out: dict[str, Any]) -> None:
        (self.eval_out if self.source.is_eval_split(out["split"]) else self.rows_out).add(out)

    def reject(self, file: str, location: str, reason: str, message: str, raw: Any) -> None:
        self.rejects_out.add(_reject_row(self.source.id, file, location, reason, message, raw))

    def one(self, item: RawRecord | ReadError) -> list[dict[str, Any]]:
        """The per-record path: the output rows of one record (rejects written, counts kept)."""
        source, counts = self.source, self.counts
        if isinstance(item, ReadError):
            counts.rejected += 1
            counts.rejected_by_reason[item.reason] += 1
            self.reject(item.file, item.location, item.reason, item.message, item.raw)
            return []
        split = source.split_of(item.file.split("!")[0])
        ctx = RecordContext(source, item.file, item.location, split)
        try:
            rows = list(self.converter.fn(item.value, ctx))
        except Filtered as flt:
            counts.filtered += 1
            counts.filtered_by_reason[flt.reason] += 1
            return []
        except Reject as rej:
            counts.rejected += 1
            counts.rejected_by_reason[rej.reason] += 1
            self.reject(item.file, item.location, rej.reason, rej.message, item.value)
            return []
        failures: list[tuple[str, Reject]] = []
        good: list[dict[str, Any]] = []
        for index, row in enumerate(rows):
            try:
                out = self.builder.build(row, split)
            except Reject as rej:
                failures.append((item.location if len(rows) == 1 else f"{item.location} row {index}", rej))
                continue
            if self.units:
                out["_hash"] = len(self.builder.hash_log or ()) - 1 if row.native_id is None else None
            good.append(out)
            if source.is_eval_split(out["split"]):
                counts.eval_rows += 1
            else:
                counts.rows += 1
        for location, rej in failures:  # every failed row has its rejects row
            self.reject(item.file, location, rej.reason, rej.message, item.value)
        if good:
            counts.converted += 1
            counts.partial_rejects += len(failures)
        elif failures:  # the record counts once, under its first row's reason
            counts.rejected += 1
            counts.rejected_by_reason[failures[0][1].reason] += 1
        else:
            counts.filtered += 1
            counts.filtered_by_reason["no_rows"] += 1
        return good

    def _split(self, file: str) -> str:
        split = self._file_splits.get(file)
        if split is None:
            split = self._file_splits[file] = self.source.split_of(file.split("!")[0])
        return split

    def _constants_ok(self, split: str, shaped: Shaped, position: int) -> bool:
        if split not in self._split_problems:
            if self.source.task == "sft":
                start = sum(shaped.lengths[:position])
                sample = {"messages": [{"role": r, "content": c} for r, c in zip(
                    shaped.roles[start:start + shaped.lengths[position]],
                    shaped.contents[start:start + shaped.lengths[position]], strict=True)]}
            else:
                sample = {"text": shaped.texts[position]}
            self._split_problems[split] = constants_problem(self.source, self.source.task, split, sample)
            if self.source.is_eval_split(split):
                self._eval_splits.add(split)
        return self._split_problems[split] is None

    def many(self, items: list[RawRecord | ReadError]) -> None:
        """The column-wise path over one batch (see the class docstring); rows keep record order."""
        assert self.columns is not None
        source, counts, builder = self.source, self.counts, self.builder
        records = [item for item in items if isinstance(item, RawRecord)]
        shaped = self.columns([item.value for item in records], source)
        checked = check(source.task, shaped)
        keep = [False] * len(shaped.metas)
        ids: list[str] = []
        splits: list[str] = []
        hashes: list[int | None] = []
        to_eval: list[bool] = []
        fast_order: list[int] = []                  # emission position of each kept fast row
        slow: list[tuple[int, dict[str, Any]]] = []  # (emission position, row) of per-record rows
        position = -1  # the record's index among the shaped ok ones
        emitted = 0
        record_index = 0
        for item in items:
            if isinstance(item, ReadError):
                self.one(item)
                continue
            index = record_index
            record_index += 1
            if shaped.ok[index]:
                position += 1
            split = self._split(item.file) if checked.ok[index] else ""
            native = shaped.natives[position] if checked.ok[index] else None
            if (not checked.ok[index] or not self._constants_ok(split, shaped, position)
                    or (native is not None and builder.has_native(native))):
                for out in self.one(item):
                    slow.append((emitted, out))
                    emitted += 1
                continue
            ids.append(builder.assign_id(checked.digests[position], native))
            hashes.append(len(builder.hash_log or ()) - 1 if native is None and self.units else None)
            keep[position] = True
            splits.append(split)
            evaluated = split in self._eval_splits
            to_eval.append(evaluated)
            counts.converted += 1
            self.columnar_rows += 1
            if evaluated:
                counts.eval_rows += 1
            else:
                counts.rows += 1
            fast_order.append(emitted)
            emitted += 1
        table = None
        if ids:
            metas = [m for m, k in zip(shaped.metas, keep, strict=True) if k]
            table = rows_table(source, checked.columns, np.array(keep, dtype=bool), ids, splits, metas)
            if self.units:
                table = table.append_column("_hash", pa.array(hashes, pa.int64()))
        eval_mask = np.array(to_eval, dtype=bool)
        order = np.array(fast_order, dtype=np.int64)
        for writer, want_eval in ((self.rows_out, False), (self.eval_out, True)):
            parts: list[pa.Table] = []
            orders: list[np.ndarray] = []
            if table is not None:
                mask = eval_mask == want_eval
                parts.append(table.filter(pa.array(mask, pa.bool_())))
                orders.append(order[mask])
            late = [(at, out) for at, out in slow if source.is_eval_split(out["split"]) == want_eval]
            if late:
                parts.append(pa.Table.from_pylist([out for _, out in late], schema=writer.schema))
                orders.append(np.array([at for at, _ in late], dtype=np.int64))
            if len(parts) == 2:
                merged = pa.concat_tables(parts)
                merged = merged.take(pa.array(np.argsort(np.concatenate(orders), kind="stable")))
            elif parts:
                merged = parts[0]
            else:
                continue
            if merged.num_rows:
                writer.add_table(merged)


def _commit(staging: Path, final: Path, key: str, result: dict[str, Any]) -> None:
    if result["rejected_by_reason"].get(SCHEMA_MISMATCH):  # one line per wrong-shape file (convert/shape.py)
        result["schema_mismatch_files"] = mismatch_by_file(staging / "rejects.parquet")
    (staging / "counts.json").write_text(json.dumps(result, sort_keys=True, indent=1), encoding="utf-8")
    (staging / DONE).write_text(key, encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(staging, final)


def _cached(source: Source, key: str, final: Path) -> Converted | None:
    if (final / DONE).exists():
        counts = json.loads((final / "counts.json").read_text(encoding="utf-8"))
        return Converted(source.id, key, final, counts, from_cache=True)
    return None


def _clear_leftovers(final: Path) -> None:
    for leftover in final.parent.glob(".*.tmp-*") if final.parent.exists() else ():
        shutil.rmtree(leftover, ignore_errors=True)  # an interrupted conversion of an earlier run


def convert_source(source: Source, fetched: FetchedSource, work_dir: Path, columnar: bool = True) -> Converted:
    """Convert `source` from its fetched files, or reuse a finished conversion with the same key.
    `columnar`: use the converter's column-wise twin where it has one (same output either way).

    Raises SourceFileError when a file cannot be read at all; nothing is committed then."""
    key = conversion_key(source, fetched)
    final = work_dir / "convert" / source.id / key
    cached = _cached(source, key, final)
    if cached is not None:
        return cached
    _clear_leftovers(final)
    staging = final.parent / f".{key}.tmp-{os.getpid()}"
    staging.mkdir(parents=True)
    try:
        result = _Conversion(source, staging, columnar).run(_records(source, fetched.source_files()))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _commit(staging, final, key, result)
    return Converted(source.id, key, final, result, from_cache=False)


# --------------------------------------------------------------------------- work units

UNIT_BYTES = 32 * 1024 * 1024  # a source larger than this is converted in units of about this size
_SPLITTABLE_READERS = ("json", "text")  # readers that read each file, and each line, on its own


@dataclass(frozen=True)
class Unit:
    """A piece of one source's conversion: the whole source (`part` None), one file, or a byte range
    of one JSON Lines / text file that starts and ends at line boundaries (`first_line`: the file's
    line number of its first line). Units of a source, converted anywhere and merged in order, give
    the bytes one conversion of the source gives."""

    source: Source
    fetched: FetchedSource
    work_dir: Path
    key: str
    index: int
    file: SourceFile | None = None
    start: int = 0
    end: int | None = None
    first_line: int = 1
    json_layout: str | None = None  # `lines` / `comma_lines` for a byte range read as JSON Lines

    @property
    def folder(self) -> Path:
        return self.work_dir / "convert" / self.source.id / f".{self.key}.tmp-unit{self.index:05d}"


@dataclass(frozen=True)
class UnitResult:
    unit: Unit
    counts: dict[str, Any]
    converted: Converted | None = None  # set when the unit was the whole source (already committed)


def _line_ranges(path: Path, size: int, unit_bytes: int) -> list[tuple[int, int, int]]:
    """`(start, end, first line number)` ranges of about `unit_bytes`, cut after a newline; a range
    never starts with a UTF-8 BOM (a reader would drop it)."""
    ranges: list[tuple[int, int, int]] = []
    start, line = 0, 1
    with open(path, "rb") as handle:
        while start < size:
            target = start + unit_bytes
            if target >= size:
                end = size
            else:
                handle.seek(target)
                end = -1
                while end < 0:
                    block = handle.read(1 << 16)
                    if not block:
                        end = size
                        break
                    found = block.find(b"\n")
                    if found >= 0:
                        end = handle.tell() - len(block) + found + 1
                        handle.seek(end)
                        if handle.read(3) == codecs.BOM_UTF8:
                            target, end = end, -1
                            handle.seek(target)
            ranges.append((start, end, line))
            handle.seek(start)
            remaining = end - start
            while remaining:
                block = handle.read(min(remaining, 1 << 22))
                line += block.count(b"\n")
                remaining -= len(block)
            start = end
    return ranges


def _range_layout(file: SourceFile, source: Source, reader_name: str) -> str | None:
    """How a byte range of `file` is read (`text`, or the JSON Lines layout), or None when the file
    must be read whole: compressed, an archive, not UTF-8, not line-based, or refused by the reader."""
    with open(file.path, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
    try:
        check_payload(file.relpath, head, bool(source.options.get("allow_html")))
        encoding = detect_encoding(head[:ENCODING_SAMPLE], source.options.get("encoding"))
    except (SourceFileError, LookupError):
        return None
    if is_zip(head) or head.startswith((GZIP_MAGIC, codecs.BOM_UTF8)) or encoding != "utf-8":
        return None
    if reader_name == "text":
        return "text"
    layout = sniff_layout(head.decode("utf-8", errors="replace"), len(head) < SNIFF_BYTES, source.options)
    return layout if layout in ("lines", "comma_lines") else None


def plan_units(source: Source, fetched: FetchedSource, work_dir: Path, workers: int = 1,
               unit_bytes: int | None = None) -> list[Unit]:
    """The units to convert `source` in: none when its conversion is cached, the whole source when it
    is small, read by a custom reader or there is one worker; else one per file, a large JSON Lines or
    text file cut into byte ranges. Never raises for a bad file: that file's unit reports it."""
    unit_bytes = unit_bytes or UNIT_BYTES
    key = conversion_key(source, fetched)
    final = work_dir / "convert" / source.id / key
    if _cached(source, key, final) is not None:
        return []
    _clear_leftovers(final)
    whole = [Unit(source, fetched, work_dir, key, 0)]
    reader_name = source.reader or get_converter(source.format).reader
    files = fetched.source_files()
    sizes = [f.size for f in fetched.files]
    if workers <= 1 or reader_name not in _SPLITTABLE_READERS or sum(sizes) <= unit_bytes:
        return whole
    units: list[Unit] = []
    for file, size in zip(files, sizes, strict=True):
        ranges: list[tuple[int, int, int]] = []
        layout = None
        try:
            layout = _range_layout(file, source, reader_name) if size > unit_bytes else None
            ranges = _line_ranges(file.path, size, unit_bytes) if layout else []
        except OSError:
            ranges = []  # the file's unit reports it
        if not ranges:
            units.append(Unit(source, fetched, work_dir, key, len(units), file))
        for start, end, line in ranges:
            units.append(Unit(source, fetched, work_dir, key, len(units), file, start, end, line,
                              None if layout == "text" else layout))
    return units if len(units) > 1 else whole


class _Range(io.RawIOBase):
    """Bytes `start`..`end` of a file."""

    def __init__(self, path: Path, start: int, end: int) -> None:
        self._handle = open(path, "rb")  # noqa: SIM115  (closed with the stream)
        self._handle.seek(start)
        self._left = end - start

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._handle.read(min(len(buffer), self._left))
        self._left -= len(data)
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._handle.close()
        super().close()


def _shifted(items: Iterator[RawRecord | ReadError], offset: int) -> Iterator[RawRecord | ReadError]:
    """Locations `line N` of a range's reader moved to the file's numbering."""
    for item in items:
        number, _, rest = item.location.removeprefix("line ").partition(" ")
        yield replace(item, location=" ".join(filter(None, (f"line {int(number) + offset}", rest))))


def _unit_records(unit: Unit) -> Iterator[RawRecord | ReadError]:
    assert unit.file is not None
    if unit.end is None:
        yield from _records(unit.source, [unit.file])
        return
    options = {**unit.source.options, "encoding": "utf-8"}  # as sniffed on the whole file by plan_units
    with buffered(_Range(unit.file.path, unit.start, unit.end)) as stream:
        if unit.json_layout is None:
            items = parse_text_lines(unit.file.relpath, stream, options)
        else:
            items = json_lines(unit.file.relpath, "utf-8", stream, options, unit.json_layout == "comma_lines")
        yield from _shifted(items, unit.first_line - 1)


def convert_unit(unit: Unit, columnar: bool = True) -> UnitResult:
    """Convert one unit (`plan_units`); a whole-source unit is committed as `convert_source` does."""
    if unit.file is None:
        converted = convert_source(unit.source, unit.fetched, unit.work_dir, columnar)
        return UnitResult(unit, converted.counts, converted)
    shutil.rmtree(unit.folder, ignore_errors=True)
    unit.folder.mkdir(parents=True)
    try:
        counts = _Conversion(unit.source, unit.folder, columnar, units=True).run(_unit_records(unit))
    except BaseException:
        shutil.rmtree(unit.folder, ignore_errors=True)
        raise
    return UnitResult(unit, counts)


class _CrossUnitDuplicate(Exception):
    """A native id claimed in two units: its reject needs the record, so the source is converted whole."""


def _sum_counts(results: list[UnitResult]) -> dict[str, Any]:
    total = SourceCounts()
    for result in results:
        counts = result.counts
        for name in ("read", "converted", "rejected", "filtered", "rows", "eval_rows", "partial_rejects"):
            setattr(total, name, getattr(total, name) + counts[name])
        total.rejected_by_reason.update(counts["rejected_by_reason"])
        total.filtered_by_reason.update(counts["filtered_by_reason"])
    return total.as_dict()


def merge_units(source: Source, fetched: FetchedSource, work_dir: Path, results: Iterable[UnitResult]) -> Converted:
    """Commit a source from its units' results (in unit order): rows, eval rows and rejects
    concatenated, ids renumbered as one pass numbers them, counts summed. No results: the cached
    conversion. Unit folders are removed either way."""
    key = conversion_key(source, fetched)
    final = work_dir / "convert" / source.id / key
    try:
        done = list(results)
    except BaseException:
        _clear_leftovers(final)
        raise
    if not done:
        cached = _cached(source, key, final)
        return cached if cached is not None else convert_source(source, fetched, work_dir)
    if len(done) == 1 and done[0].converted is not None:
        return done[0].converted
    staging = final.parent / f".{key}.tmp-{os.getpid()}"
    staging.mkdir(parents=True)
    schema = arrow_schema(source.task)
    writers = {name: RowGroupWriter(staging / name, REJECTS_SCHEMA if name == "rejects.parquet" else schema, BATCH_ROWS)
               for name in ("rows.parquet", "eval.parquet", "rejects.parquet")}
    hash_seen = SeenKeys()
    native_seen = NativeIds()
    try:
        for result in done:
            folder = result.unit.folder
            logs = json.loads((folder / "ids.json").read_text(encoding="utf-8"))
            for native in logs["natives"]:
                if native in native_seen:
                    raise _CrossUnitDuplicate
                native_seen.add(native)
            renamed = []
            for digest in logs["hashes"]:
                count = hash_seen.add(digest_key(digest))
                renamed.append(f"{source.id}/{digest}" if count == 1 else f"{source.id}/{digest}-{count}")
            new_ids = pa.array(renamed, pa.string())
            for name, writer in writers.items():
                for batch in pq.ParquetFile(folder / name).iter_batches(batch_size=BATCH_ROWS):
                    table = pa.Table.from_batches([batch])
                    if name != "rejects.parquet":
                        index = table.column("_hash")
                        ids = pc.if_else(pc.is_valid(index), new_ids.take(pc.fill_null(index, 0)) if len(new_ids) else table.column("id"),
                                         table.column("id"))
                        table = table.set_column(table.schema.get_field_index("id"), "id", ids)
                        table = table.drop_columns(["_hash"]).cast(schema)
                    writer.add_table(table)
        for writer in writers.values():
            writer.close()
    except BaseException as exc:
        for writer in writers.values():
            with contextlib.suppress(Exception):
                writer.writer.close()
        shutil.rmtree(staging, ignore_errors=True)
        _clear_leftovers(final)
        if isinstance(exc, _CrossUnitDuplicate):
            return convert_source(source, fetched, work_dir)
        raise
    counts = _sum_counts(done)
    _commit(staging, final, key, counts)
    _clear_leftovers(final)
    return Converted(source.id, key, final, counts, from_cache=False)
