"""Word documents converted from PDFs (X-jun's guidelines and textbooks) → pretraining text.

The `docx` reader yields one string per document, paragraphs joined by newlines. PDF→Word conversion leaves
page furniture and line-break artefacts that are not part of the text, removed here:
* page numbers on their own line (`472`, `•575 -`, `- 12 -`);
* journal running headers (`中华风湿病学杂志 2015 年 8 月第 19 卷第 8 期 Chin J Rheumatol, August 2015, Vol. 19, No. 8`)
  and column labels (`•学术动态.`, `·论著·`);
* short lines that repeat as running headers (kept once, where they first appear);
* spaces left where a PDF line broke between two CJK characters (`单相 抑郁障碍` → `单相抑郁障碍`).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import PurePosixPath
from typing import Any

from etl.convert.base import RecordContext, Reject, Row, converter

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef"
# Any run of horizontal white space (incl. en space U+2002 and ideographic space U+3000) between CJK characters.
_CJK_GAP = re.compile(rf"(?<=[{_CJK}])[ \t\u00a0\u2002\u2003\u3000]+(?=[{_CJK}])")
_PAGE_NUMBER = re.compile(r"^[\s•·\-–—]*\d{1,4}[\s•·\-–—]*$")
_JOURNAL_HEADER = re.compile(r"(杂志|学报).{0,40}\d{4}\s*年.{0,20}[卷期]|\bVol\.\s*\d+\s*,\s*No\.\s*\d+")
_COLUMN_LABEL = re.compile(r"^[•·]\s*\S{1,8}?\s*[•·.．]?$")
_SPACES = re.compile(r"[ \t\u00a0\u2002\u2003]+")
REPEAT_MAX_CHARS = 40   # running headers are short
REPEAT_MIN_COUNT = 3    # and recur on many pages


def _is_furniture(line: str) -> bool:
    return bool(_PAGE_NUMBER.match(line) or _COLUMN_LABEL.match(line)
                or (len(line) <= 200 and _JOURNAL_HEADER.search(line)))


def clean_document(text: str) -> str:
    """Page furniture removed, CJK line-break gaps closed, blank lines dropped."""
    lines = [_SPACES.sub(" ", _CJK_GAP.sub("", line)).strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not _is_furniture(line)]
    counts = Counter(line for line in lines if len(line) <= REPEAT_MAX_CHARS)
    kept: list[str] = []
    seen: set[str] = set()
    for line in lines:
        if counts[line] >= REPEAT_MIN_COUNT:
            if line in seen:
                continue
            seen.add(line)
        kept.append(line)
    return "\n".join(kept)


@converter("docx_text", tasks=("pretrain",), reader="docx")
def docx_text(record: Any, ctx: RecordContext) -> list[Row]:
    """One Word document → one cleaned pretraining text; the file name (the document's title) goes to meta."""
    if not isinstance(record, str):
        raise Reject("bad_record_type", f"expected the document's text, got {type(record).__name__}")
    text = clean_document(record)
    if not text:
        raise Reject("empty_document", "no text left after removing page furniture")
    title = PurePosixPath(ctx.file.split("!")[-1]).stem
    return [Row(text=text, native_id=ctx.file, meta={"title": title})]
