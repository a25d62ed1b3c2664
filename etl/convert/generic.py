"""Generic converters: a source in one of these shapes needs only YAML (`format:` + `fields:`).

`fields:` maps the unified name to the upstream key, e.g. `{query: 问, response: 答}`.
Role order, empty content and chosen ≠ rejected are checked for every row by the build's validator
(etl/rows.py), so converters here only shape records.

Each converter configured only by `fields:`/`options:` also has a column-wise twin (`@columnwise`) that
shapes a whole batch into flat columns for etl/batchrows.py. A twin handles only records of the plain
shape (the fields present with string values, known roles) and marks every other record, which then
goes through the converter function itself, so that rejects keep their reasons. `preference` has none
yet: the reward schema is changing.
"""

from __future__ import annotations

from typing import Any

from etl.catalog import Source
from etl.convert.base import Filtered, RecordContext, Reject, Row, Shaped, Turn, columnwise, converter
from etl.convert.fieldtools import (
    get_list,
    get_str,
    join_instruction,
    meta_json,
    native_id,
    native_of,
    pairs_to_turns,
    plain_pairs,
    rest_as_meta,
)
from etl.convert.shape import may_be_header_line, reject_header_line, require_shape

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
    record = require_shape(record, ctx, (ctx.field("instruction"), ctx.field("input"), ctx.field("output")))
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
    record = require_shape(record, ctx, (ctx.field("query"), ctx.field("response")))
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
    record = require_shape(record, ctx, (ctx.field("conversations"),))
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
    record = require_shape(record, ctx, (ctx.field("messages"),))
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
    record = require_shape(record, ctx, (ctx.field("conversations"), ctx.field("question"), ctx.field("chosen"),
                                         ctx.field("chosen", "response_chosen")))
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
        reject_header_line(record, ctx)
        return [Row(text=record)]
    record = require_shape(record, ctx, (ctx.fields.get("text", "text"), "content"))
    key = ctx.fields.get("text") or ("text" if "text" in record else "content")
    return [Row(text=get_str(record, key), native_id=native_id(record, ctx),
                meta=rest_as_meta(record, (key, ctx.fields.get("id", ""))))]


# --------------------------------------------------------------------------- column-wise twins


def _opt_str(value: Any) -> bool:
    """`get_str(..., required=False)` would return `value` itself, or "" for None."""
    return value is None or type(value) is str


class _Batch:
    """Collects a `Shaped` batch: `add` an ok record's turns (or text), `skip` one for the per-record path."""

    def __init__(self, source: Source, used: tuple[str, ...]) -> None:
        self.shaped = Shaped(ok=[])
        self.used = set(used)
        self.id_key = source.fields.get("id")

    def skip(self) -> None:
        self.shaped.ok.append(False)

    def add(self, record: dict[str, Any], roles: list[str], contents: list[str]) -> None:
        shaped = self.shaped
        shaped.ok.append(True)
        shaped.lengths.append(len(roles))
        shaped.roles += roles
        shaped.contents += contents
        self._common(record)

    def add_text(self, record: dict[str, Any] | None, text: str) -> None:
        self.shaped.ok.append(True)
        self.shaped.texts.append(text)
        if record is None:
            self.shaped.natives.append(None)
            self.shaped.metas.append("{}")
        else:
            self._common(record)

    def _common(self, record: dict[str, Any]) -> None:
        self.shaped.natives.append(native_of(record, self.id_key))
        used = self.used
        self.shaped.metas.append("{}" if record.keys() <= used else meta_json({k: v for k, v in record.items() if k not in used}))


def _field(source: Source, name: str, default: str | None = None) -> str:
    """`RecordContext.field` without a record."""
    return source.fields.get(name, default if default is not None else name)


