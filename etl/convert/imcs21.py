"""IMCS-21 pediatric consultations (dialogues with a self-report and a medical report) and the DXY
dialogue set shipped with its KRDS baseline (Python `repr` lists, read with `ast.literal_eval`)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from typing import Any

from etl.convert._dialogue import finish_dialogue, merge_utterances, speaker_utterance, with_opening
from etl.convert.base import RecordContext, Reject, Row, converter
from etl.convert.fieldtools import get_list, get_str, require_mapping, rest_as_meta
from etl.read.base import RawRecord, ReadError, ReadItem, SourceFile, cut, reader
from etl.read.text import content_lines

_SPEAKERS = {"患者": "user", "医生": "assistant"}


@converter("imcs21", tasks=("sft",), reader="json")
def imcs21(record: Any, ctx: RecordContext) -> list[Row]:
    """`{"__key__": dialogue id, "__value__": {self_report, dialogue: [{speaker, sentence}], …}}` (the
    `json` reader with `json_object: items`) → the self-report opens the conversation; diagnosis,
    report and symptom annotations go to meta."""
    record = require_mapping(record)
    value = require_mapping(record.get("__value__"))
    utterances: list[tuple[str, str]] = []
    for index, item in enumerate(get_list(value, "dialogue")):
        utterances.append(speaker_utterance(item, _SPEAKERS, "speaker", "sentence", f"dialogue[{index}]")[1])
    meta = {"dialogue_id": str(record.get("__key__")), **rest_as_meta(value, ("dialogue", "self_report"))}
    turns = with_opening(get_str(value, "self_report", required=False), merge_utterances(utterances))
    return [Row(messages=finish_dialogue(turns, meta), native_id=str(record.get("__key__")), meta=meta)]


_LINE = re.compile(r"^(train|dev|test)[ @](.*)$", re.DOTALL)


@reader("imcs21_krds")
def read_imcs21_krds(files: list[SourceFile], options: dict[str, Any]) -> Iterator[ReadItem]:
    """Lines `<split> <python list>` (or `<split>@<list>`); each list element becomes a record with
    `__split__` added. `ast.literal_eval` parses literals only: nothing in the file is executed."""
    for item in content_lines(files, options):
        if isinstance(item, ReadError):
            yield item
            continue
        label, number, line = item
        where = f"line {number}"
        match = _LINE.match(line)
        if not match:
            yield ReadError(label, where, "bad_line", "expected `<split> <python list>`", cut(line))
            continue
        try:
            items = ast.literal_eval(match.group(2))
        except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
            yield ReadError(label, where, "bad_python_literal", str(exc), cut(line))
            continue
        if not isinstance(items, list):
            yield ReadError(label, where, "bad_python_literal", "the payload is not a list", cut(line))
            continue
        for index, value in enumerate(items):
            record = {**value, "__split__": match.group(1)} if isinstance(value, dict) else value
            yield RawRecord(label, f"{where} element {index}", record)


@converter("imcs21_krds", tasks=("sft",), reader="imcs21_krds")
def imcs21_krds(record: Any, ctx: RecordContext) -> list[Row]:
    """`dialog`: the patient's self-report, then doctor question / patient answer pairs and the
    doctor's closing diagnosis (template-generated from symptom slots)."""
    record = require_mapping(record)
    dialog = get_list(record, "dialog")
    if not all(isinstance(x, str) for x in dialog):
        raise Reject("bad_turn", "dialog items should be strings")
    roles = ("user", "assistant")
    turns = merge_utterances((roles[i % 2], text) for i, text in enumerate(dialog))
    if len(turns) != len(dialog):
        raise Reject("bad_alternation", "empty or repeated-speaker items in dialog")
    meta = rest_as_meta(record, ("dialog", "__split__", "self_repo"))
    split = get_str(record, "__split__")
    return [Row(messages=finish_dialogue(turns, meta), split="validation" if split == "dev" else split,
                native_id=get_str(record, "consult_id", required=False) or None, meta=meta)]
