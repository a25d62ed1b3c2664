"""ChatMed / ShenNong test examples: prompts wrapped in the authors' template next to model outputs.

Only the prompt is kept, as eval text for decontamination: the responses are the authors' model
outputs, not reference answers, and never become training or eval material.
"""

from __future__ import annotations

import re
from typing import Any

from etl.convert.base import RecordContext, Reject, Row, converter
from etl.convert.fieldtools import get_str, require_mapping

# `<s>问：\n{question}\n答：\n`, the template of the ChatMed / ShenNong training code
_WRAPPED = re.compile(r"^\s*(?:<s>)?\s*问[:：]\s*(.*?)\s*(?:答[:：]\s*)?$", re.DOTALL)


def unwrap_prompt(text: str) -> str:
    match = _WRAPPED.match(text)
    return (match.group(1) if match else text).strip()


@converter("wrapped_prompt", tasks=("pretrain",), reader="auto")
def wrapped_prompt(record: Any, ctx: RecordContext) -> list[Row]:
    """The prompt field (`fields.text`, default `query`) without its `<s>问：…答：` wrapper → text."""
    record = require_mapping(record)
    prompt = unwrap_prompt(get_str(record, ctx.field("text", "query")))
    if not prompt:
        raise Reject("empty_prompt", "the prompt is empty once unwrapped")
    return [Row(text=prompt)]
