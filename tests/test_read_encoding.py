"""Encoding detection and line decoding (etl.read.encoding)."""

from __future__ import annotations

import codecs
import io
from pathlib import Path

import pytest

from etl.read.base import ReadError, SourceFileError
from etl.read.encoding import decoded_stream, detect_encoding, text_lines

FIXTURES = Path(__file__).parent / "fixtures"
TOYHOM_CSV = FIXTURES / "toyhom_dialogue" / "样例_内科5000-6000.csv"


def test_gbk_fixture_is_read_as_gb18030_never_gb2312():
    assert detect_encoding(TOYHOM_CSV.read_bytes()[:65536]) == "gb18030"


@pytest.mark.parametrize(("sample", "expected"), [
    (codecs.BOM_UTF8 + "病人：头痛".encode(), "utf-8-sig"),
    (codecs.BOM_UTF16_LE + "病人".encode("utf-16-le"), "utf-16"),
    (codecs.BOM_UTF16_BE + "病人".encode("utf-16-be"), "utf-16"),
    (codecs.BOM_UTF32_LE + "病人".encode("utf-32-le"), "utf-32"),
    (b"plain ascii", "utf-8"),
    ("医生：多喝水".encode(), "utf-8"),
    ("医生：多喝水".encode()[:-1], "utf-8"),  # a character cut by the end of the sample
    ("医生：多喝水，注意休息。".encode() * 200 + b"\xff", "utf-8"),  # one corrupt byte among many
])
def test_detect_encoding_from_bom_and_utf8(sample: bytes, expected: str):
    assert detect_encoding(sample) == expected


@pytest.mark.parametrize(("declared", "expected"), [
    ("GB2312", "gb18030"), ("gbk", "gb18030"), ("cp936", "gb18030"), ("UTF8", "utf-8"), ("latin-1", "iso8859-1"),
])
def test_declared_encoding_wins_and_gb_family_is_widened(declared: str, expected: str):
    assert detect_encoding("医生".encode(), declared) == expected


def test_unknown_declared_encoding_fails_the_file():
    with pytest.raises(SourceFileError) as info:
        decoded_stream("x.txt", io.BytesIO(b"abc"), {"encoding": "no-such-codec"})
    assert info.value.reason == "unknown_encoding"


def test_utf16_is_transcoded_so_lines_split_on_lf():
    data = codecs.BOM_UTF16_LE + "第一行\r\n第二行\n".encode("utf-16-le")
    assert list(text_lines("a.txt", io.BytesIO(data), {})) == [(1, "第一行"), (2, "第二行")]


def test_wrong_declared_encoding_rejects_only_the_bad_lines():
    data = "好\n".encode("gb18030") + b"ascii\n" + "好".encode("gb18030")
    items = list(text_lines("a.txt", io.BytesIO(data), {"encoding": "utf-8"}))
    assert items[1] == (2, "ascii")
    assert [(i.location, i.reason) for i in items if isinstance(i, ReadError)] == [
        ("line 1", "bad_encoding"), ("line 3", "bad_encoding")]


def test_utf8_bom_is_dropped_once():
    data = codecs.BOM_UTF8 + b"a\r\n\xef\xbb\xbfb\n"
    assert list(text_lines("a.txt", io.BytesIO(data), {})) == [(1, "a"), (2, "\ufeffb")]


def test_long_mixed_gbk_lines_that_charset_normalizer_gives_up_on_are_gb18030():
    """A Toyhom-shaped CSV whose answers mix Chinese and long English sentences: charset-normalizer
    finds no encoding for its first 64 KiB (cut inside a character), which used to mean UTF-8 and a
    `bad_encoding` reject for every row."""
    from charset_normalizer import from_bytes

    zh = "近7周来乏力加重，伴有头晕，夜间尤为明显。心电图提示ST段压低，实验室检查示白细胞6.3×10^9/L。体温38.9℃。"
    en = ("The recommended dose of metoprolol is 500 mg 2 times daily. "
          "Patients with hypothyroidism should follow a low-salt diet. ")
    line = f'内科,标题,"{zh * 3}","{zh * 2}{en * 2}"\n'
    sample = ("department,title,ask,answer\n" + line * 200).encode("gb18030")[:1 << 16]
    assert from_bytes(sample).best() is None  # the case this guards against
    assert detect_encoding(sample) == "gb18030"
    assert detect_encoding(("病人" * 10).encode("utf-8") + b"\xff\xfe\xfd" * 30) == "utf-8"
