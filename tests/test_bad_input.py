"""Issue 7, the bad-input matrix: every kind of broken upstream file goes through the real path (tmp mirror →
tmp catalogue → `medcorpus build`) and the outcome is read back from `out/manifest.json` and
`out/rejects/*.parquet`: a reject row with its reason code and location, or a source-level failure that names
the file while the other sources of the build finish. Also the catalogue errors (exit 2) and write errors
(exit 1, previous output intact). docs/RELIABILITY.md lists what the user sees for each case.
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from etl.build import OutputLock
from etl.validate import validate_output
from tests.helpers_badinput import _HEAD, BuildRun, _src, entry, jsonl, run_build, run_catalog

ROOT = Path(__file__).resolve().parent.parent
BAD = "bad_src"
QR = [{"query": f"问题{i}：头痛怎么办？", "response": f"回答{i}：多休息，多喝水。"} for i in range(3)]
ZH = [{"query": "头痛怎么办", "response": "多休息，多喝水。"}, {"query": "发烧了", "response": "量体温，及时就医。"}]


def one(tmp_path: Path, name: str, data: bytes, fmt: str = "query_response", task: str = "sft",
        workers: int | None = None, **extra: Any) -> BuildRun:
    """A build of the bad source `bad_src` (one file) beside the good source (`--workers` as given, else the
    default: the number of cores)."""
    args = () if workers is None else ("--workers", str(workers))
    return run_build(tmp_path, [entry(BAD, name, fmt, task=task, **extra)], {BAD: {name: data}}, extra_args=args)


def reasons(run: BuildRun, source_id: str = BAD) -> list[tuple[str, str, str]]:
    return [(r["file"], r["location"], r["reason"]) for r in run.rejects(source_id)]


def user_turns(run: BuildRun, source_id: str = BAD) -> list[str]:
    return [r["messages"][0]["content"] for r in run.rows("sft", source_id)]


def assert_counts(run: BuildRun, read: int, converted: int, rejected: dict[str, int], filtered: int = 0) -> None:
    c = run.counts(BAD)
    assert run.source(BAD)["status"] == "ok", run.source(BAD)
    assert (c["read"], c["converted"], c["rejected_by_reason"], c["filtered"]) == \
        (read, converted, rejected, filtered), c
    run.assert_balanced(BAD)
    run.assert_good_source_finished()


def assert_source_failed(run: BuildRun, error_start: str) -> None:
    """A file that cannot be read fails its source, named in the manifest and the summary; the others finish."""
    assert run.code == 1, run.stderr
    bad = run.source(BAD)
    assert bad["status"] == "failed", bad
    assert bad["error"].startswith(error_start), bad["error"]
    assert run.rows("sft", BAD) == [] and run.rejects(BAD) == []
    assert bad["counts"]["written"] == 0
    assert f"1 source(s) failed: {BAD}" in run.stderr
    assert f"{BAD}: {error_start}" in run.stderr
    run.assert_good_source_finished()
    # the first build into this folder: nothing to keep, so the result is the output, recorded as partial
    assert validate_output(run.out, allow_partial=True) == []
    assert validate_output(run.out) == [f"manifest.json: 1 source(s) failed in the build that wrote this output "
                                        f"({BAD}); rebuild, or pass --allow-partial to accept a partial corpus"]


# --------------------------------------------------------------------------- containers: the source fails


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _truncated_gzip() -> bytes:
    data = gzip.compress(jsonl(*QR) * 200, mtime=0)
    return data[: len(data) // 2]


def _truncated_zip() -> bytes:
    data = _zip({"d.jsonl": jsonl(*QR) * 200})
    return data[: len(data) // 2]


def _zip_bomb() -> bytes:
    """48 MiB of zeros in a ~50 KB zip: a ratio of ~1000, far above the limit of 200."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive, archive.open("big.jsonl", "w") as member:
        block = b"\0" * (1 << 20)
        for _ in range(48):
            member.write(block)
    return buffer.getvalue()


def _gzip_bomb() -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    block = b" " * (1 << 20)
    return b"".join(packer.compress(block) for _ in range(64)) + packer.flush()


