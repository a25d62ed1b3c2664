"""Small helpers converters share: typed field access that rejects with a precise reason, and meta."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from etl.convert.base import RecordContext, Reject, Turn

_META = json.JSONEncoder(ensure_ascii=False, sort_keys=True, default=str)


def require_mapping(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise Reject("bad_record_type", f"expected a JSON object, got {type(record).__name__}")
    return record


def get_str(record: dict[str, Any], key: str, *, required: bool = True) -> str:
    """A string field; numbers are accepted as text, anything else is `bad_field_type`."""
    if key not in record or record[key] is None:
        if required:
            raise Reject("missing_field", f"no field {key!r}")
        return ""
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise Reject("bad_field_type", f"field {key!r} should be a string, got {type(value).__name__}")
    return str(value)


def get_list(record: dict[str, Any], key: str, *, required: bool = True) -> list[Any]:
    if key not in record or record[key] is None:
        if required:
            raise Reject("missing_field", f"no field {key!r}")
        return []
    value = record[key]
    if not isinstance(value, list):
        raise Reject("bad_field_type", f"field {key!r} should be a list, got {type(value).__name__}")
    return value


def rest_as_meta(record: dict[str, Any], used: Iterable[str]) -> dict[str, Any]:
    """Upstream fields the converter did not consume, kept in `meta` so nothing is lost."""
    used_set = set(used)
    return {k: v for k, v in record.items() if k not in used_set}


def meta_json(meta: dict[str, Any]) -> str:
    """The `meta` column: upstream extras as a JSON object with sorted keys, `{}` when none."""
    return _META.encode(meta) if meta else "{}"


def native_id(record: dict[str, Any], ctx: RecordContext) -> str | None:
    """The upstream id when the source maps one with `fields: {id: <key>}`."""
    return native_of(record, ctx.fields.get("id"))


def native_of(record: dict[str, Any], key: str | None) -> str | None:
    if not key or record.get(key) is None:
        return None
    return str(record[key])


def plain_pairs(history: Any) -> bool:
    """`history` is a list of [question, answer] string pairs (what `pairs_to_turns` accepts)."""
    return type(history) is list and all(
        type(pair) in (list, tuple) and len(pair) == 2 and type(pair[0]) is str and type(pair[1]) is str
        for pair in history)


def pairs_to_turns(history: list[Any], where: str = "history") -> list[Turn]:
    """Alpaca-style `history`: a list of [question, answer] pairs."""
    turns: list[Turn] = []
    for index, pair in enumerate(history):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise Reject("bad_history", f"{where}[{index}] should be a [question, answer] pair of strings")
        turns.extend((Turn("user", pair[0]), Turn("assistant", pair[1])))
    return turns


def join_instruction(instruction: str, input_text: str) -> str:
    """DESIGN §3: `instruction`, a blank line, `input` (when `input` is non-empty)."""
    instruction, input_text = instruction.strip(), input_text.strip()
    if instruction and input_text:
        return f"{instruction}\n\n{input_text}"
    return instruction or input_text
