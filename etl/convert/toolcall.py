"""ShareGPT with tool calls (MedicalGPT's glaive_toolcall SFT and toolcall DPO files).

Tool calls stay data, in the shape chat templates (TRL, transformers) read:
* `function_call` (the model calling a tool; `{"name", "arguments"}` as JSON, or a list of them) → an
  assistant turn with empty content and `tool_calls` = `[{type: function, function: {name, arguments}}]`,
  `arguments` a JSON object string (the OpenAI wire format; Arrow cannot hold free-form objects);
  adjacent function_call turns (parallel calls) become one assistant turn with several calls;
* `observation` (the tool's result) → a `tool` turn, one per upstream observation;
* the row's `tools` (upstream a JSON-encoded list of `{name, description, parameters}`) → the `tools`
  column, each schema wrapped as `{type: function, function: …}`, the form `apply_chat_template(tools=…)`
  and LLaMA-Factory both accept.
In the DPO file `chosen`/`rejected` are text; a reply written in the ReAct form MedicalGPT uses
(`Action: <name>\\nAction Input: <json>`) is a tool call and becomes one.
"""

from __future__ import annotations

import json
import re
from typing import Any

from etl.convert.base import RecordContext, Reject, Row, ToolCall, Turn, converter
from etl.convert.fieldtools import get_list, get_str, native_id, require_mapping, rest_as_meta
from etl.convert.generic import SHAREGPT_ROLES

_REACT_BLOCK = re.compile(r"Action:[ \t]*(?P<name>[^\n]*\S)[ \t]*\nAction Input:[ \t]*(?P<args>\{.*\})\s*", re.DOTALL)


def _arguments(value: Any, where: str) -> str:
    """Arguments as a compact JSON object string (some exports double-encode them as a string)."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError as exc:
            raise Reject("bad_function_call", f"{where} has arguments that are not JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise Reject("bad_function_call", f"{where} has arguments that are not a JSON object")
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def parse_calls(value: str, where: str) -> tuple[ToolCall, ...]:
    """A `function_call` value (`{"name", "arguments"}` as JSON, or a list of them) → tool calls."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise Reject("bad_function_call", f"{where} is not JSON: {exc.msg}") from None
    calls = parsed if isinstance(parsed, list) else [parsed]
    result = []
    for call in calls:
        if not (isinstance(call, dict) and isinstance(call.get("name"), str) and call["name"].strip()):
            raise Reject("bad_function_call", f"{where} needs a `name` for every call")
        result.append(ToolCall(call["name"].strip(), _arguments(call.get("arguments", {}), where)))
    if not result:
        raise Reject("bad_function_call", f"{where} holds no call")
    return tuple(result)


def reply_turn(text: str, where: str) -> Turn:
    """A chosen/rejected reply: a tool call when the whole text is ReAct `Action:` blocks, else plain text."""
    blocks = [_REACT_BLOCK.fullmatch(block) for block in re.split(r"\n(?=Action:)", text.strip())]
    try:
        calls = tuple(ToolCall(m.group("name"), _arguments(m.group("args"), where)) for m in blocks if m)
    except Reject:  # looks like a call but is not one: keep the text
        return Turn("assistant", text)
    return Turn("assistant", "", calls) if all(blocks) else Turn("assistant", text)


def tool_turns(conversation: list[Any], where: str) -> list[Turn]:
    """ShareGPT turns with function_call → assistant tool-call turns and observation → tool turns."""
    turns: list[Turn] = []
    previous = None
    for index, item in enumerate(conversation):
        here = f"{where}[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("value"), str):
            raise Reject("bad_turn", f"{here} needs a string `value`")
        speaker = str(item.get("from", "")).lower()
        value = item["value"]
        if speaker == "function_call":
            calls = parse_calls(value, here)
            if previous == "function_call":
                turns[-1] = Turn("assistant", "", turns[-1].tool_calls + calls)
            else:
                turns.append(Turn("assistant", "", calls))
        elif speaker == "observation":
            turns.append(Turn("tool", value))
        elif speaker in SHAREGPT_ROLES:
            turns.append(Turn(SHAREGPT_ROLES[speaker], value))
        else:
            raise Reject("unknown_role", f"{here} has speaker {item.get('from')!r}")
        previous = speaker
    return turns


def parse_tools(record: dict[str, Any], key: str) -> str | None:
    """The row's tool schemas as the `tools` column: a JSON list of `{type: function, function: {…}}`, or
    None when the record has none. Upstream `tools` is a JSON-encoded list (a decoded list is accepted)."""
    raw = record.get(key)
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise Reject("bad_tools", f"{key!r} is not valid JSON: {exc.msg}") from None
    if not isinstance(raw, list):
        raise Reject("bad_tools", f"{key!r} should encode a list of tool schemas")
    tools = []
    for index, tool in enumerate(raw):
        if isinstance(tool, dict) and tool.get("type") == "function" and isinstance(tool.get("function"), dict):
            tool = tool["function"]
        if not (isinstance(tool, dict) and isinstance(tool.get("name"), str) and tool["name"].strip()):
            raise Reject("bad_tools", f"{key}[{index}] needs a `name`")
        tools.append({"type": "function", "function": tool})
    return json.dumps(tools, ensure_ascii=False, sort_keys=True) if tools else None


@converter("sharegpt_toolcall", tasks=("sft",), reader="json", version=2)
def sharegpt_toolcall(record: Any, ctx: RecordContext) -> list[Row]:
    """ShareGPT `conversations` with function_call / observation turns → tool-call and tool turns; `tools`
    → the `tools` column."""
    record = require_mapping(record)
    k_conv, k_tools = ctx.field("conversations"), ctx.field("tools")
    turns = tool_turns(get_list(record, k_conv), k_conv)
    meta = rest_as_meta(record, (k_conv, k_tools, ctx.fields.get("id", "")))
    return [Row(messages=turns, tools=parse_tools(record, k_tools), native_id=native_id(record, ctx), meta=meta)]


@converter("preference_toolcall", tasks=("reward",), reader="json", version=2)
def preference_toolcall(record: Any, ctx: RecordContext) -> list[Row]:
    """`conversations` (ending on a human or observation turn) + `chosen` + `rejected` (text or ReAct tool
    calls); `tools` → the `tools` column."""
    record = require_mapping(record)
    k_conv, k_tools = ctx.field("conversations"), ctx.field("tools")
    k_c, k_r = ctx.field("chosen"), ctx.field("rejected")
    prompt = tool_turns(get_list(record, k_conv), k_conv)
    meta = rest_as_meta(record, (k_conv, k_tools, k_c, k_r, ctx.fields.get("id", "")))
    return [Row(prompt=prompt, chosen=reply_turn(get_str(record, k_c), k_c),
                rejected=reply_turn(get_str(record, k_r), k_r), tools=parse_tools(record, k_tools),
                native_id=native_id(record, ctx), meta=meta)]
