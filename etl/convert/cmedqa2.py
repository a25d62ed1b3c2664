"""cMedQA2: `question.zip` (`question_id,content`), `answer.zip` (`ans_id,question_id,content`) and
candidate zips (`question_id,ans_id,cnt,label`), each a zip with one CSV member.

Every answer belongs to one question, so the training pairs are the answers joined to their question.
The dev/test candidate files only say which questions are held out: their positive (`label` 1)
answers are eval rows; the negatives are random answers to other questions and are never read as
pairs. `train_candidates.zip` adds nothing to the join and need not be fetched.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from etl.convert.base import RecordContext, Reject, Row, Turn, converter
from etl.convert.fieldtools import get_str, require_mapping
from etl.read.base import RawRecord, ReadError, ReadItem, SourceFile, SourceFileError, reader
from etl.read.containers import open_members
from etl.read.encoding import decoded_stream
from etl.read.tabular import field_limit, next_row

# candidate file name prefix → split of its questions
_CANDIDATE_SPLITS = {"dev": "validation", "test": "test", "train": "train"}


def _csv_rows(file: SourceFile, options: dict[str, Any],
              columns: tuple[str, ...]) -> Iterator[tuple[str, int, dict[str, Any] | ReadError]]:
    """`(member label, row number, row)` for the CSV inside one of the zips, whose header must name
    `columns` (a short row has None for the columns it lacks). A row the csv module cannot parse (a field
    longer than `options["max_field_bytes"]`) comes as a `bad_csv_row` ReadError in place of the row."""
    limit = field_limit(options)
    for label, stream in open_members(file, options):
        encoding, stream = decoded_stream(label, stream, options)
        try:
            rows = csv.reader(io.TextIOWrapper(stream, encoding=encoding, newline=""))
            header = next_row(rows, limit)
            if not isinstance(header, list):
                raise SourceFileError(label, "bad_header", str(header) if header is not None else "no header row")
            missing = [name for name in columns if name not in header]
            if missing:
                raise SourceFileError(label, "bad_header", f"no column(s) {missing} in the header")
            number = 0
            while (row := next_row(rows, limit)) is not None:
                if row == []:
                    continue  # a blank line, as csv.DictReader skips it
                number += 1
                if isinstance(row, csv.Error):
                    yield label, number, ReadError(label, f"row {number}", "bad_csv_row", str(row), "")
                    continue
                yield label, number, {**dict.fromkeys(header), **dict(zip(header, row, strict=False))}
        except UnicodeDecodeError as exc:
            raise SourceFileError(label, "bad_encoding", str(exc)) from exc


def _role_of(file: SourceFile) -> str:
    name = file.relpath.rsplit("/", 1)[-1]
    if name.startswith("question"):
        return "question"
    if name.startswith("answer"):
        return "answer"
    if "candidates" in name:
        return "candidates"
    raise SourceFileError(file.relpath, "unexpected_file", "not question.zip, answer.zip or *_candidates.zip")


@reader("cmedqa2")
def read_cmedqa2(files: list[SourceFile], options: dict[str, Any]) -> Iterator[ReadItem]:
    """Join answers to questions. Records: `{ans_id, question_id, question, answer, split}` where split
    is `validation`/`test` for questions with a positive in dev/test candidates, else `train`."""
    by_role: dict[str, list[SourceFile]] = {"question": [], "answer": [], "candidates": []}
    for file in files:
        by_role[_role_of(file)].append(file)
    if not by_role["question"] or not by_role["answer"]:
        raise SourceFileError(files[0].relpath if files else "-", "missing_file",
                              "cMedQA2 needs question.zip and answer.zip")
    held_out: dict[str, str] = {}
    for file in by_role["candidates"]:
        split = _CANDIDATE_SPLITS.get(file.relpath.rsplit("/", 1)[-1].split("_")[0], "train")
        for _, _, row in _csv_rows(file, options, ("question_id", "label")):
            if isinstance(row, ReadError):
                yield row
                continue
            if row["label"] == "1" and split != "train":
                held_out[row["question_id"]] = split
    questions: dict[str, str] = {}
    for file in by_role["question"]:
        for _, _, row in _csv_rows(file, options, ("question_id", "content")):
            if isinstance(row, ReadError):
                yield row
                continue
            questions[row["question_id"]] = row["content"]
    for file in by_role["answer"]:
        for where, number, row in _csv_rows(file, options, ("ans_id", "question_id", "content")):
            if isinstance(row, ReadError):
                yield row
                continue
            qid = row.get("question_id") or ""
            if qid not in questions:
                yield ReadError(where, f"row {number}", "unknown_question_id",
                                f"answer {row.get('ans_id')!r} points to question {qid!r}, not in question.csv",
                                ",".join(str(v) for v in row.values()))
                continue
            yield RawRecord(where, f"row {number}", {
                "ans_id": row.get("ans_id"), "question_id": qid, "question": questions[qid],
                "answer": row.get("content"), "split": held_out.get(qid, "train")})


@converter("cmedqa2", tasks=("sft",), reader="cmedqa2")
def cmedqa2(record: Any, ctx: RecordContext) -> list[Row]:
    """A joined question/answer pair; dev/test questions keep their split (catalogue: `eval_splits`)."""
    record = require_mapping(record)
    question_id, ans_id = get_str(record, "question_id"), get_str(record, "ans_id")
    question, answer = get_str(record, "question").strip(), get_str(record, "answer").strip()
    if not question:
        raise Reject("empty_question", f"question {question_id!r} has no text")
    if not answer:
        raise Reject("empty_answer", f"answer {ans_id!r} has no text")
    return [Row(messages=[Turn("user", question), Turn("assistant", answer)],
                native_id=f"{question_id}-{ans_id}", split=get_str(record, "split"),
                meta={"question_id": question_id, "ans_id": ans_id})]