LFS_POINTER = (b"version https://git-lfs.github.com/spec/v1\n"
               b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n")
HTML_PAGE = (b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n"
             b"<body><h1>Not Found</h1></body></html>\n")

SOURCE_FAILURES = [
    ("truncated_gzip", "d.jsonl.gz", _truncated_gzip, "d.jsonl.gz: truncated_archive: compressed data ends early"),
    ("truncated_zip", "d.zip", _truncated_zip, "d.zip: truncated_archive: not a complete zip"),
    ("empty_file", "d.jsonl", lambda: b"", "d.jsonl: empty_file: the file is empty"),
    ("lfs_pointer", "d.jsonl", lambda: LFS_POINTER, "d.jsonl: lfs_pointer: a Git LFS pointer, not the data"),
    ("html_page", "d.json", lambda: HTML_PAGE, "d.json: html_instead_of_data: an HTML page where data was expected"),
    ("html_page_gzipped", "d.json.gz", lambda: gzip.compress(HTML_PAGE, mtime=0),
     "d.json.gz: html_instead_of_data"),
    ("zip_member_dotdot", "d.zip", lambda: _zip({"ok.jsonl": jsonl(*QR), "../evil.jsonl": jsonl(*QR)}),
     "d.zip!../evil.jsonl: unsafe_member: absolute path or `..` in a member name"),
    ("zip_member_absolute", "d.zip", lambda: _zip({"ok.jsonl": jsonl(*QR), "/etc/evil.jsonl": jsonl(*QR)}),
     "d.zip!/etc/evil.jsonl: unsafe_member"),
    ("zip_bomb", "d.zip", _zip_bomb, "d.zip: zip_bomb: big.jsonl: compression ratio above 200"),
    ("gzip_bomb", "d.jsonl.gz", _gzip_bomb, "d.jsonl.gz: zip_bomb: expands past"),
]


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize(("case", "name", "make", "error_start"), SOURCE_FAILURES, ids=[c[0] for c in SOURCE_FAILURES])
def test_unreadable_file_fails_its_source_and_the_others_finish(tmp_path, case, name, make, error_start, workers):
    """With --workers 2 the error crosses a process boundary: it stays this source's failure, word for word."""
    data = make()
    if case in ("zip_bomb", "gzip_bomb"):
        assert len(data) < 512 * 1024  # small on disk, huge expanded
    run = one(tmp_path, name, data, workers=workers)
    assert_source_failed(run, error_start)
    if case == "zip_member_dotdot":  # nothing is ever extracted, least of all outside the source folder
        assert not (tmp_path / "mirror" / "evil.jsonl").exists() and not (tmp_path / "evil.jsonl").exists()


def test_keep_going_writes_the_partial_result_and_still_exits_1(tmp_path):
    run = run_build(tmp_path, [entry(BAD, "d.jsonl", "query_response")], {BAD: {"d.jsonl": LFS_POINTER}},
                    extra_args=("--keep-going",))
    assert run.code == 1
    assert run.source(BAD)["status"] == "failed" and run.manifest["totals"]["sources_failed"] == 1
    assert f"1 source(s) failed: {BAD}" in run.stderr
    assert "now holds the partial result" in run.stderr


def test_whitespace_only_file_reads_zero_records(tmp_path):
    """Not refused like an empty file (it has bytes), but nothing is invented either: 0 read, 0 written."""
    run = one(tmp_path, "d.jsonl", b"\n\n   \n\t\n")
    assert_counts(run, read=0, converted=0, rejected={})
    assert run.counts(BAD)["written"] == 0


# --------------------------------------------------------------------------- the JSON family


def test_json_array_cut_mid_record(tmp_path):
    text = json.dumps(QR, ensure_ascii=False, indent=1)
    run = one(tmp_path, "d.json", text[: len(text) - 12].encode())  # cut inside the last record's answer
    assert_counts(run, read=3, converted=2, rejected={"truncated_json": 1})
    assert reasons(run) == [("d.json", "element 2", "truncated_json")]
    assert "premature EOF" in run.rejects(BAD)[0]["message"]
    assert user_turns(run) == [QR[0]["query"], QR[1]["query"]]


def test_json_array_cut_mid_record_keeps_the_cut_text(tmp_path):
    text = json.dumps(QR, ensure_ascii=False, indent=1)
    run = one(tmp_path, "d.json", text[: len(text) - 12].encode())
    assert QR[2]["query"] in run.rejects(BAD)[0]["raw"]


def test_invalid_json_lines_among_valid_ones(tmp_path):
    data = (b'{"query": "q0", "response": "a0"}\n'
            b'{"query": "q1", \n'
            b'{"query": "q2", "response": "a2"}\n'
            b'not json at all\n'
            b'{"query": "q4", "response": "a4"}}\n'
            b'{"query": "q5", "response": "a5"}\n')
    run = one(tmp_path, "d.jsonl", data)
    assert_counts(run, read=6, converted=3, rejected={"bad_json": 3})
    assert reasons(run) == [("d.jsonl", "line 2", "bad_json"), ("d.jsonl", "line 4", "bad_json"),
                            ("d.jsonl", "line 5", "bad_json")]
    assert [r["raw"] for r in run.rejects(BAD)] == ['{"query": "q1", ', "not json at all",
                                                    '{"query": "q4", "response": "a4"}}']
    assert user_turns(run) == ["q0", "q2", "q5"]


def test_json_file_that_is_json_lines(tmp_path):
    run = one(tmp_path, "d.json", jsonl(*QR))
    assert_counts(run, read=3, converted=3, rejected={})
    assert user_turns(run) == [r["query"] for r in QR]


def test_jsonl_file_that_is_an_array(tmp_path):
    run = one(tmp_path, "d.jsonl", json.dumps(QR, ensure_ascii=False, indent=2).encode())
    assert_counts(run, read=3, converted=3, rejected={})
    assert user_turns(run) == [r["query"] for r in QR]


def _zh_array(bad: bytes, index: int = 4, n: int = 10) -> bytes:
    """A mostly-UTF-8 JSON array of `n` records with element `index` replaced by `bad`."""
    records = [json.dumps({"query": f"头痛怎么办{i}", "response": f"多休息，多喝水。{i}"}, ensure_ascii=False).encode()
               for i in range(n)]
    records[index] = bad
    return b"[\n" + b",\n".join(records) + b"\n]\n"


ARRAY_BAD_ELEMENT = [
    ("invalid_utf8", b'{"query": "q\xff\xfe", "response": "a"}', "bad_encoding"),
    ("raw_nul_byte", b'{"query": "q\x00", "response": "a"}', "bad_json"),
    ("raw_control_char", b'{"query": "q", "response": "a\x01"}', "bad_json"),
]


@pytest.mark.parametrize(("case", "bad", "reason"), ARRAY_BAD_ELEMENT, ids=[c[0] for c in ARRAY_BAD_ELEMENT])
def test_bad_element_in_a_json_array_costs_only_that_element(tmp_path, case, bad, reason):
    run = one(tmp_path, "d.json", _zh_array(bad))
    assert_counts(run, read=10, converted=9, rejected={reason: 1})
    assert reasons(run) == [("d.json", "element 4", reason)]
    assert not run.rejects(BAD)[0]["message"].startswith("b'")


def test_bad_element_in_a_json_array_is_rejected_where_it_is(tmp_path):
    """The elements before and after the bad one are kept, the bad one is a reject at its location, and
    the build goes on."""
    run = one(tmp_path, "d.json", _zh_array(b'{"query": "q\xff\xfe", "response": "a"}'))
    c = run.counts(BAD)
    assert (c["converted"], c["rejected_by_reason"]) == (9, {"bad_encoding": 1})
    assert reasons(run) == [("d.json", "element 4", "bad_encoding")]
    run.assert_balanced(BAD)


# --------------------------------------------------------------------------- encodings


def test_declared_encoding_that_is_wrong(tmp_path):
    """Declared UTF-8, written GB18030: every line is a bad_encoding reject, none is mis-decoded into rows."""
    data = jsonl(*ZH).decode().encode("gb18030")
    run = one(tmp_path, "d.jsonl", data, options={"encoding": "utf-8"})
    assert_counts(run, read=2, converted=0, rejected={"bad_encoding": 2})
    assert reasons(run) == [("d.jsonl", "line 1", "bad_encoding"), ("d.jsonl", "line 2", "bad_encoding")]
    assert all(r["message"].startswith("not valid utf-8:") for r in run.rejects(BAD))


def test_declared_gbk_on_a_utf8_file(tmp_path):
    run = one(tmp_path, "d.jsonl", jsonl(*ZH), options={"encoding": "gbk"})
    assert_counts(run, read=2, converted=0, rejected={"bad_encoding": 2})
    assert all(r["message"].startswith("not valid gb18030:") for r in run.rejects(BAD))  # GBK is read as GB18030


def test_declared_encoding_that_does_not_exist(tmp_path):
    run = one(tmp_path, "d.jsonl", jsonl(*ZH), options={"encoding": "klingon-8"})
    assert_source_failed(run, "d.jsonl: unknown_encoding: unknown encoding: klingon-8")


def test_mixed_encodings_in_one_file(tmp_path):
    data = jsonl(ZH[0]) + jsonl(ZH[1]).decode().encode("gb18030") + jsonl({"query": "咳嗽", "response": "多喝温水"})
    run = one(tmp_path, "d.jsonl", data)
    assert_counts(run, read=3, converted=2, rejected={"bad_encoding": 1})
    assert reasons(run) == [("d.jsonl", "line 2", "bad_encoding")]
    assert user_turns(run) == ["头痛怎么办", "咳嗽"]


BOMS = [
    ("utf8_jsonl", "d.jsonl", codecs.BOM_UTF8 + jsonl(*ZH), {}),
    ("utf8_array", "d.json", codecs.BOM_UTF8 + json.dumps(ZH, ensure_ascii=False).encode(), {}),
    ("utf8_csv", "d.csv", codecs.BOM_UTF8 + "query,response\n头痛怎么办,多休息，多喝水。\n发烧了,量体温，及时就医。\n".encode(),
     {"reader": "csv"}),
    ("utf16_jsonl", "d.jsonl", jsonl(*ZH).decode().encode("utf-16"), {}),
]


@pytest.mark.parametrize(("case", "name", "data", "extra"), BOMS, ids=[c[0] for c in BOMS])
def test_byte_order_mark_is_dropped(tmp_path, case, name, data, extra):
    run = one(tmp_path, name, data, **extra)
    assert_counts(run, read=2, converted=2, rejected={})
    rows = run.rows("sft", BAD)
    assert [r["messages"] for r in rows] == [[{"role": "user", "content": z["query"]},
                                              {"role": "assistant", "content": z["response"]}] for z in ZH]


def test_nul_bytes(tmp_path):
    data = (b'{"query": "q0", "response": "a0"}\n'
            b'{"query": "q\x001", "response": "a1"}\n'       # a raw NUL inside a string: not JSON
            b'\x00\x00\x00\x00\n'                            # a line of NULs (a preallocated, never written file)
            b'{"query": "q3", "response": "a\\u00003"}\n')   # an escaped NUL: valid JSON, cleaned from the text
    run = one(tmp_path, "d.jsonl", data)
    assert_counts(run, read=4, converted=2, rejected={"bad_json": 2})
    assert reasons(run) == [("d.jsonl", "line 2", "bad_json"), ("d.jsonl", "line 3", "bad_json")]
    assert run.rejects(BAD)[0]["message"].startswith("Invalid control character")
    assert [r["messages"][1]["content"] for r in run.rows("sft", BAD)] == ["a0", "a3"]


def test_lone_surrogate_escape_in_json_lines(tmp_path):
    data = (b'{"query": "q0", "response": "a0"}\n'
            b'{"query": "q\\ud800", "response": "a1"}\n'
            b'{"query": "q2", "response": "a2 \\ud83d\\ude00"}\n')  # a proper pair is fine
    run = one(tmp_path, "d.jsonl", data)
    assert_counts(run, read=3, converted=2, rejected={"bad_encoding": 1})
    assert reasons(run) == [("d.jsonl", "line 2", "bad_encoding")]
    assert run.rejects(BAD)[0]["message"] == "lone UTF-16 surrogate escape"
    assert [r["messages"][1]["content"] for r in run.rows("sft", BAD)] == ["a0", "a2 😀"]


def test_lone_surrogate_escape_in_a_json_array(tmp_path):
    run = one(tmp_path, "d.json", _zh_array(b'{"query": "q\\ud800", "response": "a1"}'))
    assert_counts(run, read=10, converted=9, rejected={"bad_encoding": 1})
    assert "q?" not in user_turns(run)


def test_invalid_utf8_sequences_in_json_lines(tmp_path):
    good = '{"query": "头痛怎么办", "response": "多休息，多喝水。"}\n'.encode() * 20
    data = (good
            + b'{"query": "q\xff\xfe", "response": "a"}\n'         # bytes that are never UTF-8
            + b'{"query": "q\xed\xa0\x80", "response": "a"}\n'     # an encoded surrogate (CESU-8)
            + b'{"query": "q\xe5\xa4", "response": "a"}\n'         # a character cut short
            + b'{"query": "last", "response": "a"}\n')
    run = one(tmp_path, "d.jsonl", data)
    assert_counts(run, read=24, converted=21, rejected={"bad_encoding": 3})
    assert reasons(run) == [("d.jsonl", f"line {n}", "bad_encoding") for n in (21, 22, 23)]
    assert run.rejects(BAD)[0]["message"] == "not valid utf-8: invalid start byte at byte 12"
    assert "\ufffd" in run.rejects(BAD)[0]["raw"]  # raw shows where, with replacement characters
    assert user_turns(run)[-1] == "last"


def test_invalid_utf8_in_a_csv_row(tmp_path):
    data = ("query,response\n" + "头痛怎么办,多休息\n" * 20).encode() + b"q\xff,a\n" + "发烧,量体温\n".encode()
    run = one(tmp_path, "d.csv", data, reader="csv")
    assert_counts(run, read=22, converted=21, rejected={"bad_encoding": 1})
    assert reasons(run) == [("d.csv", "row 21", "bad_encoding")]


def test_a_line_larger_than_64_mb(tmp_path):
    """Written in 1 MiB blocks; the reader holds at most its 64 MiB bound of the line, never the whole line."""
    path = tmp_path / "mirror" / BAD / "d.jsonl"
    path.parent.mkdir(parents=True)
    block = b"x" * (1 << 20)
    with open(path, "wb") as handle:
        handle.write(jsonl(QR[0]))
        handle.write(b'{"query": "q", "response": "')
        for _ in range(65):
            handle.write(block)
        handle.write(b'"}\n')
        handle.write(jsonl(QR[1]))
    assert path.stat().st_size > 65 * (1 << 20)
    run = run_build(tmp_path, [entry(BAD, "d.jsonl", "query_response")], {})
    assert_counts(run, read=3, converted=2, rejected={"line_too_long": 1})
    rejects = run.rejects(BAD)
    assert reasons(run) == [("d.jsonl", "line 2", "line_too_long")]
    assert len(rejects[0]["raw"]) == 4096 and rejects[0]["raw"].startswith('{"query": "q", "response": "xxx')
    assert user_turns(run) == [QR[0]["query"], QR[1]["query"]]


# --------------------------------------------------------------------------- CSV


def test_csv_rows_with_too_many_or_too_few_fields(tmp_path):
    data = "query,response\n头痛,多休息\n发烧,量体温,多喝水\n咳嗽\n腹泻,补液\n".encode()
    run = one(tmp_path, "d.csv", data, reader="csv")
    assert_counts(run, read=4, converted=2, rejected={"bad_csv_row": 2})
    assert reasons(run) == [("d.csv", "row 2", "bad_csv_row"), ("d.csv", "row 3", "bad_csv_row")]
    assert [(r["message"], r["raw"]) for r in run.rejects(BAD)] == [
        ("3 fields, the header has 2", "发烧,量体温,多喝水\n"), ("1 fields, the header has 2", "咳嗽\n")]
    assert user_turns(run) == ["头痛", "腹泻"]


def test_csv_with_a_duplicate_header_fails_the_source(tmp_path):
    """Two columns of one name would silently lose one of them: the file is refused."""
    run = one(tmp_path, "d.csv", b"query,query,response\na,b,c\n", reader="csv")
    assert_source_failed(run, "d.csv: bad_header: duplicate column names: ['query']")


# --------------------------------------------------------------------------- fields and contents

FIELD_CASES = [
    ({"query": "q1"}, "missing_field", "no field 'response'"),
    ({"response": "a"}, "missing_field", "no field 'query'"),
    ({"query": None, "response": "a"}, "missing_field", "no field 'query'"),
    ({"query": ["x"], "response": "a"}, "bad_field_type", "field 'query' should be a string, got list"),
    ({"query": "q", "response": {"t": 1}}, "bad_field_type", "field 'response' should be a string, got dict"),
    ({"query": True, "response": "a"}, "bad_field_type", "field 'query' should be a string, got bool"),
    ([1, 2], "bad_record_type", "expected a JSON object, got list"),
    ("just a string", "bad_record_type", "expected a JSON object, got str"),
    (42, "bad_record_type", "expected a JSON object, got int"),
    (None, "bad_record_type", "expected a JSON object, got NoneType"),
]


def test_missing_and_wrongly_typed_fields(tmp_path):
    records = [{"query": "q0", "response": "a0"}, *(case[0] for case in FIELD_CASES), {"query": 5, "response": 6.5}]
    run = one(tmp_path, "d.jsonl", jsonl(*records))
    n = len(FIELD_CASES)
    expected: dict[str, int] = {}
    for _, reason, _ in FIELD_CASES:
        expected[reason] = expected.get(reason, 0) + 1
    assert_counts(run, read=n + 2, converted=2, rejected=expected)
    got = [(r["location"], r["reason"], r["message"]) for r in run.rejects(BAD)]
    assert got == [(f"line {i + 2}", reason, message) for i, (_, reason, message) in enumerate(FIELD_CASES)]
    assert run.rows("sft", BAD)[1]["messages"] == [{"role": "user", "content": "5"},
                                                   {"role": "assistant", "content": "6.5"}]  # numbers as text


EMPTY_CASES = [
    ({"instruction": "", "input": "", "output": "o"}, "empty_instruction"),
    ({"instruction": "   ", "input": "\n", "output": "o"}, "empty_instruction"),
    ({"instruction": "i", "output": ""}, "empty_output"),
    ({"instruction": "i", "output": "   \n\t "}, "empty_output"),
    ({"instruction": "i", "output": "\u3000\u3000"}, "empty_output"),   # ideographic spaces
    ({"instruction": "i", "output": "o", "system": "s", "history": [["", "a"]]}, "empty_input"),
]


def test_empty_strings_and_whitespace_only_answers(tmp_path):
    records = [{"instruction": "i0", "input": "", "output": "o0"}, *(case[0] for case in EMPTY_CASES)]
    run = one(tmp_path, "d.jsonl", jsonl(*records), fmt="alpaca")
    expected: dict[str, int] = {}
    for _, reason in EMPTY_CASES:
        expected[reason] = expected.get(reason, 0) + 1
    assert_counts(run, read=len(records), converted=1, rejected=expected)
    assert [(r["location"], r["reason"]) for r in run.rejects(BAD)] == \
        [(f"line {i + 2}", reason) for i, (_, reason) in enumerate(EMPTY_CASES)]


def test_empty_pretraining_lines_are_filtered_not_lost(tmp_path):
    """`keep_blank` reader lines reach the `text` converter, which counts them as filtered (blank_line)."""
    run = one(tmp_path, "d.txt", "第一段医学文本。\n\n   \n第二段。\n".encode(), fmt="text", task="pretrain",
              reader="text", options={"keep_blank": True})
    assert_counts(run, read=4, converted=2, rejected={}, filtered=2)
    assert run.counts(BAD)["filtered_by_reason"] == {"blank_line": 2}
    assert [r["text"] for r in run.rows("pretrain", BAD)] == ["第一段医学文本。", "第二段。"]


def test_extremely_long_answer_is_kept_whole(tmp_path):
    """A 5 MB answer (1.75 M characters) on line 2 is accepted and written whole, not cut and not dropped."""
    # distinct characters: a wall of one character would be dropped by the quality stage (char_repetition)
    big = "".join(chr(0x4E00 + i % 20_000) for i in range(1750 * 1024))
    run = one(tmp_path, "d.jsonl", jsonl(QR[0], {"query": "长回答", "response": big}, QR[1]))
    assert_counts(run, read=3, converted=3, rejected={})
    rows = run.rows("sft", BAD)
    assert [len(r["messages"][1]["content"]) for r in rows] == [len(QR[0]["response"]), len(big),
                                                                len(QR[1]["response"])]
    assert rows[1]["messages"][1]["content"] == big


def test_extremely_long_first_line_of_json_lines(tmp_path):
    big = "很" * (400 * 1024)  # 1.2 MB: just past the sniff head
    run = one(tmp_path, "d.jsonl", jsonl({"query": "长回答", "response": big}, *(QR * 10)))
    assert_counts(run, read=31, converted=31, rejected={})


def test_duplicate_native_ids(tmp_path):
    records = [{"qid": 1, "query": "q0", "response": "a0"}, {"qid": 2, "query": "q1", "response": "a1"},
               {"qid": 1, "query": "q2", "response": "a2"}, {"qid": "1", "query": "q3", "response": "a3"},
               {"query": "q4", "response": "a4"}]
    run = one(tmp_path, "d.jsonl", jsonl(*records), fields={"id": "qid"})
    assert_counts(run, read=5, converted=3, rejected={"duplicate_id": 2})
    assert [(r["location"], r["reason"], r["message"]) for r in run.rejects(BAD)] == [
        ("line 3", "duplicate_id", "native id '1' already seen in this source"),
        ("line 4", "duplicate_id", "native id '1' already seen in this source")]
    ids = [r["id"] for r in run.rows("sft", BAD)]
    assert ids[:2] == [f"{BAD}/1", f"{BAD}/2"] and ids[2].startswith(f"{BAD}/")  # no native id: content hash


def test_control_characters_are_cleaned_from_stored_text(tmp_path):
    records = [{"query": "q0\u0007\u001b[31m red", "response": "a0\u0000x\u0008"},
               {"query": "q1\u200b", "response": "a1\ufeff\u009f"},
               {"query": "tab\tand\nnewline", "response": "kept\r\n"}]
    run = one(tmp_path, "d.jsonl", jsonl(*records))
    assert_counts(run, read=3, converted=3, rejected={})
    assert [r["messages"] for r in run.rows("sft", BAD)] == [
        [{"role": "user", "content": "q0[31m red"}, {"role": "assistant", "content": "a0x"}],
        [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}],
        [{"role": "user", "content": "tab\tand\nnewline"}, {"role": "assistant", "content": "kept"}]]
    assert validate_output(run.out) == []


