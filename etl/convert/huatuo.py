"""The Huatuo-26M family (`questions`/`answers` as strings, lists or lists of paraphrase lists) and
HuatuoGPT-sft-data-v1 (`data`: alternating `问：`/`答：` strings)."""

from __future__ import annotations

import re
from typing import Any

from etl.convert.base import RecordContext, Reject, Row, Turn, converter
from etl.convert.fieldtools import get_list, native_id, require_mapping, rest_as_meta


def first_text(value: Any, key: str) -> str:
    """The first string of a string, a list, or a list of lists (Huatuo-26M nests question paraphrases:
    `questions[0][0]` is the question, the rest are rewordings)."""
    while isinstance(value, list):
        if not value:
            raise Reject("empty_list", f"field {key!r} is an empty list")
        value = value[0]
    if not isinstance(value, str):
        raise Reject("bad_field_type", f"field {key!r} should hold strings, got {type(value).__name__}")
    return value


@converter("huatuo26m", tasks=("sft",), reader="json")
def huatuo26m(record: Any, ctx: RecordContext) -> list[Row]:
    """First question (of the first paraphrase group) → first answer. Fields default to
    `questions`/`answers`; the Zhongjing copy maps `{question: instruction, answer: output}`."""
    record = require_mapping(record)
    k_q, k_a = ctx.field("question", "questions"), ctx.field("answer", "answers")
    for key in (k_q, k_a):
        if key not in record:
            raise Reject("missing_field", f"no field {key!r}")
    question, answer = first_text(record[k_q], k_q).strip(), first_text(record[k_a], k_a).strip()
    meta = rest_as_meta(record, (k_q, k_a, ctx.fields.get("id", "")))
    first_group = record[k_q][0] if isinstance(record[k_q], list) else None
    if isinstance(first_group, list) and len(first_group) > 1:
        meta["question_paraphrases"] = first_group[1:]
    return [Row(messages=[Turn("user", question), Turn("assistant", answer)],
                native_id=native_id(record, ctx), meta=meta)]


_PREFIX = re.compile(r"^\s*(问|答)[:：]\s*")


@converter("huatuogpt_sft", tasks=("sft",), reader="json")
def huatuogpt_sft(record: Any, ctx: RecordContext) -> list[Row]:
    """`data`: `问：…`, `答：…`, … → alternating user/assistant turns with the prefixes stripped."""
    record = require_mapping(record)
    key = ctx.field("data")
    turns: list[Turn] = []
    for index, item in enumerate(get_list(record, key)):
        if not isinstance(item, str):
            raise Reject("bad_turn", f"{key}[{index}] is not a string")
        match = _PREFIX.match(item)
        expected = "问" if index % 2 == 0 else "答"
        if not match or match.group(1) != expected:
            raise Reject("bad_alternation", f"{key}[{index}] should start with {expected}：")
        turns.append(Turn("user" if expected == "问" else "assistant", item[match.end():].strip()))
    if len(turns) < 2 or len(turns) % 2:
        raise Reject("odd_turns", f"{key} has {len(turns)} items; expected question/answer pairs")
    return [Row(messages=turns, meta=rest_as_meta(record, (key,)))]
