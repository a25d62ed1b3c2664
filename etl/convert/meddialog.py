"""MedDialog (zh: haodf.com; en: healthcaremagic.com, icliniq.com): raw text dumps and processed JSON.

Raw files are records opened by an `id=<n>` line, then the source URL, (zh) `Doctor faculty` with the
hospital and department, `Description` with the patient's own account, and `Dialogue` with speaker
lines (`病人：`/`医生：`, `Patient:`/`Doctor:`, full-width or ASCII colon) each followed by one or more
utterance lines. Blank lines separate sections, not records, so records are split on `id=` lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

from etl.convert._dialogue import finish_dialogue, merge_utterances, with_opening
from etl.convert.base import RecordContext, Reject, Row, converter
from etl.convert.fieldtools import get_str, require_mapping
from etl.read.base import RawRecord, ReadError, ReadItem, SourceFile, cut, reader
from etl.read.containers import open_members
from etl.read.encoding import text_lines

_RECORD_START = re.compile(r"^id=(\d+)\s*$")
_SPEAKER = re.compile(r"^\s*(病人|医生|Patient|Doctor|patient|doctor)\s*[:：]\s*$")
_ROLE = {"病人": "user", "patient": "user", "医生": "assistant", "doctor": "assistant"}
# zh description sub-field labels such as `疾病：` or `病情描述（发病时间、主要症状、就诊医院等）：`
_DESCRIPTION_LABEL = re.compile(r"^\S{1,40}：\s*$")
_SECTIONS = {"Doctor faculty": "faculty", "Description": "description", "Dialogue": "dialogue"}


@reader("meddialog_raw")
def read_meddialog_raw(files: list[SourceFile], options: dict[str, Any]) -> Iterator[ReadItem]:
    """One record per `id=` block: `{"id", "text"}`, location the `id=` line. The encoding is detected
    per file (some zh years are reportedly GB2312, read as its superset GB18030)."""
    for file in files:
        for label, stream in open_members(file, options):
            start, lines = 0, []
            for item in text_lines(label, stream, options):
                if isinstance(item, ReadError):
                    yield item
                    continue
                number, line = item
                if _RECORD_START.match(line):
                    if start:
                        yield _raw_record(label, start, lines)
                    start, lines = number, []
                elif not start and line.strip():
                    yield ReadError(label, f"line {number}", "text_outside_record",
                                    "text before the first `id=` line", cut(line))
                    continue
                lines.append(line)
            if start:
                yield _raw_record(label, start, lines)


def _raw_record(label: str, start: int, lines: list[str]) -> RawRecord:
    record_id = _RECORD_START.match(lines[0]).group(1)  # type: ignore[union-attr]
    return RawRecord(label, f"line {start}", {"id": record_id, "text": "\n".join(lines)})


def _description(lines: list[str]) -> str:
    """The patient's account; zh sub-fields become `label：value` lines and empty ones are dropped."""
    parts: list[str] = []
    label: str | None = None
    values: list[str] = []

    def flush() -> None:
        value = "\n".join(v for v in values if v)
        if label and value:
            parts.append(f"{label}{value}")
        elif value:
            parts.append(value)

    for line in (raw.strip() for raw in lines):
        if _DESCRIPTION_LABEL.match(line):
            flush()
            label, values = line, []
        else:
            values.append(line)
    flush()
    return "\n".join(parts)


def parse_raw_dialogue(text: str) -> dict[str, Any]:
    """A raw record → `{url, faculty, description, utterances: [(role, text)]}`."""
    lines = text.split("\n")[1:]
    url = lines.pop(0).strip() if lines and lines[0].strip().startswith("http") else ""
    sections: dict[str, list[str]] = {"faculty": [], "description": [], "dialogue": []}
    current: str | None = None
    for line in lines:
        if line.strip() in _SECTIONS:
            current = _SECTIONS[line.strip()]
        elif current:
            sections[current].append(line.rstrip())
    utterances: list[tuple[str, list[str]]] = []
    for line in sections["dialogue"]:
        speaker = _SPEAKER.match(line)
        if speaker:
            utterances.append((_ROLE[speaker.group(1).lower()], []))
        elif utterances:
            utterances[-1][1].append(line.strip())
        elif line.strip():
            raise Reject("text_before_speaker", "dialogue text before the first speaker line")
    return {
        "url": url,
        "faculty": " ".join(x.strip() for x in sections["faculty"] if x.strip()),
        "description": _description(sections["description"]),
        "utterances": [(role, "\n".join(body).strip()) for role, body in utterances],
    }


def dialogue_row(description: str, utterances: list[tuple[str, str]], meta: dict[str, Any],
                 native: str | None) -> Row:
    turns = with_opening(description, merge_utterances(utterances))
    return Row(messages=finish_dialogue(turns, meta), native_id=native, meta=meta)


@converter("meddialog_raw", tasks=("sft",), reader="meddialog_raw")
def meddialog_raw(record: Any, ctx: RecordContext) -> list[Row]:
    """A raw MedDialog record → multi-turn patient/doctor conversation; URL and hospital in meta."""
    record = require_mapping(record)
    parsed = parse_raw_dialogue(get_str(record, "text"))
    if not parsed["utterances"]:
        raise Reject("no_dialogue", "the record has no speaker lines")
    meta = {"dialogue_id": get_str(record, "id"), "url": parsed["url"]}
    if parsed["faculty"]:
        meta["doctor_faculty"] = parsed["faculty"]
    native = f"{PurePosixPath(ctx.file.split('!')[-1]).stem}-{get_str(record, 'id')}"
    return [dialogue_row(parsed["description"], parsed["utterances"], meta, native)]


_PREFIXED = re.compile(r"^\s*(病人|医生|patient|doctor)\s*[:：]\s*", re.IGNORECASE)


def _prefixed_utterances(items: list[Any], where: str) -> list[tuple[str, str]]:
    utterances = []
    for index, item in enumerate(items):
        match = _PREFIXED.match(item) if isinstance(item, str) else None
        if not match:
            raise Reject("bad_utterance", f"{where}[{index}] does not start with a 病人/医生/patient/doctor prefix")
        utterances.append((_ROLE[match.group(1).lower()], item[match.end():]))
    return utterances


@converter("meddialog_processed", tasks=("sft",), reader="json")
def meddialog_processed(record: Any, ctx: RecordContext) -> list[Row]:
    """Processed splits: en `{description, utterances: ["patient: …", "doctor: …"]}`; zh a bare list
    of `病人：…`/`医生：…` strings."""
    if isinstance(record, list):
        return [dialogue_row("", _prefixed_utterances(record, "dialogue"), {}, None)]
    record = require_mapping(record)
    items = record.get("utterances")
    if not isinstance(items, list):
        raise Reject("missing_field", "no `utterances` list")
    utterances = _prefixed_utterances(items, "utterances")
    return [dialogue_row(get_str(record, "description", required=False), utterances, {}, None)]