def test_control_characters_only_answer_is_rejected(tmp_path):
    records = [{"query": "q0", "response": "a0"}, {"query": "q1", "response": "\u0000\u0007\u0008"}]
    run = one(tmp_path, "d.jsonl", jsonl(*records))
    assert validate_output(run.out) == []
    assert_counts(run, read=2, converted=1, rejected={"empty_output": 1})


ROLE_CASES = [
    ("messages", [("user", "u"), ("user", "u2"), ("assistant", "a")], "bad_role_order",
     "turn 1 is user, expected assistant"),
    ("messages", [("assistant", "a"), ("user", "u")], "bad_role_order", "turn 0 is assistant, expected user"),
    ("messages", [("user", "u"), ("assistant", "a"), ("user", "u")], "ends_without_answer",
     "the conversation ends on a user turn"),
    ("messages", [("system", "s"), ("system", "s2"), ("user", "u"), ("assistant", "a")], "bad_role_order",
     "turn 1 is system, expected user"),
    ("messages", [("user", "u"), ("tool", "t")], "unknown_role", "messages[1] has role 'tool'"),
    ("messages", [], "empty_conversation", "no turns"),
    ("messages", [("system", "s")], "empty_conversation", "only a system turn"),
    ("sharegpt", [("gpt", "a"), ("human", "u")], "bad_role_order", "turn 0 is assistant, expected user"),
    ("sharegpt", [("human", "u"), ("gpt", "a"), ("gpt", "a2")], "bad_role_order",
     "turn 2 is assistant, expected user"),
    ("sharegpt", [("robot", "u"), ("gpt", "a")], "unknown_role", "conversations[0] has speaker 'robot'"),
]


