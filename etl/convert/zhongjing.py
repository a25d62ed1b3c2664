"""Zhongjing's CMtMedQA: multi-turn consultations in the Alpaca-with-history shape, plus (in the
test file) safety items under the key `instruct`, whose values often start with a space."""

from __future__ import annotations

from typing import Any

from etl.convert.base import RecordContext, Row, Turn, converter
from etl.convert.fieldtools import get_str, require_mapping, rest_as_meta
from etl.convert.generic import alpaca


@converter("cmtmedqa", tasks=("sft",), reader="json")
def cmtmedqa(record: Any, ctx: RecordContext) -> list[Row]:
    """`{id, cate1, cate2, instruction, input, output, history}` → history pairs then the final turn
    (as `alpaca`); `{instruct, output}` safety items → one turn, marked `meta.kind = safety`."""
    record = require_mapping(record)
    if "instruct" in record and "instruction" not in record:
        turns = [Turn("user", get_str(record, "instruct").strip()), Turn("assistant", get_str(record, "output").strip())]
        return [Row(messages=turns, meta={"kind": "safety", **rest_as_meta(record, ("instruct", "output"))})]
    return alpaca(record, ctx)
