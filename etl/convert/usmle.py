"""medAlpaca's USMLE self-assessment exams (an eval set): `step{N}.json` holds the questions of step N as a
JSON array of `{question, options: {letter: text}}`, and `step{N}_solutions.json` the answer letters as an
object keyed by question number. The reader pairs the n-th question with the n-th solution of its step
(the key is kept as `number`); the converter renders the options under the question and answers with the
lettered option. Format known from consumer code and the Hub file list only (no sample was obtained)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from etl.convert.base import RecordContext, Reject, Row, Turn, converter
from etl.convert.fieldtools import get_str, require_mapping
from etl.read.base import RawRecord, ReadError, ReadItem, SourceFile, SourceFileError, cut, reader
from etl.read.containers import check_payload

_QUESTIONS = re.compile(r"(?:^|/)(step\d+)\.json$")


def _load(file: SourceFile) -> Any:
    data = file.path.read_bytes()
    check_payload(file.relpath, data[:4096])
    try:
        return json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SourceFileError(file.relpath, "bad_json", str(exc)) from None


@reader("usmle_self_assessment")
def read_usmle(files: list[SourceFile], options: dict[str, Any]) -> Iterator[ReadItem]:
    """Questions with their solution letter attached; the files are a few hundred KB, read whole."""
    by_name = {f.relpath: f for f in files}
    for file in files:
        match = _QUESTIONS.search(file.relpath)
        if not match:
            continue
        questions = _load(file)
        if not isinstance(questions, list):
            raise SourceFileError(file.relpath, "bad_layout", "expected a JSON array of questions")
        solutions_file = by_name.get(file.relpath[: -len(".json")] + "_solutions.json")
        solutions = _load(solutions_file) if solutions_file else {}
        if not isinstance(solutions, dict):
            raise SourceFileError(solutions_file.relpath if solutions_file else file.relpath, "bad_layout",
                                  "expected the solutions as an object keyed by question number")
        keyed = list(solutions.items())
        for index, question in enumerate(questions):
            if not isinstance(question, dict):
                yield ReadError(file.relpath, f"element {index}", "bad_record_type", "a question is not an object",
                                cut(json.dumps(question, ensure_ascii=False)))
                continue
            number, answer = keyed[index] if index < len(keyed) else (None, None)
            yield RawRecord(file.relpath, f"element {index}",
                            {**question, "step": match.group(1), "number": number, "answer": answer})


@converter("usmle_self_assessment", tasks=("sft",), reader="usmle_self_assessment")
def usmle_self_assessment(record: Any, ctx: RecordContext) -> list[Row]:
    """Question + lettered options → the correct lettered option."""
    record = require_mapping(record)
    question = get_str(record, "question").strip()
    options = record.get("options")
    if not isinstance(options, dict) or not options:
        raise Reject("missing_options", "no `options` object")
    answer = record.get("answer")
    if not isinstance(answer, str) or answer.strip() not in options:
        raise Reject("missing_answer", f"solution {answer!r} is not one of the options {sorted(options)}")
    letter = answer.strip()
    listing = "\n".join(f"{key}. {value}" for key, value in options.items())
    native = f"{record.get('step')}/{record.get('number')}" if record.get("number") is not None else None
    return [Row(messages=[Turn("user", f"{question}\n\n{listing}"), Turn("assistant", f"{letter}. {options[letter]}")],
                native_id=native, meta={"step": record.get("step"), "number": record.get("number"), "answer": letter})]