@pytest.mark.parametrize("fmt", ["messages", "sharegpt"])
def test_role_sequences_that_do_not_alternate(tmp_path, fmt):
    def record(turns: list[tuple[str, str]]) -> dict[str, Any]:
        if fmt == "messages":
            return {"messages": [{"role": r, "content": c} for r, c in turns]}
        return {"conversations": [{"from": r, "value": c} for r, c in turns]}

    good = [("user", "u"), ("assistant", "a")] if fmt == "messages" else [("human", "u"), ("gpt", "a")]
    cases = [c for c in ROLE_CASES if c[0] == fmt]
    run = one(tmp_path, "d.jsonl", jsonl(record(good), *(record(c[1]) for c in cases)), fmt=fmt)
    expected: dict[str, int] = {}
    for case in cases:
        expected[case[2]] = expected.get(case[2], 0) + 1
    assert_counts(run, read=len(cases) + 1, converted=1, rejected=expected)
    assert [(r["location"], r["reason"], r["message"]) for r in run.rejects(BAD)] == \
        [(f"line {i + 2}", c[2], c[3]) for i, c in enumerate(cases)]


def test_preference_pairs_with_chosen_equal_to_rejected(tmp_path):
    records = [{"question": "q", "response_chosen": "good", "response_rejected": "bad"},
               {"question": "q", "response_chosen": "same", "response_rejected": "same"},
               {"question": "q", "response_chosen": "same ", "response_rejected": "\tsame\n"},
               {"question": "q", "response_chosen": "", "response_rejected": "x"},
               {"question": "q", "response_chosen": "x"}]
    run = one(tmp_path, "d.jsonl", jsonl(*records), fmt="preference", task="reward")
    assert_counts(run, read=5, converted=1,
                  rejected={"chosen_equals_rejected": 2, "empty_output": 1, "missing_field": 1})
    assert [(r["location"], r["reason"]) for r in run.rejects(BAD)] == [
        ("line 2", "chosen_equals_rejected"), ("line 3", "chosen_equals_rejected"),
        ("line 4", "empty_output"), ("line 5", "missing_field")]
    assert [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in run.rows("reward", BAD)] == [("good", "bad")]


