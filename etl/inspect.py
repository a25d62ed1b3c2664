"""Look at data nobody has catalogued yet and propose its catalogue entry (`medcorpus inspect PATH`).

For a file, a folder or an archive: every file is sniffed with the readers the build uses (container,
encoding, layout, record shape); files of the same shape form one group, and each group gets one
proposed entry. The entry is chosen by trial, not by guessing: every registered converter (with its
default reader, and the sniffing `auto` reader for the generic ones) converts a sample of the group's
records, `fields:` mapped from the record keys for the generic converters, and the converter with the
fewest rejects wins, then the one converting the most records and leaving the fewest upstream keys
unused in `meta`. Plain `text` (one pretraining row per line) only wins when nothing structured fits.
The winner then runs over every record of the group, so the counts printed are what a build would see.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path, PurePosixPath
from typing import Any

from etl.catalog import Source
from etl.convert.base import Converter, Filtered, RecordContext, Reject, registry
from etl.read.base import RawRecord, ReadError, SourceFile, SourceFileError, get_reader
from etl.read.containers import GZIP_MAGIC, OLE_MAGIC, is_zip, open_members
from etl.read.encoding import ENCODING_SAMPLE, detect_encoding
from etl.read.streams import peek
from etl.rows import RowBuilder

SAMPLE_RECORDS = 200
# Unified names of the generic converters and the upstream keys seen for them, most specific first.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "instruction": ("instruction", "prompt", "question", "query", "问"),
    "input": ("input", "context"),
    "output": ("output", "response", "answer", "target", "答"),
    "query": ("query", "question", "instruction", "prompt", "input", "ask", "问", "问题", "text"),
    "response": ("response", "answer", "output", "target", "reply", "答", "回答"),
    "conversations": ("conversations", "conversation", "dialog", "dialogue"),
    "messages": ("messages",),
    "question": ("question", "prompt", "instruction", "query"),
    "chosen": ("chosen", "response_chosen"),
    "rejected": ("rejected", "response_rejected"),
    "text": ("text", "content", "body", "article", "问题"),
    "answer": ("answer", "output", "response", "答"),
    "history": ("history",),
    "system": ("system", "system_prompt"),
    "id": ("id",),
}
GENERIC_FIELDS: dict[str, tuple[str, ...]] = {
    "alpaca": ("instruction", "input", "output", "history", "system", "id"),
    "query_response": ("query", "response", "id"),
    "sharegpt": ("conversations", "id"),
    "messages": ("messages", "id"),
    "preference": ("conversations", "question", "chosen", "rejected", "id"),
    "text": ("text", "id"),
    # custom converters that read some keys through `fields:`
    "huatuo26m": ("question", "answer"),
    "wrapped_prompt": ("text",),
}
FALLBACK = "text"
# Filter reasons that depend on the build's settings, not on the records: they recognise nothing.
SETTINGS_FILTERS = frozenset({"no_persona_configured"})


@dataclass
class Trial:
    """What one converter made of a group's records."""

    format: str
    reader: str
    fields: dict[str, str]
    read: int = 0
    converted: int = 0
    rows: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    filtered: Counter[str] = field(default_factory=Counter)
    meta_chars: int = 0
    first_reject: str = ""
    own_reader: bool = True  # the converter's default reader (the entry then needs no `reader:`)

    @property
    def rank(self) -> tuple[Any, ...]:
        return (sum(self.rejected.values()), not self.converted, self.format == FALLBACK, -self.converted,
                self.meta_chars / max(self.rows, 1), not self.own_reader, self.format, self.reader)


@dataclass
class FileSniff:
    relpath: str
    container: str       # plain | gzip | zip | ole
    encoding: str        # of the first data stream; "binary" for Office files
    layout: str          # json | table | text | office
    shape: str           # a short description of the records, e.g. `object{input,instruction,output}`
    records: list[Any] = field(default_factory=list)  # a sample
    options: dict[str, Any] = field(default_factory=dict)  # reader options the sniffing needed


@dataclass
class Proposal:
    files: list[FileSniff]
    best: Trial | None
    entry: dict[str, Any]
    candidates: list[Trial]


def _container(head: bytes) -> str:
    if is_zip(head):
        return "zip"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(OLE_MAGIC):
        return "ole"
    return "plain"


def _layout(head: bytes, encoding: str) -> str:
    text = head.decode(encoding, errors="replace").lstrip("\ufeff \t\r\n")
    if text[:1] in ("[", "{"):
        return "json"
    first = text.split("\n", 1)[0]
    return "table" if ("\t" in first or first.count(",") >= 1) and "\n" in text else "text"


