"""Toyhom Chinese-medical-dialogue-data: department CSVs (`department,title,ask,answer`, GBK) and the
derived `内科.txt` (`title,ask` line, answer line, two blank lines)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from etl.convert.base import RecordContext, Reject, Row, Turn, converter
from etl.convert.fieldtools import get_str, require_mapping, rest_as_meta
from etl.read.base import RawRecord, ReadError, ReadItem, SourceFile, cut, reader

# `ask` placeholders meaning "no further detail": the title is then the whole question.
_EMPTY_ASK = {"", "无", "无。"}


def question_text(title: str, ask: str) -> str:
    """The patient's turn from the title and the detailed question, without repeating the title."""
    title, ask = title.strip(), ask.strip()
    if ask in _EMPTY_ASK or ask == title:
        return title
    if not title or ask.startswith(title):
        return ask
    return f"{title}\n{ask}"


def _row(title: str, ask: str, answer: str, meta: dict[str, Any]) -> Row:
    question = question_text(title, ask)
    if not question:
        raise Reject("empty_question", "title and ask are both empty")
    if not answer.strip():
        raise Reject("empty_answer", "answer is empty")
    return Row(messages=[Turn("user", question), Turn("assistant", answer.strip())], meta=meta)


@converter("toyhom", tasks=("sft",), reader="csv")
def toyhom(record: Any, ctx: RecordContext) -> list[Row]:
    """A CSV row: `title` + `ask` → user, `answer` → assistant, `department` (fine-grained) → meta."""
    record = require_mapping(record)
    keys = {name: ctx.field(name) for name in ("department", "title", "ask", "answer")}
    values = {name: get_str(record, key) for name, key in keys.items()}
    meta = {"department": values["department"].strip(), **rest_as_meta(record, keys.values())}
    return [_row(values["title"], values["ask"], values["answer"], meta)]


@reader("toyhom_txt")
def read_toyhom_txt(files: list[SourceFile], options: dict[str, Any]) -> Iterator[ReadItem]:
    """`内科.txt` blocks: `title,ask` on the first line, the answer on the next, blocks separated by
    blank lines. Records are `{"title", "ask", "answer"}`; location `block N`."""
    encoding = options.get("encoding", "gb18030")
    for file in files:
        try:
            text = file.path.read_bytes().decode(encoding)
        except UnicodeDecodeError as exc:
            yield ReadError(file.relpath, "file", "bad_encoding", str(exc), "")
            continue
        blocks = [b for b in text.replace("\r\n", "\n").split("\n\n") if b.strip()]
        for number, block in enumerate(blocks, 1):
            lines = block.strip("\n").split("\n")
            head, comma, ask = lines[0].partition(",")
            if len(lines) < 2 or not comma:
                yield ReadError(file.relpath, f"block {number}", "bad_block",
                                "expected a `title,ask` line followed by the answer", cut(block))
                continue
            yield RawRecord(file.relpath, f"block {number}",
                            {"title": head, "ask": ask, "answer": "\n".join(lines[1:])})


@converter("toyhom_txt", tasks=("sft",), reader="toyhom_txt")
def toyhom_txt(record: Any, ctx: RecordContext) -> list[Row]:
    """A `内科.txt` block → one question/answer pair (no department: the file drops it)."""
    record = require_mapping(record)
    return [_row(get_str(record, "title"), get_str(record, "ask"), get_str(record, "answer"), {})]
