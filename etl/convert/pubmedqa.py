"""PubMedQA (`ori_pqal.json`, `ori_pqaa.json`): one JSON object keyed by PMID, read with the `json` reader's
`json_object: items` option, so each record is `{"__key__": pmid, "__value__": {QUESTION, CONTEXTS, …}}`.

The user turn is the abstract's labelled sections followed by the question; the assistant turn is the
abstract's conclusion (`LONG_ANSWER`) followed by the yes/no/maybe decision, which is the benchmark's label.
"""

from __future__ import annotations

from typing import Any

from etl.convert.base import RecordContext, Reject, Row, Turn, converter
from etl.convert.fieldtools import get_list, get_str, require_mapping

DECISIONS = ("yes", "no", "maybe")


def _context(item: dict[str, Any]) -> str:
    """`CONTEXTS` with their parallel section `LABELS` (BACKGROUND, METHODS, …) as headings."""
    contexts = get_list(item, "CONTEXTS")
    labels = get_list(item, "LABELS", required=False)
    if not contexts or not all(isinstance(c, str) and c.strip() for c in contexts):
        raise Reject("empty_context", "CONTEXTS is empty or holds an empty passage")
    if labels and len(labels) != len(contexts):
        raise Reject("bad_labels", f"{len(labels)} LABELS for {len(contexts)} CONTEXTS")
    if not labels:
        return "\n\n".join(c.strip() for c in contexts)
    return "\n\n".join(f"{str(label).strip()}: {c.strip()}" for label, c in zip(labels, contexts, strict=True))


@converter("pubmedqa", tasks=("sft",), reader="json")
def pubmedqa(record: Any, ctx: RecordContext) -> list[Row]:
    """PMID-keyed PubMedQA items → context + question → conclusion + decision."""
    record = require_mapping(record)
    if "__key__" not in record or "__value__" not in record:
        raise Reject("bad_record_type", "expected PMID-keyed items (set the reader option `json_object: items`)")
    pmid = str(record["__key__"])
    item = require_mapping(record["__value__"])
    question = get_str(item, "QUESTION").strip()
    long_answer = get_str(item, "LONG_ANSWER").strip()
    decision = get_str(item, "final_decision").strip().lower()
    if decision not in DECISIONS:
        raise Reject("bad_label", f"final_decision {item.get('final_decision')!r} is not yes/no/maybe")
    if not question or not long_answer:
        raise Reject("empty_field", "QUESTION or LONG_ANSWER is empty")
    user = f"{_context(item)}\n\nQuestion: {question}"
    answer = f"{long_answer}\n\nAnswer: {decision}"
    meta: dict[str, Any] = {"pmid": pmid, "final_decision": decision, "year": item.get("YEAR"),
                            "meshes": item.get("MESHES") or []}
    for key in ("reasoning_required_pred", "reasoning_free_pred"):
        if key in item:
            meta[key] = item[key]
    return [Row(messages=[Turn("user", user), Turn("assistant", answer)], native_id=pmid, meta=meta)]
