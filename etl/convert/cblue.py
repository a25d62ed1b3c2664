"""CBLUE dialogue tasks (Tianchi dataset 95414): CHIP-MDCFNPC and MedDG, both Chunyu Doctor
consultations. Sentences become turns; the entity annotations are kept in meta."""

from __future__ import annotations

from typing import Any

from etl.convert._dialogue import finish_dialogue, merge_utterances, speaker_utterance
from etl.convert.base import RecordContext, Reject, Row, converter
from etl.convert.fieldtools import get_list, get_str, require_mapping

_CHIP_SENDERS = {"患者": "user", "医生": "assistant"}
_MEDDG_SPEAKERS = {"Patients": "user", "Patient": "user", "Doctor": "assistant"}
_MEDDG_ENTITY_KEYS = ("Symptom", "Medicine", "Test", "Examination", "Attribute", "Disease")


@converter("chip_mdcfnpc", tasks=("sft",), reader="json")
def chip_mdcfnpc(record: Any, ctx: RecordContext) -> list[Row]:
    """`{dialog_id, dialog_info: [{sentence_id, sender, text, ner}]}` → conversation; the clinical
    finding annotations (`ner`, with polarity `attr`) go to `meta.findings` keyed by sentence id."""
    record = require_mapping(record)
    utterances: list[tuple[str, str]] = []
    findings: dict[str, Any] = {}
    for index, raw in enumerate(get_list(record, "dialog_info")):
        sentence, utterance = speaker_utterance(raw, _CHIP_SENDERS, "sender", "text", f"dialog_info[{index}]")
        utterances.append(utterance)
        if sentence.get("ner"):
            findings[get_str(sentence, "sentence_id", required=False) or str(index)] = sentence["ner"]
    dialog_id = get_str(record, "dialog_id")
    meta: dict[str, Any] = {"dialog_id": dialog_id, "findings": findings}
    return [Row(messages=finish_dialogue(merge_utterances(utterances), meta), native_id=dialog_id, meta=meta)]


@converter("meddg", tasks=("sft",), reader="json", version=2)
def meddg(record: Any, ctx: RecordContext) -> list[Row]:
    """A MedDG dialogue: a list of `{id: Patients|Doctor, Sentence, Symptom, Medicine, Test, …}` →
    conversation; the entities mentioned anywhere in it go to meta (sorted, per kind)."""
    if not isinstance(record, list):
        raise Reject("bad_record_type", f"expected a list of utterances, got {type(record).__name__}")
    utterances: list[tuple[str, str]] = []
    entities: dict[str, set[str]] = {}
    for index, raw in enumerate(record):
        item, utterance = speaker_utterance(raw, _MEDDG_SPEAKERS, "id", "Sentence", f"utterance {index}")
        utterances.append(utterance)
        for key in _MEDDG_ENTITY_KEYS:
            values = get_list(item, key, required=False)
            if values:
                entities.setdefault(key, set()).update(str(v) for v in values)
    meta: dict[str, Any] = {"entities": {k: sorted(v) for k, v in sorted(entities.items())}}
    return [Row(messages=finish_dialogue(merge_utterances(utterances), meta), meta=meta)]