# --------------------------------------------------------------------------- persona templates

PERSONA_FILE = ROOT / "etl" / "data" / "persona" / "identity.jsonl"
PERSONA = {"id": "persona", "name": "identity", "host": "builtin", "files": ["identity.jsonl"], "task": "sft",
           "format": "persona", "license": "Apache-2.0"}


def _templates() -> list[dict[str, Any]]:
    return [json.loads(line) for line in PERSONA_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_persona_template_with_an_unfilled_placeholder(tmp_path):
    """Only `name` configured: every template that mentions <AUTHOR> is rejected, none teaches a literal
    placeholder; the others are filled."""
    run = run_build(tmp_path, [PERSONA], {}, build={"persona": {"name": "MedBot"}})
    templates = _templates()
    with_author = [t["id"] for t in templates if "<AUTHOR>" in t["query"] + t["response"]]
    assert with_author and len(with_author) < len(templates)
    c = run.counts("persona")
    assert run.source("persona")["status"] == "ok"
    assert (c["read"], c["converted"], c["rejected_by_reason"]) == \
        (len(templates), len(templates) - len(with_author), {"unfilled_placeholder": len(with_author)})
    rejects = run.rejects("persona")
    assert {r["reason"] for r in rejects} == {"unfilled_placeholder"}
    assert {r["message"] for r in rejects} == {"<AUTHOR> not configured in build.persona"}
    assert [json.loads(r["raw"])["id"] for r in rejects] == with_author
    rows = run.rows("sft", "persona")
    assert rows and all("<" not in t["content"] for r in rows for t in r["messages"])
    assert all("MedBot" in r["messages"][1]["content"] for r in rows)
    run.assert_good_source_finished()


def test_persona_without_configuration_is_skipped_and_says_so(tmp_path, caplog):
    run = run_build(tmp_path, [PERSONA], {})
    n = len(_templates())
    entry_ = run.source("persona")
    assert entry_["status"] == "skipped" and run.code == 0
    assert entry_["counts"]["filtered_by_reason"] == {"no_persona_configured": n}
    assert entry_["counts"]["written"] == 0 and run.rejects("persona") == []
    assert "set build.persona.name and build.persona.author" in caplog.text


# --------------------------------------------------------------------------- the catalogue (exit 2)

CATALOG_ERRORS = [
    ("bad_yaml", _HEAD + "  - {id: broken, name: [unclosed\n",
     ["sources.yaml: not valid YAML at line 5, column 1"]),
    ("bad_yaml_tab", _HEAD + "  - id: tabbed\n\tname: y\n",
     ["sources.yaml: not valid YAML at line 5, column 1", "'\\t'"]),
    ("unknown_key", _HEAD + _src("extra_key", formt="alpaca"), ["source 'extra_key': `formt`: unknown key"]),
    ("unknown_build_key", _HEAD.replace("{shard_max_bytes: 256MB}", "{dedupe: true}"),
     ["sources.yaml: build: `dedupe`: unknown key"]),
    ("duplicate_id", _HEAD + _src("good_qa"),
     ["source 'good_qa': duplicate id (first defined as source #1)"]),
    ("unknown_converter", _HEAD + _src("odd_format", format="alpacka"),
     ["source 'odd_format': `format`: unknown converter 'alpacka' (known: ", "alpaca,"]),
    ("missing_key", _HEAD + _src("no_name").replace(", name: X", ""), ["source 'no_name': `name`: Field required"]),
    ("bad_value", _HEAD + _src("bad_task", task="chat"),
     ["source 'bad_task': `task`: Input should be 'pretrain', 'sft' or 'reward'"]),
    ("unknown_top_level_key", _HEAD + "extras: 1\n", ["unknown top-level key(s) ['extras']"]),
]


@pytest.mark.parametrize(("case", "text", "fragments"), CATALOG_ERRORS, ids=[c[0] for c in CATALOG_ERRORS])
def test_bad_catalogue_exits_2_naming_the_source_and_key(tmp_path, case, text, fragments):
    code, err = run_catalog(tmp_path, text)
    assert code == 2
    assert err.startswith("error: ")
    for fragment in fragments:
        assert fragment in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_every_catalogue_problem_is_reported_at_once(tmp_path):
    code, err = run_catalog(tmp_path, _HEAD + _src("extra_key", formt="x") + _src("odd_format", format="alpacka")
                            + _src("good_qa"))
    assert code == 2
    assert "source 'extra_key': `formt`: unknown key" in err
    assert "source 'odd_format': `format`: unknown converter 'alpacka'" in err
    assert "source 'good_qa': duplicate id" in err


def test_converter_for_the_wrong_task_is_a_catalogue_error(tmp_path):
    code, err = run_catalog(tmp_path, _HEAD + _src("wrong_task", task="pretrain"))
    assert code == 2
    assert "source 'wrong_task': `task`" in err or "source 'wrong_task': `format`" in err


def test_unknown_reader_fails_its_source_naming_the_reader(tmp_path):
    run = one(tmp_path, "d.jsonl", jsonl(*QR), reader="jsonn")
    assert run.code == 1
    assert run.source(BAD)["status"] == "failed"
    assert run.source(BAD)["error"].startswith("KeyError: \"unknown reader 'jsonn' (known: ")
    run.assert_good_source_finished()


# --------------------------------------------------------------------------- write errors (exit 1)


def _previous_output(tmp_path: Path) -> tuple[BuildRun, bytes]:
    run = one(tmp_path, "d.jsonl", jsonl(*QR))
    assert run.code == 0 and validate_output(run.out) == []
    return run, (run.out / "manifest.json").read_bytes()


def _snapshot(out: Path) -> dict[str, bytes]:
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    files = {s["path"]: (out / s["path"]).read_bytes() for s in manifest["shards"]}
    return {**files, "manifest.json": (out / "manifest.json").read_bytes(), "README.md": (out / "README.md").read_bytes()}


@pytest.mark.skipif(os.geteuid() == 0, reason="as root, chmod does not stop writes (see the tests below)")
def test_permission_error_on_the_output_folder(tmp_path):
    run, _ = _previous_output(tmp_path)
    before = _snapshot(run.out)
    os.chmod(run.out, 0o555)
    try:
        again = one(tmp_path, "d.jsonl", jsonl(*QR))
    finally:
        os.chmod(run.out, 0o755)
    assert again.code == 1
    assert "error: the build could not write its output: Permission denied" in again.stderr
    assert f"the previous output in {run.out} is unchanged" in again.stderr
    assert _snapshot(run.out) == before and validate_output(run.out) == []


def test_a_file_where_the_staging_folder_should_be(tmp_path):
    """Works as root too: `OUT/.staging` cannot be created because a regular file holds its name."""
    run, _ = _previous_output(tmp_path)
    before = _snapshot(run.out)
    (run.out / ".staging").write_text("not a folder")
    again = one(tmp_path, "d.jsonl", jsonl(*QR))
    assert again.code == 1
    assert "error: the build could not write its output: File exists (.staging)" in again.stderr
    assert f"the previous output in {run.out} is unchanged" in again.stderr
    assert _snapshot(run.out) == before and validate_output(run.out) == []
    with OutputLock(run.out):  # the lock died with the failed build
        pass


def _file_size_limit(limit: int) -> Any:
    def apply() -> None:  # runs in the child: writes past `limit` bytes fail with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    return apply


def test_disk_full_while_writing_keeps_the_previous_output(tmp_path):
    """A rebuild (conversions cached) whose writes fail past 4 KB per file, in a subprocess with RLIMIT_FSIZE
    (EFBIG, the same path as ENOSPC): exit 1, says what happened, previous output byte-identical and valid."""
    run, _ = _previous_output(tmp_path)
    before = _snapshot(run.out)
    args = [sys.executable, "-m", "etl.cli", "build", "--catalog", str(tmp_path / "sources.yaml"),
            "--mirror", str(tmp_path / "mirror"), "--out", str(run.out)]
    env = {k: v for k, v in os.environ.items() if k != "MEDCORPUS_KILL_AT"}
    child = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                           preexec_fn=_file_size_limit(4096))
    assert child.returncode == 1, child.stderr
    assert "error: the build could not write its output:" in child.stderr
    assert "File too large" in child.stderr
    assert f"the previous output in {run.out} is unchanged" in child.stderr
    assert "Traceback" not in child.stderr
    assert _snapshot(run.out) == before and validate_output(run.out) == []
    with OutputLock(run.out):  # the lock died with the failed build
        pass


def test_write_error_during_conversion_keeps_the_previous_output(tmp_path):
    run, _ = _previous_output(tmp_path)
    before = _snapshot(run.out)
    shutil.rmtree(run.out / ".work")
    (run.out / ".work").write_text("not a folder")  # works as root too: no folder can be made below it
    again = one(tmp_path, "d.jsonl", jsonl(*QR[:2]))  # changed input: must be re-converted
    assert again.code == 1
    assert "error: the build could not write its output" in again.stderr
    assert _snapshot(run.out) == before and validate_output(run.out) == []
