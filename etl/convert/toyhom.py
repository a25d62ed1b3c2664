"""Toyhom Chinese-medical-dialogue-data: department CSVs (`department,title,ask,answer`, GBK) and the
derived `内科.txt` (`title,ask` line, answer line, two blank lines)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from etl.catalog import Source
from etl.convert.base import RecordContext, Reject, Row, Shaped, Turn, columnwise, converter
from etl.convert.fieldtools import get_str, meta_json, require_mapping, rest_as_meta
from etl.read.base import RawRecord, ReadError, ReadItem, SourceFile, cut, reader
from etl.read.containers import open_members
from etl.read.encoding import text_lines

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


@columnwise("toyhom")
def toyhom_columns(records: list[Any], source: Source) -> Shaped:
    """The column-wise twin of `toyhom` (0.8M rows upstream): every row whose four fields are strings
    and whose question and answer are not empty; the others take the per-record path."""
    keys = tuple(source.fields.get(name, name) for name in ("department", "title", "ask", "answer"))
    used = set(keys)
    shaped = Shaped(ok=[])
    for record in records:
        values = [record.get(key) for key in keys] if type(record) is dict else []
        if not values or not all(type(value) is str for value in values):
            shaped.skip()
            continue
        department, title, ask, answer = values
        question, answer = question_text(title, ask), answer.strip()
        if not question or not answer:
            shaped.skip()
            continue
        meta = {"department": department.strip()}
        if not record.keys() <= used:
            meta.update((k, v) for k, v in record.items() if k not in used)
        shaped.add_pair(question, answer, None, meta_json(meta))
    return shaped


@reader("toyhom_txt")
def read_toyhom_txt(files: list[SourceFile], options: dict[str, Any]) -> Iterator[ReadItem]:
    """`内科.txt` blocks: `title,ask` on the first line, the answer on the next, blocks separated by
    blank lines. Records are `{"title", "ask", "answer"}`; location: the block's first line."""
    for file in files:
        for label, stream in open_members(file, options):
            block: list[tuple[int, str]] = []
            for item in [*text_lines(label, stream, options), (0, "")]:
                if isinstance(item, ReadError):
                    yield item
                    continue
                number, line = item
                if line.strip():
                    block.append((number, line))
                    continue
                if block:
                    yield _toyhom_block(label, block)
                    block = []


def _toyhom_block(label: str, block: list[tuple[int, str]]) -> ReadItem:
    where = f"line {block[0][0]}"
    title, comma, ask = block[0][1].partition(",")
    if len(block) < 2 or not comma:
        return ReadError(label, where, "bad_block", "expected a `title,ask` line followed by the answer",
                         cut("\n".join(line for _, line in block)))
    return RawRecord(label, where, {"title": title, "ask": ask, "answer": "\n".join(line for _, line in block[1:])})


@converter("toyhom_txt", tasks=("sft",), reader="toyhom_txt")
def toyhom_txt(record: Any, ctx: RecordContext) -> list[Row]:
    """A `内科.txt` block → one question/answer pair (no department: the file drops it)."""
    record = require_mapping(record)
    return [_row(get_str(record, "title"), get_str(record, "ask"), get_str(record, "answer"), {})]
