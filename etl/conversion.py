"""Convert one source: reader → converter → row validation → per-source Parquet (+ rejects, counts).

The result is committed as one unit: everything is written into a temporary folder that is renamed
to its final name (`<work>/convert/<source>/<key>/`) only when complete, so a killed build never
leaves a half-converted source that a later run could mistake for a finished one. The key covers
everything the output depends on (tool version, catalogue entry, converter version, file checksums),
so an unchanged source is never converted twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from etl import __version__
from etl.catalog import Source
from etl.convert.base import Filtered, RecordContext, Reject, get_converter
from etl.faults import checkpoint
from etl.fetch.base import FetchedSource
from etl.read.base import RawRecord, ReadError, cut, get_reader
from etl.rows import RowBuilder
from etl.schemas import REJECTS_SCHEMA, arrow_schema, json_schema

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


class _BatchedWriter:
    """Appends dict rows to a Parquet file in batches, creating the file even when no row comes."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.schema = schema
        self.writer = pq.ParquetWriter(path, schema, compression="zstd")
        self.buffer: list[dict[str, Any]] = []

    def add(self, row: dict[str, Any]) -> None:
        self.buffer.append(row)
        if len(self.buffer) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.writer.write_table(pa.Table.from_pylist(self.buffer, schema=self.schema))
            self.buffer = []

    def close(self) -> None:
        self.flush()
        self.writer.close()


def _reject_row(source_id: str, file: str, location: str, reason: str, message: str, raw: Any) -> dict[str, str]:
    if not isinstance(raw, str):
        try:
            raw = json.dumps(raw, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            raw = repr(raw)
    return {"source": source_id, "file": file, "location": location, "reason": reason,
            "message": message, "raw": cut(raw)}


def _records(source: Source, fetched: FetchedSource) -> Iterator[RawRecord | ReadError]:
    converter = get_converter(source.format)
    read = get_reader(source.reader or converter.reader)
    return read(fetched.source_files(), dict(source.options))


def convert_source(source: Source, fetched: FetchedSource, work_dir: Path) -> Converted:
    """Convert `source` from its fetched files, or reuse a finished conversion with the same key.

    Raises SourceFileError when a file cannot be read at all; nothing is committed then."""
    key = conversion_key(source, fetched)
    final = work_dir / "convert" / source.id / key
    if (final / DONE).exists():
        counts = json.loads((final / "counts.json").read_text(encoding="utf-8"))
        return Converted(source.id, key, final, counts, from_cache=True)

    for leftover in final.parent.glob(".*.tmp-*") if final.parent.exists() else ():
        shutil.rmtree(leftover, ignore_errors=True)  # an interrupted conversion of an earlier run
    staging = final.parent / f".{key}.tmp-{os.getpid()}"
    staging.mkdir(parents=True)
    converter = get_converter(source.format)
    schema = arrow_schema(source.task)
    rows_out = _BatchedWriter(staging / "rows.parquet", schema)
    eval_out = _BatchedWriter(staging / "eval.parquet", schema)
    rejects_out = _BatchedWriter(staging / "rejects.parquet", REJECTS_SCHEMA)
    counts = SourceCounts()
    builder = RowBuilder(source)
    try:
        for item in _records(source, fetched):
            counts.read += 1
            if counts.read == 2:
                checkpoint(f"convert:{source.id}")
            if isinstance(item, ReadError):
                counts.rejected += 1
                counts.rejected_by_reason[item.reason] += 1
                rejects_out.add(_reject_row(source.id, item.file, item.location, item.reason, item.message, item.raw))
                continue
            split = source.split_of(item.file.split("!")[0])
            ctx = RecordContext(source, item.file, item.location, split)
            try:
                rows = list(converter.fn(item.value, ctx))
            except Filtered as flt:
                counts.filtered += 1
                counts.filtered_by_reason[flt.reason] += 1
                continue
            except Reject as rej:
                counts.rejected += 1
                counts.rejected_by_reason[rej.reason] += 1
                rejects_out.add(_reject_row(source.id, item.file, item.location, rej.reason, rej.message, item.value))
                continue
            failures: list[tuple[str, Reject]] = []
            good = 0
            for index, row in enumerate(rows):
                try:
                    out = builder.build(row, split)
                except Reject as rej:
                    failures.append((item.location if len(rows) == 1 else f"{item.location} row {index}", rej))
                    continue
                good += 1
                if source.is_eval_split(out["split"]):
                    counts.eval_rows += 1
                    eval_out.add(out)
                else:
                    counts.rows += 1
                    rows_out.add(out)
            for location, rej in failures:  # every failed row has its rejects row
                rejects_out.add(_reject_row(source.id, item.file, location, rej.reason, rej.message, item.value))
            if good:
                counts.converted += 1
                counts.partial_rejects += len(failures)
            elif failures:  # the record counts once, under its first row's reason
                counts.rejected += 1
                counts.rejected_by_reason[failures[0][1].reason] += 1
            else:
                counts.filtered += 1
                counts.filtered_by_reason["no_rows"] += 1
        for writer in (rows_out, eval_out, rejects_out):
            writer.close()
    except BaseException:
        for writer in (rows_out, eval_out, rejects_out):
            with contextlib.suppress(Exception):  # the original error is what matters
                writer.writer.close()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result = counts.as_dict()
    (staging / "counts.json").write_text(json.dumps(result, sort_keys=True, indent=1), encoding="utf-8")
    (staging / DONE).write_text(key, encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(staging, final)
    return Converted(source.id, key, final, result, from_cache=False)

