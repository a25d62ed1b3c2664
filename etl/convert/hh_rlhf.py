"""Anthropic HH-RLHF: each record holds two whole transcripts (`chosen`, `rejected`) written as
`"\\n\\nHuman: …\\n\\nAssistant: …"`. They share every turn but the last Assistant reply, so the pair
becomes one reward row: the shared turns as `prompt`, the two final replies as `chosen` / `rejected` (one assistant turn each)."""

from __future__ import annotations

import re
from typing import Any

from etl.convert.base import RecordContext, Reject, Row, Turn, converter
from etl.convert.fieldtools import get_str, require_mapping, rest_as_meta

# A speaker tag starts a turn only after a blank line; "Human:" inside a reply (it happens upstream,
# e.g. an Assistant turn that begins "Human: …") stays part of that reply.
_SPEAKER = re.compile(r"\n\n(Human|Assistant):")
_ROLES = {"Human": "user", "Assistant": "assistant"}


def parse_transcript(transcript: str, which: str) -> list[Turn]:
    """Split one transcript into turns. Upstream puts one space after the colon; it is not content."""
    parts = _SPEAKER.split(transcript)
    if parts[0].strip():
        raise Reject("bad_transcript", f"{which} has text before its first speaker tag: {parts[0][:60]!r}")
    turns = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        turns.append(Turn(_ROLES[speaker], content.removeprefix(" ")))
    if not turns:
        raise Reject("bad_transcript", f"{which} has no `\\n\\nHuman:` / `\\n\\nAssistant:` turns")
    if turns[-1].role != "assistant":
        raise Reject("bad_transcript", f"{which} does not end with an Assistant reply")
    return turns


@converter("hh_rlhf", tasks=("reward",), reader="json")
def hh_rlhf(record: Any, ctx: RecordContext) -> list[Row]:
    """`chosen` / `rejected` transcripts → shared prompt + the two final Assistant replies."""
    record = require_mapping(record)
    k_c, k_r = ctx.field("chosen"), ctx.field("rejected")
    chosen = parse_transcript(get_str(record, k_c), k_c)
    rejected = parse_transcript(get_str(record, k_r), k_r)
    prompt = chosen[:-1]
    if prompt != rejected[:-1]:
        diverge = next((i for i, (a, b) in enumerate(zip(prompt, rejected[:-1], strict=False)) if a != b),
                       min(len(prompt), len(rejected) - 1))
        raise Reject("prompt_mismatch", f"{k_c} and {k_r} differ before their final reply (turn {diverge + 1}: "
                     f"{len(chosen)} vs {len(rejected)} turns)")
    return [Row(prompt=prompt, chosen=chosen[-1], rejected=rejected[-1],
                meta=rest_as_meta(record, (k_c, k_r)))]
