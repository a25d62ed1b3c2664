"""SCIR-HI's CMeKG + GPT-3.5 data: Med-ChatGLM `train.txt` and the 本草 (Huatuo-Llama-Med-Chinese)
liver-cancer literature dialogues."""

from __future__ import annotations

import re
from typing import Any

from etl.convert.base import RecordContext, Reject, Row, Turn, converter
from etl.convert.fieldtools import get_str, native_id, require_mapping, rest_as_meta

# Med-ChatGLM bakes its prompt into `context`: `问题：<question>\n回答: ` (full-width, then ASCII colon)
_CHATGLM_PROMPT = re.compile(r"^\s*问题[:：]\s*(.*?)\s*回答[:：]\s*$", re.DOTALL)


@converter("med_chatglm", tasks=("sft",), reader="json")
def med_chatglm(record: Any, ctx: RecordContext) -> list[Row]:
    """`{context: "问题：…\\n回答: ", target}` → the bare question → `target`."""
    record = require_mapping(record)
    context = get_str(record, "context")
    match = _CHATGLM_PROMPT.match(context)
    if not match:
        raise Reject("bad_prompt_wrapper", "context is not `问题：…\\n回答: `")
    turns = [Turn("user", match.group(1)), Turn("assistant", get_str(record, "target").strip())]
    return [Row(messages=turns, meta=rest_as_meta(record, ("context", "target")))]


_SPEAKER = re.compile(r"\s*<(user|bot)>:\s*")


@converter("bencao_literature", tasks=("sft",), reader="json")
def bencao_literature(record: Any, ctx: RecordContext) -> list[Row]:
    """`instruction` holds the conversation so far as ` <user>: … <bot>: … <user>: …`; `output` is
    the final bot turn. The optional int `id` (211 of 1,000 rows) becomes the native id."""
    record = require_mapping(record)
    instruction = get_str(record, "instruction")
    parts = _SPEAKER.split(instruction)
    if parts[0].strip() or len(parts) < 3:
        raise Reject("bad_transcript", "instruction does not start with a `<user>:` turn")
    turns: list[Turn] = []
    for index in range(1, len(parts), 2):
        role = "user" if parts[index] == "user" else "assistant"
        expected = "user" if len(turns) % 2 == 0 else "assistant"
        if role != expected:
            raise Reject("bad_alternation", f"turn {len(turns) + 1} is <{parts[index]}>, expected the other speaker")
        turns.append(Turn(role, parts[index + 1].strip()))
    if turns[-1].role != "user":
        raise Reject("bad_alternation", "the transcript should end with the user's question")
    turns.append(Turn("assistant", get_str(record, "output").strip()))
    extra_input = get_str(record, "input", required=False).strip()
    meta = rest_as_meta(record, ("instruction", "output", "input", "id"))
    if extra_input:
        meta["input"] = extra_input
    return [Row(messages=turns, native_id=native_id(record, ctx), meta=meta)]
