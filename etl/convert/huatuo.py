"""The Huatuo-26M family (`questions`/`answers` as strings, lists or lists of paraphrase lists) and
HuatuoGPT-sft-data-v1 (`data`: alternating `问：`/`答：` strings).

`huatuo26m` carries the largest source (26M pairs), so it has a column-wise twin (etl/convert/base.py
`columnwise`); records the twin cannot shape take the per-record path, which names their rejects."""

from __future__ import annotations

import re
from typing import Any

from etl.catalog import Source
from etl.convert.base import RecordContext, Reject, Row, Shaped, Turn, columnwise, converter
from etl.convert.fieldtools import get_list, meta_json, native_id, native_of, require_mapping, rest_as_meta


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


def _plain_first_text(value: Any) -> str | None:
    """`first_text`'s string for plain JSON values; None where it would reject (or for a value that is
    not a plain list or string, which the per-record path then judges)."""
    while type(value) is list:
        if not value:
            return None
        value = value[0]
    return value if type(value) is str else None


@columnwise("huatuo26m")
def huatuo26m_columns(records: list[Any], source: Source) -> Shaped:
    """The column-wise twin of `huatuo26m`: every record whose question and answer resolve to strings."""
    k_q, k_a = source.fields.get("question", "questions"), source.fields.get("answer", "answers")
    id_key = source.fields.get("id")
    used = {k_q, k_a, source.fields.get("id", "")}
    shaped = Shaped(ok=[])
    for record in records:
        if type(record) is not dict:
            shaped.skip()
            continue
        questions = record.get(k_q)
        question, answer = _plain_first_text(questions), _plain_first_text(record.get(k_a))
        if question is None or answer is None:
            shaped.skip()
            continue
        meta = {} if record.keys() <= used else {k: v for k, v in record.items() if k not in used}
        first_group = questions[0] if type(questions) is list else None
        if type(first_group) is list and len(first_group) > 1:
            meta["question_paraphrases"] = first_group[1:]
        shaped.add_pair(question.strip(), answer.strip(), native_of(record, id_key) if id_key else None,
                        meta_json(meta) if meta else "{}")
    return shaped


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
