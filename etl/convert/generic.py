"""Generic converters: a source in one of these shapes needs only YAML (`format:` + `fields:`).

`fields:` maps the unified name to the upstream key, e.g. `{query: 问, response: 答}`.
Role order, empty content and chosen ≠ rejected are checked for every row by the build's validator
(etl/rows.py), so converters here only shape records.
"""

from __future__ import annotations

from typing import Any

from etl.convert.base import Filtered, RecordContext, Reject, Row, Turn, converter
from etl.convert.fieldtools import (
    get_list,
    get_str,
    join_instruction,
    native_id,
    pairs_to_turns,
    require_mapping,
    rest_as_meta,
)

# ShareGPT speaker names seen upstream → unified roles. Tool-calling roles are not mapped by default:
# a source that has them says how in `options.role_map`.
SHAREGPT_ROLES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "bard": "assistant", "bing": "assistant",
    "system": "system",
}


@converter("alpaca", tasks=("sft",), reader="json")
def alpaca(record: Any, ctx: RecordContext) -> list[Row]:
    """`instruction` + `input` → user, `output` → assistant; optional `history` pairs and `system`."""
    record = require_mapping(record)
    k_ins, k_in, k_out = ctx.field("instruction"), ctx.field("input"), ctx.field("output")
    k_hist, k_sys = ctx.field("history"), ctx.field("system")
    user = join_instruction(get_str(record, k_ins, required=False), get_str(record, k_in, required=False))
    if not user:
        raise Reject("empty_instruction", f"both {k_ins!r} and {k_in!r} are empty")
    output = get_str(record, k_out)
    turns: list[Turn] = []
    system = get_str(record, k_sys, required=False).strip()
    if system:
        turns.append(Turn("system", system))
    turns.extend(pairs_to_turns(get_list(record, k_hist, required=False)))
    turns += [Turn("user", user), Turn("assistant", output)]
    used = (k_ins, k_in, k_out, k_hist, k_sys, ctx.fields.get("id", ""))
    return [Row(messages=turns, native_id=native_id(record, ctx), meta=rest_as_meta(record, used))]


@converter("query_response", tasks=("sft",), reader="json")
def query_response(record: Any, ctx: RecordContext) -> list[Row]:
    """One question → one answer (`query`/`response` by default; e.g. `{query: 问, response: 答}`)."""
    record = require_mapping(record)
    k_q, k_r = ctx.field("query"), ctx.field("response")
    turns = [Turn("user", get_str(record, k_q)), Turn("assistant", get_str(record, k_r))]
    used = (k_q, k_r, ctx.fields.get("id", ""))
    return [Row(messages=turns, native_id=native_id(record, ctx), meta=rest_as_meta(record, used))]


def sharegpt_turns(conversation: list[Any], ctx: RecordContext, where: str) -> list[Turn]:
    """ShareGPT `[{from, value}]` → turns, with `options.role_map` extending the default speaker map."""
    role_key = ctx.options.get("role_key", "from")
    content_key = ctx.options.get("content_key", "value")
    roles = {**SHAREGPT_ROLES, **ctx.options.get("role_map", {})}
    turns: list[Turn] = []
    for index, turn in enumerate(conversation):
        if not isinstance(turn, dict):
            raise Reject("bad_turn", f"{where}[{index}] is not an object")
        speaker = turn.get(role_key)
        content = turn.get(content_key)
        if not isinstance(content, str):
            raise Reject("bad_turn", f"{where}[{index}].{content_key} should be a string")
        role = roles.get(str(speaker).lower()) if speaker is not None else None
        if role is None:
            raise Reject("unknown_role", f"{where}[{index}] has speaker {speaker!r}")
        turns.append(Turn(role, content))
    return turns


@converter("sharegpt", tasks=("sft",), reader="json")
def sharegpt(record: Any, ctx: RecordContext) -> list[Row]:
    """ShareGPT `conversations`; a `system_prompt` field becomes the leading system turn; `tools` go to meta."""
    record = require_mapping(record)
    k_conv, k_sys = ctx.field("conversations"), ctx.field("system", "system_prompt")
    turns = sharegpt_turns(get_list(record, k_conv), ctx, k_conv)
    system = get_str(record, k_sys, required=False).strip()
    if system and not (turns and turns[0].role == "system"):
        turns.insert(0, Turn("system", system))
    used = (k_conv, k_sys, ctx.fields.get("id", ""))
    return [Row(messages=turns, native_id=native_id(record, ctx), meta=rest_as_meta(record, used))]


@converter("messages", tasks=("sft",), reader="json")
def messages(record: Any, ctx: RecordContext) -> list[Row]:
    """OpenAI fine-tuning `messages`: `[{role, content}]`."""
    record = require_mapping(record)
    k_msg = ctx.field("messages")
    turns: list[Turn] = []
    for index, item in enumerate(get_list(record, k_msg)):
        if not isinstance(item, dict) or not isinstance(item.get("content"), str):
            raise Reject("bad_turn", f"{k_msg}[{index}] needs a string `content`")
        role = item.get("role")
        if role not in ("system", "user", "assistant"):
            raise Reject("unknown_role", f"{k_msg}[{index}] has role {role!r}")
        turns.append(Turn(role, item["content"]))
    used = (k_msg, ctx.fields.get("id", ""))
    return [Row(messages=turns, native_id=native_id(record, ctx), meta=rest_as_meta(record, used))]


@converter("preference", tasks=("reward",), reader="json")
def preference(record: Any, ctx: RecordContext) -> list[Row]:
    """A preference pair: `question`/`response_chosen`/`response_rejected` (+ `system`, `history`), or
    ShareGPT `conversations` + `chosen` + `rejected` (the MedicalGPT DPO shape)."""
    record = require_mapping(record)
    k_conv = ctx.field("conversations")
    if k_conv in record:
        prompt = sharegpt_turns(get_list(record, k_conv), ctx, k_conv)
        k_c, k_r = ctx.field("chosen"), ctx.field("rejected")
        used: tuple[str, ...] = (k_conv, k_c, k_r)
    else:
        k_q, k_c, k_r = ctx.field("question"), ctx.field("chosen", "response_chosen"), ctx.field("rejected", "response_rejected")
        k_sys, k_hist = ctx.field("system"), ctx.field("history")
        prompt = []
        system = get_str(record, k_sys, required=False).strip()
        if system:
            prompt.append(Turn("system", system))
        prompt += pairs_to_turns(get_list(record, k_hist, required=False))
        prompt.append(Turn("user", get_str(record, k_q)))
        used = (k_q, k_c, k_r, k_sys, k_hist)
    row = Row(prompt=prompt, chosen=Turn("assistant", get_str(record, k_c)),
              rejected=Turn("assistant", get_str(record, k_r)),
              native_id=native_id(record, ctx), meta=rest_as_meta(record, (*used, ctx.fields.get("id", ""))))
    return [row]


@converter("text", tasks=("pretrain",), reader="auto")
def text(record: Any, ctx: RecordContext) -> list[Row]:
    """Pretraining documents: plain lines, JSON string arrays, or `{text}` / `{content}` objects."""
    if isinstance(record, str):
        if not record.strip():
            raise Filtered("blank_line")
        return [Row(text=record)]
    record = require_mapping(record)
    key = ctx.fields.get("text") or ("text" if "text" in record else "content")
    return [Row(text=get_str(record, key), native_id=native_id(record, ctx),
                meta=rest_as_meta(record, (key, ctx.fields.get("id", ""))))]