def shape_of(records: list[Any]) -> str:
    """`object{a,b}` (keys seen in most records), `array`, `text`, or `mixed`."""
    kinds = Counter("object" if isinstance(r, dict) else "array" if isinstance(r, list) else
                    "text" if isinstance(r, str) else type(r).__name__ for r in records)
    if not kinds:
        return "empty"
    kind, _ = kinds.most_common(1)[0]
    if kind != "object":
        return kind
    keys = Counter(k for r in records if isinstance(r, dict) for k in r)
    common = sorted(k for k, n in keys.items() if n * 2 >= len(records))
    return "object{" + ",".join(common) + "}"


def sniff_file(path: Path, relpath: str) -> FileSniff:
    """Container, encoding, layout and a record sample of one file, read as the `auto` reader does."""
    source_file = SourceFile(path, relpath)
    with open(path, "rb") as handle:
        head = handle.read(4096)
    container = _container(head)
    encoding, layout = "binary", "office"
    if container != "ole" and not (container == "zip" and _is_office(source_file)):
        for _, stream in open_members(source_file, {}):
            sample, _ = peek(stream, ENCODING_SAMPLE)
            encoding = detect_encoding(sample)
            layout = _layout(sample[:8192], encoding)
            break
    options: dict[str, Any] = {}
    records = _sample("auto", [source_file], options)
    if len(records) == 1 and isinstance(records[0], dict) and len(records[0]) > 1 \
            and all(isinstance(v, dict) for v in records[0].values()):
        options = {"json_object": "items"}  # one object keyed by record id (PubMedQA's PMIDs)
        records = _sample("auto", [source_file], options)
    return FileSniff(relpath, container, encoding, layout, shape_of(records), records, options)


def _is_office(file: SourceFile) -> bool:
    import zipfile

    with zipfile.ZipFile(file.path) as archive:
        names = set(archive.namelist())
    return "word/document.xml" in names or "xl/workbook.xml" in names


def _read(read: Any, files: list[SourceFile], options: dict[str, Any]) -> Iterator[RawRecord | ReadError]:
    try:
        yield from read(files, options)
    except SourceFileError:
        return


def infer_fields(fmt: str, records: list[Any]) -> dict[str, str]:
    """`fields:` for a generic converter: each unified name mapped to the first synonym present in the
    sample's keys (only mappings that differ from the default name, so the entry stays short)."""
    keys = Counter(k for r in records if isinstance(r, dict) for k in r)
    mapping: dict[str, str] = {}
    used: set[str] = set()
    if fmt == "text" and len(keys) == 1:  # a one-column table: its column is the text
        return {"text": next(iter(keys))}
    for name in GENERIC_FIELDS.get(fmt, ()):
        for key in SYNONYMS.get(name, (name,)):
            if keys.get(key) and key not in used:
                used.add(key)
                if key != name or name == "id":
                    mapping[name] = key
                break
    return mapping


def _source(group_id: str, files: list[str], fmt: str, converter: Converter, reader: str,
            fields: dict[str, str], options: dict[str, Any]) -> Source:
    return Source(id=group_id, name=group_id, host="http", url="FILL-IN", files=tuple(files),
                  task=converter.tasks[0], format=fmt, reader=None if reader == converter.reader else reader,
                  fields=fields, options=options)


def run_trial(source: Source, converter: Converter, files: list[SourceFile], limit: int | None) -> Trial:
    """Convert up to `limit` records of `files` with `source`'s settings, counting what happens."""
    reader = source.reader or converter.reader
    trial = Trial(source.format, reader, dict(source.fields), own_reader=reader == converter.reader)
    builder = RowBuilder(source)
    items = _read(get_reader(reader), files, dict(source.options))
    for item in islice(items, limit):
        trial.read += 1
        if isinstance(item, ReadError):
            trial.rejected[item.reason] += 1
            trial.first_reject = trial.first_reject or f"{item.file} {item.location}: {item.reason}: {item.message}"
            continue
        ctx = RecordContext(source, item.file, item.location, "train")
        try:
            rows = [builder.build(row, "train") for row in converter.fn(item.value, ctx)]
        except Filtered as flt:
            trial.filtered[flt.reason] += 1
            continue
        except Reject as rej:
            trial.rejected[rej.reason] += 1
            trial.first_reject = trial.first_reject or f"{item.file} {item.location}: {rej.reason}: {rej.message}"
            continue
        except Exception as exc:  # noqa: BLE001  (a converter meeting a shape it was never meant for)
            trial.rejected["converter_error"] += 1
            trial.first_reject = trial.first_reject or f"{item.file} {item.location}: {type(exc).__name__}: {exc}"
            continue
        trial.converted += 1
        trial.rows += len(rows)
        trial.meta_chars += sum(len(row["meta"]) - 2 for row in rows)  # upstream text left unused; "{}" is empty
    return trial


