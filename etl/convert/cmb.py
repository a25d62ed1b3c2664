"""CMB, the Chinese Medical Benchmark: eval-only text for decontamination.

Items become `text` rows (question, options and, where given, the answer) rather than chat rows: the
test questions ship without answers, and decontamination only needs the benchmark's wording. The
separately published answer key (`CMB-test-choice-answer.json`) carries ids and letters but no
question text, so its records are counted as filtered (`answer_key_only`) and yield no rows.
"""

from __future__ import annotations

from typing import Any

from etl.convert.base import Filtered, RecordContext, Reject, Row, converter
from etl.convert.fieldtools import get_list, get_str, require_mapping, rest_as_meta


def _exam_text(record: dict[str, Any]) -> str:
    options = record.get("option") or {}
    if not isinstance(options, dict):
        raise Reject("bad_field_type", "`option` should map letters to texts")
    lines = [get_str(record, "question").strip()]
    lines += [f"{letter}. {str(text).strip()}" for letter, text in sorted(options.items())]
    answer = get_str(record, "answer", required=False).strip()
    if answer:
        lines.append(f"答案：{answer}")
    explanation = get_str(record, "explanation", required=False).strip()
    if explanation:
        lines.append(f"解析：{explanation}")
    return "\n".join(lines)


def _clin_text(record: dict[str, Any]) -> str:
    lines = [get_str(record, "title", required=False).strip(), get_str(record, "description").strip()]
    for index, pair in enumerate(get_list(record, "QA_pairs")):
        pair = require_mapping(pair)
        question, solution = get_str(pair, "question").strip(), get_str(pair, "solution").strip()
        if not question:
            raise Reject("empty_question", f"QA_pairs[{index}] has no question")
        lines += [question, solution]
    return "\n".join(line for line in lines if line)


@converter("cmb", tasks=("pretrain",), reader="json")
def cmb(record: Any, ctx: RecordContext) -> list[Row]:
    """Exam items `{question, option, answer?, …}` and CMB-Clin cases `{id, title, description,
    QA_pairs}` → text; answer-key items (no question) are filtered."""
    record = require_mapping(record)
    if "QA_pairs" in record:
        used: tuple[str, ...] = ("title", "description", "QA_pairs")
        text = _clin_text(record)
    elif "question" in record:
        used = ("question", "option", "answer", "explanation")
        text = _exam_text(record)
    elif "answer" in record:
        raise Filtered("answer_key_only")
    else:
        raise Reject("unknown_schema", "neither an exam item, a clinical case nor an answer key entry")
    native = get_str(record, "id", required=False) or None
    return [Row(text=text, native_id=native, meta=rest_as_meta(record, (*used, "id")))]
