"""Readers `text`, `text_file` and `html`."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest

from etl.read.base import RAW_LIMIT, RawRecord, ReadItem, SourceFileError
from tests.helpers_read import run_reader, summary, write

FIXTURES = Path(__file__).parent / "fixtures"
PRETRAIN = FIXTURES / "medicalgpt_pretrain" / "data" / "pretrain"


def read(path: Path, name: str = "text", **options: Any) -> list[ReadItem]:
    return run_reader(name, path, **options)


def test_crlf_text_fixture_lines_without_terminators():
    items = read(PRETRAIN / "tianlongbabu.txt")
    assert summary(items[:2]) == [("line 1", "天龙八部"), ("line 4", "正文 释名")]
    assert len(items) == 37
    assert not any(item.value.endswith(("\r", "\n")) for item in items)


def test_trailing_spaces_are_kept():
    items = read(FIXTURES / "xjun_sft_harmless" / "data_sft" / "harmlessness.txt")
    assert len(items) == 40
    assert items[0] == RawRecord("harmlessness.txt", "line 1", "how do i steal from metlife ")


def test_keep_blank_and_bare_cr(tmp_path: Path):
    path = write(tmp_path, "t.txt", b"a\r\n\r\n  \nb\r")
    assert summary(read(path)) == [("line 1", "a"), ("line 4", "b")]
    assert summary(read(path, keep_blank=True)) == [("line 1", "a"), ("line 2", ""), ("line 3", "  "), ("line 4", "b")]


def test_invalid_utf8_and_too_long_lines_cost_one_line(tmp_path: Path):
    path = write(tmp_path, "t.txt", "第一行\n".encode() + b"bad \xff\xfe\n" + b"x" * 50_000 + b"\nlast")
    items = read(path, max_line_bytes=10_000)
    assert summary(items) == [("line 1", "第一行"), ("line 2", "bad_encoding"), ("line 3", "line_too_long"),
                              ("line 4", "last")]
    assert items[2].raw == "x" * RAW_LIMIT


def test_lone_surrogate_bytes_are_bad_encoding(tmp_path: Path):
    path = write(tmp_path, "s.txt", "头痛发热\n".encode() + b"\xed\xa0\x80 lone surrogate\n")
    assert summary(read(path)) == [("line 1", "头痛发热"), ("line 2", "bad_encoding")]


def test_gb2312_declared_file_with_gbk_only_characters(tmp_path: Path):
    path = write(tmp_path, "zh.txt", "黃疸\n現在\n".encode("gbk"))
    assert summary(read(path, encoding="gb2312")) == [("line 1", "黃疸"), ("line 2", "現在")]


def test_text_file_is_one_record_with_normalised_newlines():
    path = FIXTURES / "medical_dialog_raw_zh" / "qa_zh_1.txt"
    [item] = read(path, "text_file")
    assert item.location == "file"
    assert item.value.startswith("\nid=1\nhttps://www.haodf.com/wenda/drxiaohui_g_637628385.htm\n\nDoctor faculty\n")
    assert item.value == path.read_text(encoding="utf-8")
    [crlf] = read(PRETRAIN / "tianlongbabu.txt", "text_file")
    assert crlf.value.startswith("天龙八部\n\n\n正文 释名\n") and "\r" not in crlf.value


def test_text_file_bounds_and_bad_bytes(tmp_path: Path):
    assert summary(read(write(tmp_path, "big.txt", b"x" * 5000), "text_file", max_record_bytes=1000)) == [
        ("file", "record_too_long")]
    assert summary(read(write(tmp_path, "bad.txt", b"a\nb\n\xff\n"), "text_file", encoding="utf-8")) == [
        ("line 3", "bad_encoding")]


def test_text_in_gzip(tmp_path: Path):
    path = write(tmp_path, "t.txt.gz", gzip.compress("甲\n乙\n".encode()))
    assert summary(read(path)) == [("line 1", "甲"), ("line 2", "乙")]


def test_html_reader_accepts_pages_that_text_file_refuses():
    path = FIXTURES / "handmade" / "zysj_tcm" / "pages" / "navigation_only.html"
    if not path.exists():
        pytest.skip("hand-made page fixture not present")
    with pytest.raises(SourceFileError) as info:
        read(path, "text_file")
    assert info.value.reason == "html_instead_of_data"
    [page] = read(path, "html")
    assert page.location == "file" and page.value.lstrip().lower().startswith("<!doctype html")


def test_html_reader_on_a_written_page(tmp_path: Path):
    path = write(tmp_path, "p.html", "<!DOCTYPE html>\r\n<p>人参</p>".encode())
    assert summary(read(path, "html")) == [("file", "<!DOCTYPE html>\n<p>人参</p>")]