@columnwise("alpaca")
def alpaca_columns(records: list[Any], source: Source) -> Shaped:
    k_ins, k_in, k_out = _field(source, "instruction"), _field(source, "input"), _field(source, "output")
    k_hist, k_sys = _field(source, "history"), _field(source, "system")
    batch = _Batch(source, (k_ins, k_in, k_out, k_hist, k_sys, source.fields.get("id", "")))
    for record in records:
        if type(record) is not dict:
            batch.skip()
            continue
        ins, inp, output = record.get(k_ins), record.get(k_in), record.get(k_out)
        system, history = record.get(k_sys), record.get(k_hist)
        if not (type(output) is str and _opt_str(ins) and _opt_str(inp) and _opt_str(system)
                and (history is None or plain_pairs(history))):
            batch.skip()
            continue
        user = join_instruction(ins or "", inp or "")
        if not user:
            batch.skip()
            continue
        roles: list[str] = []
        contents: list[str] = []
        system = (system or "").strip()
        if system:
            roles.append("system")
            contents.append(system)
        for question, answer in history or ():
            roles += ("user", "assistant")
            contents += (question, answer)
        roles += ("user", "assistant")
        contents += (user, output)
        batch.add(record, roles, contents)
    return batch.shaped


@columnwise("query_response")
def query_response_columns(records: list[Any], source: Source) -> Shaped:
    k_q, k_r = _field(source, "query"), _field(source, "response")
    batch = _Batch(source, (k_q, k_r, source.fields.get("id", "")))
    for record in records:
        if type(record) is not dict or type(record.get(k_q)) is not str or type(record.get(k_r)) is not str:
            batch.skip()
            continue
        batch.add(record, ["user", "assistant"], [record[k_q], record[k_r]])
    return batch.shaped


@columnwise("sharegpt")
def sharegpt_columns(records: list[Any], source: Source) -> Shaped:
    k_conv, k_sys = _field(source, "conversations"), _field(source, "system", "system_prompt")
    role_key = source.options.get("role_key", "from")
    content_key = source.options.get("content_key", "value")
    speakers = {**SHAREGPT_ROLES, **source.options.get("role_map", {})}
    batch = _Batch(source, (k_conv, k_sys, source.fields.get("id", "")))
    for record in records:
        conversation = record.get(k_conv) if type(record) is dict else None
        system = record.get(k_sys) if type(record) is dict else None
        if type(conversation) is not list or not _opt_str(system):
            batch.skip()
            continue
        roles: list[str] = []
        contents: list[str] = []
        for turn in conversation:
            if type(turn) is not dict or type(turn.get(content_key)) is not str or turn.get(role_key) is None:
                break
            role = speakers.get(str(turn[role_key]).lower())
            if role is None:
                break
            roles.append(role)
            contents.append(turn[content_key])
        else:
            system = (system or "").strip()
            if system and not (roles and roles[0] == "system"):
                roles.insert(0, "system")
                contents.insert(0, system)
            batch.add(record, roles, contents)
            continue
        batch.skip()
    return batch.shaped


@columnwise("messages")
def messages_columns(records: list[Any], source: Source) -> Shaped:
    k_msg = _field(source, "messages")
    batch = _Batch(source, (k_msg, source.fields.get("id", "")))
    for record in records:
        items = record.get(k_msg) if type(record) is dict else None
        if type(items) is not list or not all(
                type(item) is dict and type(item.get("content")) is str and item.get("role") in ("system", "user", "assistant")
                for item in items):
            batch.skip()
            continue
        batch.add(record, [item["role"] for item in items], [item["content"] for item in items])
    return batch.shaped


@columnwise("text")
def text_columns(records: list[Any], source: Source) -> Shaped:
    key_setting = source.fields.get("text")
    id_key = source.fields.get("id", "")
    batch = _Batch(source, ())
    for record in records:
        if type(record) is str:
            if record.strip() and not may_be_header_line(record):
                batch.add_text(None, record)
            else:
                batch.skip()
            continue
        if type(record) is not dict:
            batch.skip()
            continue
        key = key_setting or ("text" if "text" in record else "content")
        if type(record.get(key)) is not str:
            batch.skip()
            continue
        batch.used = {key, id_key}
        batch.add_text(record, record[key])
    return batch.shaped
