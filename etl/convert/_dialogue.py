"""Shared shaping of patient/doctor dialogues into alternating user/assistant turns.

Consultation sites record one message per line or per post, so the same speaker often posts several
times in a row; DESIGN §3 wants strict alternation, so consecutive same-speaker utterances are merged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from etl.convert.base import Filtered, Reject, Turn
from etl.convert.fieldtools import get_str, require_mapping


def speaker_utterance(item: Any, speakers: Mapping[str, str], speaker_key: str, text_key: str,
                      where: str) -> tuple[dict[str, Any], tuple[str, str]]:
    """One utterance object of a dialogue → (the object, (role, text)); a speaker outside `speakers`
    is `unknown_role`, naming `where` it stands."""
    item = require_mapping(item)
    speaker = get_str(item, speaker_key)
    if speaker not in speakers:
        raise Reject("unknown_role", f"{where} has {speaker_key} {speaker!r}")
    return item, (speakers[speaker], get_str(item, text_key))


def merge_utterances(utterances: Iterable[tuple[str, str]], joiner: str = "\n") -> list[Turn]:
    """`(role, text)` pairs → turns: text stripped, empty utterances dropped, consecutive same-role
    utterances joined with `joiner`."""
    turns: list[Turn] = []
    for role, text in utterances:
        text = text.strip()
        if not text:
            continue
        if turns and turns[-1].role == role:
            turns[-1] = Turn(role, f"{turns[-1].content}{joiner}{text}")
        else:
            turns.append(Turn(role, text))
    return turns


def with_opening(opening: str, turns: list[Turn]) -> list[Turn]:
    """Put the patient's written account (MedDialog description, IMCS self-report) first: it opens
    the first patient turn, or becomes that turn when the doctor speaks first."""
    opening = opening.strip()
    if not opening:
        return turns
    if turns and turns[0].role == "user":
        return [Turn("user", f"{opening}\n\n{turns[0].content}"), *turns[1:]]
    return [Turn("user", opening), *turns]


def finish_dialogue(turns: list[Turn], meta: dict[str, Any]) -> list[Turn]:
    """Make merged turns a trainable conversation: a closing patient message nobody answered (thanks,
    "new files uploaded") is moved to `meta["unanswered"]`; a dialogue without any doctor reply is
    `Filtered`; one that still does not start with the patient is rejected."""
    if turns and turns[-1].role == "user":
        meta["unanswered"] = turns[-1].content
        turns = turns[:-1]
    if not any(t.role == "assistant" for t in turns):
        raise Filtered("no_doctor_reply")
    if turns[0].role != "user":
        raise Reject("starts_with_doctor", "the dialogue opens with the doctor and has no patient text before it")
    return turns
