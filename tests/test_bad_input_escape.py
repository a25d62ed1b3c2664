"""Issue 11, input that escapes its place: the bad-input matrix through the real build path (tmp mirror → tmp
catalogue → `medcorpus build`, with `--workers 1` and `--workers 2`), for files that reach outside their source
folder (symbolic links, FIFOs, folders), tar archives, HTML pages where data was expected, catalogue names
with `..`, YAML alias bombs and duplicate keys, and the CSV field limit. docs/RELIABILITY.md lists what the
user sees for each case.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from etl.read.base import SourceFile
from etl.read.sniff import html_instead_of_data
from etl.validate import validate_output
from tests.helpers_badinput import _GOOD, _HEAD, BuildRun, _src, entry, jsonl, run_build, run_catalog

BAD = "bad_src"
QR = [{"query": f"问题{i}：头痛怎么办？", "response": f"回答{i}：多休息，多喝水。"} for i in range(3)]
SECRET_LINE = "root:x:0:0:outside-the-mirror:/root:/bin/bash"
WORKERS = pytest.mark.parametrize("workers", ["1", "2"])


def build(tmp_path: Path, sources: list[dict[str, Any]], files: dict[str, dict[str, bytes]], workers: str,
          **keys: Any) -> BuildRun:
    return run_build(tmp_path, sources, files, extra_args=("--workers", workers), **keys)


def one(tmp_path: Path, name: str, data: bytes, workers: str, fmt: str = "query_response", task: str = "sft",
        **extra: Any) -> BuildRun:
    return build(tmp_path, [entry(BAD, name, fmt, task=task, **extra)], {BAD: {name: data}}, workers)


def assert_source_failed(run: BuildRun, error_start: str) -> None:
    """The bad source fails naming the file and the reason; the good source of the same build finishes."""
    assert run.code == 1, run.stderr
    bad = run.source(BAD)
    assert bad["status"] == "failed", bad
    assert bad["error"].startswith(f"{BAD}: {error_start}") or bad["error"].startswith(error_start), bad["error"]
    assert run.rows("sft", BAD) == [] and run.rows("pretrain", BAD) == [] and run.rejects(BAD) == []
    assert f"1 source(s) failed: {BAD}" in run.stderr
    run.assert_good_source_finished()
    assert validate_output(run.out, allow_partial=True) == []  # a first build: the partial result is the output


def all_text(run: BuildRun) -> str:
    """Every stored text of the build (rows and rejects), to show what was never read."""
    parts = []
    for task in ("sft", "pretrain", "reward"):
        parts += [str(row) for row in run.rows(task)]
    parts += [str(row) for row in run.rejects()]
    return "\n".join(parts)


# --------------------------------------------------------------------------- files outside the source folder


@WORKERS
def test_symlink_to_a_file_outside_the_mirror_is_refused_never_read(tmp_path, workers):
    outside = tmp_path / "passwd"
    outside.write_text(SECRET_LINE + "\n", encoding="utf-8")
    folder = tmp_path / "mirror" / BAD
    folder.mkdir(parents=True)
    (folder / "d.txt").symlink_to(outside)
    run = build(tmp_path, [entry(BAD, "d.txt", "text", task="pretrain")], {}, workers)
    assert_source_failed(run, "d.txt: outside_source_folder: a symbolic link to a file outside the source folder")
    assert "outside-the-mirror" not in all_text(run)


@WORKERS
def test_symlinked_folder_out_of_the_mirror_is_refused_through_a_glob(tmp_path, workers):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "x.txt").write_text(SECRET_LINE + "\n", encoding="utf-8")
    folder = tmp_path / "mirror" / BAD
    folder.mkdir(parents=True)
    (folder / "data").symlink_to(outside, target_is_directory=True)
    run = build(tmp_path, [entry(BAD, "data/*.txt", "text", task="pretrain")], {}, workers)
    assert_source_failed(run, "data/x.txt: outside_source_folder")
    assert "outside-the-mirror" not in all_text(run)


def test_symlink_that_stays_inside_the_source_folder_is_read(tmp_path):
    folder = tmp_path / "mirror" / BAD
    folder.mkdir(parents=True)
    (folder / "real.jsonl").write_bytes(jsonl(*QR))
    (folder / "d.jsonl").symlink_to("real.jsonl")
    run = build(tmp_path, [entry(BAD, "d.jsonl", "query_response")], {}, "1")
    assert run.code == 0, run.stderr
    assert sorted(r["messages"][0]["content"] for r in run.rows("sft", BAD)) == [q["query"] for q in QR]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@WORKERS
def test_fifo_in_the_mirror_fails_its_source_without_hanging(tmp_path, workers):
    folder = tmp_path / "mirror" / BAD
    folder.mkdir(parents=True)
    os.mkfifo(folder / "d.jsonl")
    run = build(tmp_path, [entry(BAD, "d.jsonl", "query_response")], {}, workers)
    assert_source_failed(run, "d.jsonl: not_a_file: a FIFO, socket or device")


@WORKERS
def test_folder_where_the_catalogue_names_a_file(tmp_path, workers):
    (tmp_path / "mirror" / BAD / "d.jsonl").mkdir(parents=True)
    run = build(tmp_path, [entry(BAD, "d.jsonl", "query_response")], {}, workers)
    assert_source_failed(run, "d.jsonl: not_a_file: a folder where the catalogue names a file")


# --------------------------------------------------------------------------- tar archives


def _tar(members: dict[str, bytes], compress: bool = False, links: dict[str, tuple[bytes, str]] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if compress else "w", format=tarfile.GNU_FORMAT) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            archive.addfile(info, io.BytesIO(data))
        for name, (kind, target) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            archive.addfile(info)
    return buffer.getvalue()


TEXT = "高血压患者应低盐饮食。\nRegular exercise lowers blood pressure.\n".encode()


@WORKERS
def test_tar_named_txt_is_read_member_by_member_not_as_text(tmp_path, workers):
    run = one(tmp_path, "d.txt", _tar({"a.txt": TEXT, "b.txt": "每天步行三十分钟。\n".encode()}), workers,
              fmt="text", task="pretrain")
    assert run.code == 0, run.stderr
    rows = run.rows("pretrain", BAD)
    assert sorted(r["text"] for r in rows) == sorted(["高血压患者应低盐饮食。", "Regular exercise lowers blood pressure.",
                                                     "每天步行三十分钟。"])
    assert run.rejects(BAD) == [] and run.counts(BAD)["read"] == 3
    assert "ustar" not in all_text(run) and "a.txt" not in "".join(r["text"] for r in rows)


@WORKERS
@pytest.mark.parametrize("name", ["d.tar.gz", "d.tgz", "d.json"])
def test_gzipped_tar_members_are_read_by_their_own_format(tmp_path, workers, name):
    data = _tar({"part1.jsonl": jsonl(*QR[:2]), "part2.json": jsonl(QR[2])}, compress=True)
    run = one(tmp_path, name, data, workers)
    assert run.code == 0, run.stderr
    assert sorted(r["messages"][0]["content"] for r in run.rows("sft", BAD)) == [q["query"] for q in QR]
    assert run.rejects(BAD) == [] and run.counts(BAD)["read"] == 3


TAR_FAILURES = [
    ("dotdot", lambda: _tar({"ok.jsonl": jsonl(*QR), "../evil.jsonl": jsonl(*QR)}),
     "d.tar!../evil.jsonl: unsafe_member: absolute path or `..`"),
    ("absolute", lambda: _tar({"/etc/evil.jsonl": jsonl(*QR)}), "d.tar!/etc/evil.jsonl: unsafe_member"),
    ("symlink_out", lambda: _tar({}, links={"d.jsonl": (tarfile.SYMTYPE, "/etc/passwd")}),
     "d.tar!d.jsonl: unsafe_member: symbolic link to '/etc/passwd'"),
    ("hard_link", lambda: _tar({}, links={"d.jsonl": (tarfile.LNKTYPE, "../../etc/passwd")}),
     "d.tar!d.jsonl: unsafe_member: hard link"),
    ("device", lambda: _tar({}, links={"zero": (tarfile.CHRTYPE, "")}), "d.tar!zero: unsafe_member: a device or FIFO"),
    ("html_member", lambda: _tar({"d.json": b"<head><title>Sign in</title></head><body>login</body>"}),
     "d.tar!d.json: html_instead_of_data"),
    ("nested_zip", lambda: _tar({"inner.zip": _zip({"d.jsonl": jsonl(*QR)})}), "d.tar!inner.zip: nested_archive"),
    ("truncated", lambda: _tar({"d.jsonl": jsonl(*QR) * 50})[:1500], "d.tar: truncated_archive"),
    ("too_big", lambda: _tar({"d.jsonl": jsonl(*QR) * 50}), "d.tar: zip_bomb: members declare"),
]


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@WORKERS
@pytest.mark.parametrize(("case", "make", "error_start"), TAR_FAILURES, ids=[c[0] for c in TAR_FAILURES])
def test_tar_member_rules_match_zip(tmp_path, workers, case, make, error_start):
    options = {"max_uncompressed_bytes": 1000} if case == "too_big" else {}
    run = one(tmp_path, "d.tar", make(), workers, options=options)
    assert_source_failed(run, error_start)
    assert not (tmp_path / "etc").exists() and not (tmp_path / "mirror" / "evil.jsonl").exists()


def test_zip_member_that_is_an_archive_is_refused_by_every_reader(tmp_path):
    run = one(tmp_path, "d.zip", _zip({"inner.tar": _tar({"d.txt": TEXT})}), "1", fmt="text", task="pretrain")
    assert_source_failed(run, "d.zip!inner.tar: nested_archive")


# --------------------------------------------------------------------------- HTML where data was expected

LOGIN_HEAD = b"<head>\n<title>Sign in</title>\n</head>\n<body><form>user</form></body>\n"
SAVED_PAGE = (b"<!-- saved from url=(0041)https://example.org/datasets/download -->\n<html><head><title>Log in"
              b"</title></head><body>Please log in to download.</body></html>\n")
BOM_DOCTYPE = b"\xef\xbb\xbf\n  \r\n<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01//EN\">\n<html><body>x</body></html>"
COMMENT_FIRST = b"<!-- generated by the portal -->\n<!doctype html><html lang='zh'><body>x</body></html>"
UTF16_PAGE = "\ufeff<html><body>登录</body></html>".encode("utf-16-le")

HTML_CASES = [
    ("head_in_text", "d.txt", LOGIN_HEAD, "text", "pretrain"),
    ("saved_from_url_in_text", "d.txt", SAVED_PAGE, "text", "pretrain"),
    ("head_in_jsonl", "d.jsonl", LOGIN_HEAD, "query_response", "sft"),
    ("saved_from_url_in_json", "d.json", SAVED_PAGE, "query_response", "sft"),
    ("bom_and_blank_before_doctype_in_csv", "d.csv", BOM_DOCTYPE, "query_response", "sft"),
    ("comment_before_doctype_in_tsv", "d.tsv", COMMENT_FIRST, "query_response", "sft"),
    ("utf16_page_in_text", "d.txt", UTF16_PAGE, "text", "pretrain"),
    ("gzipped_login_page", "d.jsonl.gz", gzip.compress(LOGIN_HEAD, mtime=0), "query_response", "sft"),
]


@WORKERS
@pytest.mark.parametrize(("case", "name", "data", "fmt", "task"), HTML_CASES, ids=[c[0] for c in HTML_CASES])
def test_html_page_where_data_was_expected_fails_the_file_once(tmp_path, workers, case, name, data, fmt, task):
    reader = {"d.csv": "csv", "d.tsv": "tsv"}.get(name)
    run = one(tmp_path, name, data, workers, fmt=fmt, task=task, **({"reader": reader} if reader else {}))
    assert_source_failed(run, f"{name}: html_instead_of_data: an HTML page where data was expected")
    assert run.stderr.count("html_instead_of_data") >= 1
    assert "Sign in" not in all_text(run) and "log in" not in all_text(run)


def test_html_converter_still_reads_saved_pages(tmp_path):
    body = "<p>" + "高血压是一种常见的慢性病，患者应当低盐饮食、规律运动、按时服药并定期测量血压。" * 3 + "</p>"
    page = (f"<!-- saved from url=(0030)https://example.org/tcm/page1 -->\n<html><head><title>高血压</title></head>"
            f"<body><article>{body}</article></body></html>\n").encode()
    run = one(tmp_path, "pages/p1.html", page, "2", fmt="html", task="pretrain")
    assert run.code == 0, run.stderr
    rows = run.rows("pretrain", BAD)
    assert len(rows) == 1 and "低盐饮食" in rows[0]["text"]


@pytest.mark.parametrize("data", [b'{"html": "<html>"}', b"text about <html> tags\n", b"<xml><html/></xml>",
                                  b"query,response\n<head>,x\n", b"<!-- a comment", b""])
def test_data_that_mentions_html_is_not_a_page(data):
    assert not html_instead_of_data(data)


# --------------------------------------------------------------------------- the catalogue (exit 2)

_GDRIVE = {"host": "gdrive", "file_id": "abc", "files": "[]", "repo": "null", "revision": "null"}
ESCAPING_NAMES = [
    ("files_dotdot", _src("esc", files="['data/../../x.json']"), "source 'esc': `files`: Value error, bad glob "
                                                                  "'data/../../x.json': `..` would leave"),
    ("files_backslash", _src("esc", files="['..\\x.json']"), "source 'esc': `files`: Value error, bad glob "
                                                            "'..\\\\x.json': a backslash"),
    ("files_drive", _src("esc", files="['C:/x.json']"), "source 'esc': `files`: Value error, bad glob 'C:/x.json': "
                                                        "must be a relative path"),
    ("files_home", _src("esc", files="['~/x.json']"), "source 'esc': `files`: Value error, bad glob '~/x.json'"),
    ("filename_dotdot", _src("esc", filename="../../etc/passwd", **_GDRIVE),
     "source 'esc': `filename`: Value error, bad file name '../../etc/passwd': `..` would leave"),
    ("filename_absolute", _src("esc", filename="/etc/passwd", **_GDRIVE),
     "source 'esc': `filename`: Value error, bad file name '/etc/passwd': must be a relative path"),
    ("options_filename_dotdot", _src("esc", host="http", url="https://example.org/d.json", files="[]",
                                     options="{filename: ../d.json}", repo="null", revision="null"),
     "source 'esc': `options`: Value error, `filename`: bad file name '../d.json'"),
    ("options_filename_backslash", _src("esc", host="http", url="https://example.org/d.json", files="[]",
                                        options="{filename: 'a\\\\..\\\\..\\\\d.json'}", repo="null", revision="null"),
     "source 'esc': `options`: Value error, `filename`: bad file name"),
]


@pytest.mark.parametrize(("case", "text", "fragment"), ESCAPING_NAMES, ids=[c[0] for c in ESCAPING_NAMES])
def test_catalogue_names_that_leave_the_source_folder_exit_2(tmp_path, case, text, fragment):
    code, err = run_catalog(tmp_path, _HEAD + text)
    assert code == 2, err
    assert fragment in err, err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


BILLION_LAUGHS = "\n".join(
    ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"{c}: &{c} [" + ", ".join([f"*{p}"] * 9) + "]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)]) + "\n"


def test_yaml_alias_bomb_is_refused_at_once(tmp_path):
    text = BILLION_LAUGHS + _HEAD
    assert len(BILLION_LAUGHS.encode()) < 800
    code, err = run_catalog(tmp_path, text)
    assert code == 2, err
    assert "not valid YAML at line 5" in err and "aliases expand past 10000 nodes" in err and "alias bomb" in err


def test_yaml_alias_bomb_inside_a_source(tmp_path):
    bomb = "".join(f"  - &{c} [" + ", ".join([f"*{p}"] * 9) + "]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    text = ("build: {shard_max_bytes: 256MB}\nsources:\n" + _GOOD
            + "  - id: boom\n    name: B\n    host: github\n    repo: o/r\n    revision: main\n    files: [a.json]\n"
            "    task: sft\n    format: alpaca\n    notes: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
            "    options:\n      x:\n" + bomb.replace("  - ", "        - "))
    code, err = run_catalog(tmp_path, text)
    assert code == 2 and "alias bomb" in err, err


def test_the_real_catalogue_uses_few_aliases_and_still_loads():
    from etl.catalog import load_catalog

    catalog = load_catalog(Path(__file__).resolve().parent.parent / "sources.yaml")
    assert catalog.get("huatuo26m_lite").citation  # its citation is an alias of an anchor


DUPLICATES = [
    ("licence_in_a_source", _HEAD + "  - id: dup\n    name: D\n    host: github\n    repo: o/r\n    revision: main\n"
     "    files: [a.json]\n    task: sft\n    format: alpaca\n    license: MIT\n    license: CC-BY-NC-4.0\n",
     "line 13, column 5: duplicate key 'license' (first given at line 12)"),
    ("sources_block", _HEAD + "sources:\n" + _src("other"), "line 4, column 1: duplicate key 'sources' (first given at "
                                                            "line 2)"),
    ("build_key", "build: {shard_max_bytes: 256MB, shard_max_bytes: 1KB}\nsources:\n" + _GOOD,
     "duplicate key 'shard_max_bytes'"),
    ("flow_mapping", _HEAD + _src("dup2", license="MIT").replace("}\n", ", license: GPL}\n"),
     "duplicate key 'license' (first given at line 4)"),
]


@pytest.mark.parametrize(("case", "text", "fragment"), DUPLICATES, ids=[c[0] for c in DUPLICATES])
def test_duplicate_yaml_keys_exit_2_naming_the_line(tmp_path, case, text, fragment):
    code, err = run_catalog(tmp_path, text)
    assert code == 2, err
    assert "sources.yaml: not valid YAML at line" in err and fragment in err, err


def test_merge_keys_may_still_be_overridden():
    from etl.catalog import load_yaml

    doc = load_yaml("base: &b {x: 1, y: 2}\nc: {<<: *b, x: 3}\n")
    assert doc["c"] == {"x": 3, "y": 2}


# --------------------------------------------------------------------------- --mirror that is not a folder


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_mirror_that_is_not_a_folder_is_one_error(tmp_path, kind, capsys):
    from etl.cli import main

    catalog = tmp_path / "sources.yaml"
    catalog.write_text(_HEAD + _src("second"), encoding="utf-8")
    mirror = tmp_path / "nowhere"
    if kind == "file":
        mirror.write_text("not a folder", encoding="utf-8")
    code = main(["build", "--catalog", str(catalog), "--mirror", str(mirror), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    what = "does not exist" if kind == "missing" else "is not a folder"
    assert err.count("error:") == 1 and f"the folder {what}" in err and "--mirror examples/mirror" in err, err
    assert "not in the mirror" not in err and not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- the CSV field limit


def _cmedqa2(answer: str) -> dict[str, bytes]:
    question = "question_id,content\n1,头痛怎么办\n2,发烧了怎么办\n"
    answers = f"ans_id,question_id,content\n10,1,多休息。\n11,2,{answer}\n12,1,多喝水。\n"
    return {"question.zip": _zip({"question.csv": question.encode()}),
            "answer.zip": _zip({"answer.csv": answers.encode()})}


def _cmedqa2_entry(**options: Any) -> dict[str, Any]:
    return {**entry(BAD, "question.zip", "cmedqa2"), "files": ["question.zip", "answer.zip"], "options": options}


# ~430 KiB in UTF-8, past the csv module's default 128 KiB limit; varied text, so that the quality stage
# (which drops walls of repeated characters) keeps it
LONG_ANSWER = "".join(chr(0x4E00 + i % 20_000) for i in range(144_000))


@pytest.mark.parametrize("before", [128 * 1024, sys.maxsize // 2])
def test_long_csv_field_does_not_depend_on_what_ran_before(tmp_path, before):
    csv.field_size_limit(before)  # what another reader may have left in this process
    run = build(tmp_path, [_cmedqa2_entry()], {BAD: _cmedqa2(LONG_ANSWER)}, "1")
    assert run.code == 0, run.stderr
    answers = sorted(r["messages"][1]["content"] for r in run.rows("sft", BAD))
    assert answers == sorted(["多休息。", "多喝水。", LONG_ANSWER])


@WORKERS
@pytest.mark.parametrize("before", [128 * 1024, sys.maxsize // 2])
def test_over_long_csv_field_is_one_reject_with_its_location(tmp_path, workers, before):
    csv.field_size_limit(before)
    run = build(tmp_path, [_cmedqa2_entry(max_field_bytes=100_000)], {BAD: _cmedqa2(LONG_ANSWER)}, workers)
    assert run.code == 0, run.stderr
    assert sorted(r["messages"][1]["content"] for r in run.rows("sft", BAD)) == ["多休息。", "多喝水。"]
    rejects = [(r["file"], r["location"], r["reason"]) for r in run.rejects(BAD)]
    assert rejects == [("answer.zip!answer.csv", "row 2", "bad_csv_row")]
    assert "field larger than field limit (100000)" in run.rejects(BAD)[0]["message"]


@pytest.mark.parametrize("before", [128 * 1024, sys.maxsize // 2])
def test_csv_reader_field_limit_is_the_same_in_any_order(tmp_path, before):
    from etl.read.base import RawRecord, ReadError, get_reader

    path = tmp_path / "d.csv"
    path.write_text(f"query,response\n头痛,{LONG_ANSWER}\n发烧,多喝水\n", encoding="utf-8")
    csv.field_size_limit(before)
    items = list(get_reader("csv")([SourceFile(path, "d.csv")], {}))
    assert [type(i) for i in items] == [RawRecord, RawRecord] and items[0].value["response"] == LONG_ANSWER
    csv.field_size_limit(before)
    items = list(get_reader("csv")([SourceFile(path, "d.csv")], {"max_field_bytes": 1000}))
    assert [(type(i), i.location) for i in items] == [(ReadError, "row 1"), (RawRecord, "row 2")]
    assert items[0].reason == "bad_csv_row"
