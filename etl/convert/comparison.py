"""GPT-4-LLM comparison data (the LLaMA-Factory ranking shape): `instruction` + `input` is the prompt and
`output` is a list of responses ranked best first, so `output[0]` is chosen and `output[-1]` rejected."""

from __future__ import annotations

from typing import Any

from etl.convert.base import RecordContext, Reject, Row, Turn, converter
from etl.convert.fieldtools import (
    get_list,
    get_str,
    join_instruction,
    native_id,
    require_mapping,
    rest_as_meta,
)


@converter("ranked_output", tasks=("reward",), reader="json")
def ranked_output(record: Any, ctx: RecordContext) -> list[Row]:
    """`{instruction, input, output: [best, …, worst]}` → prompt, chosen = best, rejected = worst."""
    record = require_mapping(record)
    k_ins, k_in, k_out = ctx.field("instruction"), ctx.field("input"), ctx.field("output")
    user = join_instruction(get_str(record, k_ins, required=False), get_str(record, k_in, required=False))
    if not user:
        raise Reject("empty_instruction", f"both {k_ins!r} and {k_in!r} are empty")
    ranked = get_list(record, k_out)
    if len(ranked) < 2:
        raise Reject("bad_ranking", f"{k_out!r} needs at least two responses (best first), got {len(ranked)}")
    if not all(isinstance(item, str) for item in ranked):
        raise Reject("bad_ranking", f"{k_out!r} should hold strings")
    meta = rest_as_meta(record, (k_ins, k_in, k_out, ctx.fields.get("id", "")))
    if len(ranked) > 2:
        meta["ranked_count"] = len(ranked)
    return [Row(prompt=[Turn("user", user)], chosen=Turn("assistant", ranked[0]), rejected=Turn("assistant", ranked[-1]),
                native_id=native_id(record, ctx), meta=meta)]
