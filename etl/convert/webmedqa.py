"""webMedQA: zips holding `medQA_{train,valid,test}.txt`, one tab-separated record per line.

The column order is not documented in the repository (its `medQA.PNG` shows ID, Label, Category,
Question, Answer; third parties describe other orders), so it is `options.columns` and every row's
label is checked: a value other than 0/1 means the configured order is wrong and the row is rejected.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from etl.convert.base import Filtered, RecordContext, Reject, Row, Turn, converter
from etl.convert.fieldtools import get_str, require_mapping, rest_as_meta
from etl.read.base import RawRecord, ReadError, ReadItem, SourceFile, cut, reader
from etl.read.text import content_lines

DEFAULT_COLUMNS = ("id", "label", "category", "question", "answer")


@reader("webmedqa")
def read_webmedqa(files: list[SourceFile], options: dict[str, Any]) -> Iterator[ReadItem]:
    """Every member of every zip (encoding detected per member); a line becomes a dict keyed by
    `options.columns`. A Git LFS pointer instead of the zip fails the source with `lfs_pointer`."""
    columns = tuple(options.get("columns", DEFAULT_COLUMNS))
    for item in content_lines(files, options):
        if isinstance(item, ReadError):
            yield item
            continue
        label, number, line = item
        parts = line.split("\t")
        if len(parts) != len(columns):
            yield ReadError(label, f"line {number}", "bad_column_count",
                            f"expected {len(columns)} tab-separated columns, found {len(parts)}", cut(line))
            continue
        yield RawRecord(label, f"line {number}", dict(zip(columns, parts, strict=True)))


@converter("webmedqa", tasks=("sft",), reader="webmedqa")
def webmedqa(record: Any, ctx: RecordContext) -> list[Row]:
    """Label 1 rows → question/answer pairs; label 0 rows are sampled negatives (filtered)."""
    record = require_mapping(record)
    label = get_str(record, "label").strip()
    if label not in ("0", "1"):
        raise Reject("bad_label", f"label {label!r} is not 0/1: check options.columns against the file")
    if label == "0":
        raise Filtered("negative_candidate")
    question, answer = get_str(record, "question").strip(), get_str(record, "answer").strip()
    if not question or not answer:
        raise Reject("empty_question" if not question else "empty_answer", "empty text")
    meta = rest_as_meta(record, ("label", "question", "answer"))
    return [Row(messages=[Turn("user", question), Turn("assistant", answer)], meta=meta)]
