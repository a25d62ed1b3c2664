"""ShareGPT with tool calls (MedicalGPT's glaive_toolcall SFT and toolcall DPO files).

The unified schemas know only system / user / assistant, so the two tool roles are mapped and rendered
in the ReAct text form that MedicalGPT's own DPO data already uses for its `chosen` answers:
* `function_call` (the model calling a tool) → an **assistant** turn
  `Action: <name>\\nAction Input: <arguments as JSON>` (one block per call when a turn holds several);
* `observation` (the tool's result fed back) → a **user** turn `Observation: <result>`.
The conversation then alternates as the schema requires (user, assistant-call, user-result, assistant).
Nothing is lost: the tool schemas (upstream a JSON-encoded string) are parsed into `meta.tools`, and the
original speaker of every turn is kept in `meta.roles`, so a trainer can re-render both with its own chat
template's tool roles.
"""

from __future__ import annotations

import json
from typing import Any

from etl.convert.base import RecordContext, Reject, Row, Turn, converter
from etl.convert.fieldtools import get_list, get_str, native_id, require_mapping, rest_as_meta
from etl.convert.generic import SHAREGPT_ROLES

TOOL_ROLES = {"function_call": "assistant", "observation": "user"}


def render_call(value: str, where: str) -> str:
    """A `function_call` value (`{"name", "arguments"}` as JSON, or a list of them) → ReAct text."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise Reject("bad_function_call", f"{where} is not JSON: {exc.msg}") from None
    calls = parsed if isinstance(parsed, list) else [parsed]
    blocks = []
    for call in calls:
        if not (isinstance(call, dict) and isinstance(call.get("name"), str) and call["name"]):
            raise Reject("bad_function_call", f"{where} needs a `name` for every call")
        arguments = call.get("arguments", {})
        if isinstance(arguments, str):  # some exports double-encode the arguments
            arguments = _loads_or_keep(arguments)
        blocks.append(f"Action: {call['name']}\nAction Input: {json.dumps(arguments, ensure_ascii=False)}")
    return "\n".join(blocks)


def _loads_or_keep(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def tool_turns(conversation: list[Any], where: str) -> tuple[list[Turn], list[str]]:
    """ShareGPT turns with tool roles rendered; adjacent tool turns of one kind (parallel calls, several
    results) become one turn. Returns the turns and the original speaker of each upstream turn."""
    turns: list[Turn] = []
    speakers: list[str] = []
    previous = None
    for index, item in enumerate(conversation):
        here = f"{where}[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("value"), str):
            raise Reject("bad_turn", f"{here} needs a string `value`")
        speaker = str(item.get("from", "")).lower()
        value = item["value"]
        if speaker == "function_call":
            content = render_call(value, here)
        elif speaker == "observation":
            content = f"Observation: {value}"
        elif speaker in SHAREGPT_ROLES:
            content = value
        else:
            raise Reject("unknown_role", f"{here} has speaker {item.get('from')!r}")
        role = TOOL_ROLES.get(speaker) or SHAREGPT_ROLES[speaker]
        if speaker in TOOL_ROLES and speaker == previous:
            turns[-1] = Turn(role, f"{turns[-1].content}\n{content}")
        else:
            turns.append(Turn(role, content))
        speakers.append(speaker)
        previous = speaker
    return turns, speakers


def parse_tools(record: dict[str, Any], key: str) -> list[Any]:
    """`tools` is a JSON-encoded list upstream (an already-decoded list is accepted too)."""
    raw = record.get(key)
    if raw is None or raw == "":
        return []
    if isinstance(raw, list):
        return raw
    if not isinstance(raw, str):
        raise Reject("bad_tools", f"{key!r} should be a JSON string, got {type(raw).__name__}")
    try:
        tools = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise Reject("bad_tools", f"{key!r} is not valid JSON: {exc.msg}") from None
    if not isinstance(tools, list):
        raise Reject("bad_tools", f"{key!r} should encode a list of tool schemas")
    return tools


@converter("sharegpt_toolcall", tasks=("sft",), reader="json")
def sharegpt_toolcall(record: Any, ctx: RecordContext) -> list[Row]:
    """ShareGPT `conversations` with function_call / observation turns; `tools` → meta."""
    record = require_mapping(record)
    k_conv, k_tools = ctx.field("conversations"), ctx.field("tools")
    turns, speakers = tool_turns(get_list(record, k_conv), k_conv)
    meta = {"tools": parse_tools(record, k_tools), "roles": speakers,
            **rest_as_meta(record, (k_conv, k_tools, ctx.fields.get("id", "")))}
    return [Row(messages=turns, native_id=native_id(record, ctx), meta=meta)]


@converter("preference_toolcall", tasks=("reward",), reader="json")
def preference_toolcall(record: Any, ctx: RecordContext) -> list[Row]:
    """`conversations` (ending on a human or observation turn) + `chosen` + `rejected`; `tools` → meta."""
    record = require_mapping(record)
    k_conv, k_tools = ctx.field("conversations"), ctx.field("tools")
    k_c, k_r = ctx.field("chosen"), ctx.field("rejected")
    prompt, speakers = tool_turns(get_list(record, k_conv), k_conv)
    meta = {"tools": parse_tools(record, k_tools), "roles": speakers,
            **rest_as_meta(record, (k_conv, k_tools, k_c, k_r, ctx.fields.get("id", "")))}
    return [Row(prompt=prompt, chosen=get_str(record, k_c), rejected=get_str(record, k_r),
                native_id=native_id(record, ctx), meta=meta)]
