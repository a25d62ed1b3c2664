"""MedDialog (zh: haodf.com; en: healthcaremagic.com, icliniq.com): raw text dumps and processed JSON.

Raw files are records opened by an `id=<n>` line, then the source URL and titled sections, each title on
its own line (the upstream format, as in UCSD-AI4H/Medical-Dialogue-System and its sister release
UCSD-AI4H/COVID-Dialogue, whose README lists "ID, URL, Description, Dialogue, (Optional) Diagnosis and
suggestions"):
- `Doctor faculty` (zh): hospital and department;
- `Description`: the patient's own account (zh sub-fields such as `疾病：`; en the question's title);
- `Dialogue`: speaker lines (`病人：`/`医生：`, `Patient:`/`Doctor:`, full-width or ASCII colon) each
  followed by one or more utterance lines;
- `Diagnosis and suggestions` (zh, optional): the doctor's written summary (`病情摘要及初步印象：`,
  `总结建议：`).
Sections repeat in long haodf threads: a `Dialogue` block after the summary (the patient's follow-up
questions), a second `Description` (a follow-up consultation with the same doctor), a `Dialogue` block
holding only a booking note (`预约医生： …`). Blank lines separate sections, not records, so records are
split on `id=` lines.

The summary is not a turn of the conversation: upstream's own preprocessing (COVID-Dialogue
`src/preprocess.py`, the HF `medical_dialog` loader) builds dialogues from the `Description` and
`Dialogue` sections only, so it goes to `meta.diagnosis_and_suggestions` (one string per block, in
order). A thread is one row: every `Dialogue` block continues it, a later `Description` is the patient's
next message, and lines before the first speaker of a block (booking notes) go to `meta.notes`. As a
guard against a parser that misses a section, a message that still contains a known section title on a
line of its own is rejected as `section_header_in_message`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

from etl.convert._dialogue import finish_dialogue, merge_utterances, with_opening
from etl.convert.base import RecordContext, Reject, Row, Turn, converter
from etl.convert.fieldtools import get_str, require_mapping
from etl.read.base import RawRecord, ReadError, ReadItem, SourceFile, cut, reader
from etl.read.containers import open_members
from etl.read.encoding import text_lines

_RECORD_START = re.compile(r"^id=(\d+)\s*$")
_SPEAKER = re.compile(r"^\s*(病人|医生|Patient|Doctor|patient|doctor)\s*[:：]\s*$")
_ROLE = {"病人": "user", "patient": "user", "医生": "assistant", "doctor": "assistant"}
# zh description sub-field labels such as `疾病：` or `病情描述（发病时间、主要症状、就诊医院等）：`
_DESCRIPTION_LABEL = re.compile(r"^\S{1,40}：\s*$")
_SECTIONS = {"Doctor faculty": "faculty", "Description": "description", "Dialogue": "dialogue",
             "Diagnosis and suggestions": "diagnosis"}


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


def _blocks(lines: list[str]) -> list[tuple[str, list[str]]]:
    """The record's sections in order, as `(kind, lines)`; repeated titles make repeated blocks."""
    blocks: list[tuple[str, list[str]]] = []
    for line in lines:
        kind = _SECTIONS.get(line.strip())
        if kind:
            blocks.append((kind, []))
        elif blocks:
            blocks[-1][1].append(line.rstrip())
        elif line.strip():
            raise Reject("text_before_section", "text after the URL before the first section title")
    return blocks


def _speaker_blocks(lines: list[str]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """A `Dialogue` block → (lines before its first speaker line, [(role, utterance lines)])."""
    before: list[str] = []
    utterances: list[tuple[str, list[str]]] = []
    for line in lines:
        speaker = _SPEAKER.match(line)
        if speaker:
            utterances.append((_ROLE[speaker.group(1).lower()], []))
        elif utterances:
            utterances[-1][1].append(line.strip())
        elif line.strip():
            before.append(line.strip())
    return before, utterances


def parse_raw_dialogue(text: str) -> dict[str, Any]:
    """A raw record → `{url, faculty, description, utterances: [(role, text)], diagnosis: [text],
    notes: [text]}`; a later `Description` becomes a patient utterance in thread order."""
    lines = text.split("\n")[1:]
    while lines and not lines[0].strip():
        lines.pop(0)
    url = lines.pop(0).strip() if lines and lines[0].strip().startswith("http") else ""
    parsed: dict[str, Any] = {"url": url, "faculty": "", "description": "", "utterances": [],
                              "diagnosis": [], "notes": []}
    for kind, body in _blocks(lines):
        if kind == "faculty":
            parsed["faculty"] = " ".join(x.strip() for x in [parsed["faculty"], *body] if x.strip())
        elif kind == "description":
            account = _description(body)
            if not parsed["description"] and not parsed["utterances"]:
                parsed["description"] = account
            elif account:
                parsed["utterances"].append(("user", account))
        elif kind == "diagnosis":
            summary = _description(body)
            if summary:
                parsed["diagnosis"].append(summary)
        else:
            notes, utterances = _speaker_blocks(body)
            parsed["notes"] += notes
            parsed["utterances"] += [(role, "\n".join(part).strip()) for role, part in utterances]
    return parsed


SECTION_TITLES = frozenset(_SECTIONS)


def reject_section_titles(turns: list[Turn], titles: frozenset[str] = SECTION_TITLES) -> list[Turn]:
    """A message holding a section title on a line of its own means the parser glued a section onto a
    turn: reject the record (`section_header_in_message`) instead of writing a corrupt row."""
    for index, turn in enumerate(turns):
        found = titles.intersection(line.strip() for line in turn.content.split("\n"))
        if found:
            raise Reject("section_header_in_message",
                         f"turn {index} ({turn.role}) contains the section title {sorted(found)[0]!r}")
    return turns


def dialogue_row(description: str, utterances: list[tuple[str, str]], meta: dict[str, Any],
                 native: str | None) -> Row:
    turns = with_opening(description, merge_utterances(utterances))
    return Row(messages=reject_section_titles(finish_dialogue(turns, meta)), native_id=native, meta=meta)


@converter("meddialog_raw", tasks=("sft",), reader="meddialog_raw", version=2)
def meddialog_raw(record: Any, ctx: RecordContext) -> list[Row]:
    """A raw MedDialog record → one multi-turn patient/doctor conversation; URL, hospital, the doctor's
    `Diagnosis and suggestions` and booking notes in meta."""
    record = require_mapping(record)
    parsed = parse_raw_dialogue(get_str(record, "text"))
    if not parsed["utterances"]:
        raise Reject("no_dialogue", "the record has no speaker lines")
    meta: dict[str, Any] = {"dialogue_id": get_str(record, "id"), "url": parsed["url"]}
    if parsed["faculty"]:
        meta["doctor_faculty"] = parsed["faculty"]
    if parsed["diagnosis"]:
        meta["diagnosis_and_suggestions"] = parsed["diagnosis"]
    if parsed["notes"]:
        meta["notes"] = parsed["notes"]
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