def _sample(reader: str, files: list[SourceFile], options: dict[str, Any]) -> list[Any]:
    """The first records `reader` makes of `files` (none when it cannot read them)."""
    try:
        items = islice(_read(get_reader(reader), files, dict(options)), SAMPLE_RECORDS)
        return [item.value for item in items if isinstance(item, RawRecord)]
    except Exception:  # noqa: BLE001  (a reader meeting a format it was never meant for)
        return []


def _swallowed(trial: Trial, files: int, sniffed: int) -> bool:
    """A lenient custom reader that took each whole file as one record, where the sniffing reader saw
    many records: not a reading of this format."""
    return trial.read <= files and sniffed > 5 * files


def _group_id(name: str) -> str:
    stem = PurePosixPath(name).name.split(".")[0]
    ident = re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_")
    return ident if ident and ident[0].isalpha() else f"source_{ident or 'new'}"


def propose(files: list[FileSniff], root: Path, group_id: str) -> Proposal:
    """Try every converter on one group of same-shaped files; the best becomes the entry."""
    source_files = [SourceFile(root / f.relpath, f.relpath) for f in files]
    relpaths = [f.relpath for f in files]
    sample = [r for f in files for r in f.records]
    options: dict[str, Any] = dict(files[0].options)
    encodings = {f.encoding for f in files} - {"utf-8", "ascii", "binary"}
    if len(encodings) == 1:
        options["encoding"] = encodings.pop()
    logging.disable(logging.CRITICAL)  # converters meeting foreign shapes log noise (the HTML extractor)
    try:
        trials = _trials(group_id, relpaths, source_files, sample, options, len(files))
    finally:
        logging.disable(logging.NOTSET)
    if not trials:
        return Proposal(files, None, {}, [])
    best = trials[0]
    converter = registry()[best.format]
    source = _source(group_id, relpaths, best.format, converter, best.reader, best.fields, options)
    full = run_trial(source, converter, source_files, None)
    entry = {k: v for k, v in source.model_dump(mode="json", exclude_defaults=True).items()}
    entry.setdefault("task", source.task)
    entry.update(lang="und", license="FILL-IN", license_source="FILL-IN", format_verified=True)
    return Proposal(files, full, entry, trials[:5])


def _trials(group_id: str, relpaths: list[str], source_files: list[SourceFile], sample: list[Any],
            options: dict[str, Any], files: int) -> list[Trial]:
    """Every converter × reader that converts part of the sample, best first (`Trial.rank`)."""
    trials: list[Trial] = []
    samples: dict[str, list[Any]] = {}
    for fmt, converter in sorted(registry().items()):
        readers = [converter.reader, *(r for r in ("auto", "csv") if fmt in GENERIC_FIELDS and r != converter.reader)]
        for reader in readers:
            if reader not in samples:
                samples[reader] = _sample(reader, source_files, options)
            fields = infer_fields(fmt, samples[reader])
            try:
                source = _source(group_id, relpaths, fmt, converter, reader, fields, options)
                trial = run_trial(source, converter, source_files, SAMPLE_RECORDS)
            except Exception:  # noqa: BLE001, S112  (a reader that cannot read this shape at all)
                continue
            rejected = sum(trial.rejected.values())
            recognised = (trial.converted > rejected) or (trial.filtered and not rejected
                                                           and not SETTINGS_FILTERS.intersection(trial.filtered))
            if recognised and not _swallowed(trial, files, len(sample)):
                trials.append(trial)
    return sorted(trials, key=lambda t: t.rank)


def inspect_path(path: Path) -> list[Proposal]:
    """Proposals for `path` (a file, an archive, or a folder of them), one per group of same-shaped files."""
    path = Path(path)
    if path.is_dir():
        root = path
        names = sorted(p.relative_to(path).as_posix() for p in path.rglob("*")
                       if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
    else:
        root, names = path.parent, [path.name]
    sniffs = [sniff_file(root / name, name) for name in names]
    groups: dict[tuple[str, ...], list[FileSniff]] = {}
    for sniff in sniffs:
        key = (sniff.container, sniff.layout, sniff.shape, *sorted(sniff.options.items()))
        groups.setdefault(key, []).append(sniff)
    proposals = []
    base = _group_id(path.name)
    for index, (_, members) in enumerate(sorted(groups.items(), key=lambda kv: kv[1][0].relpath)):
        group_id = base if len(groups) == 1 else f"{base}_{index + 1}"
        proposals.append(propose(members, root, group_id))
    return proposals
