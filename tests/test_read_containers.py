"""Containers and refusals (etl.read.containers): gzip, zip, truncation, zip-slip, bombs, non-data files."""

from __future__ import annotations

import gzip
import io
import stat
import zipfile
from pathlib import Path

import pytest

from etl.read.base import SourceFile, SourceFileError
from etl.read.containers import open_members

FIXTURES = Path(__file__).parent / "fixtures"


def source(path: Path, relpath: str | None = None) -> SourceFile:
    return SourceFile(path, relpath or path.name)


def members(path: Path, **options: object) -> list[tuple[str, bytes]]:
    return [(label, stream.read()) for label, stream in open_members(source(path), options)]


def failure(path: Path, **options: object) -> SourceFileError:
    with pytest.raises(SourceFileError) as info:
        members(path, **options)
    return info.value


def test_gzip_fixture_is_expanded_by_magic_bytes(tmp_path: Path):
    renamed = tmp_path / "data.bin"
    renamed.write_bytes((FIXTURES / "hh_rlhf" / "harmless-base" / "test.jsonl.gz").read_bytes())
    [(label, data)] = members(renamed)
    assert label == "data.bin"
    assert len(data) == 42_360  # SOURCES.md: 42,360 B uncompressed
    assert data.startswith(b'{"chosen": "\\n\\nHuman: what are some pranks with a pen i can do?')


def test_cmedqa2_zip_member_is_labelled_archive_bang_member():
    [(label, data)] = members(FIXTURES / "cmedqa2" / "dev_candidates.zip")
    assert label == "dev_candidates.zip!dev_candidates.txt"
    assert len(data) == 6161
    assert data.startswith(b"question_id,ans_id,cnt,label\n51747753,76843,0,1\n")


def test_zip_members_come_in_name_order_without_directories_and_macos_junk(tmp_path: Path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("b.txt", "B")
        archive.writestr("dir/", "")
        archive.writestr("__MACOSX/._a.txt", "junk")
        archive.writestr("a.txt", "A")
        archive.writestr("empty.txt", "")
    assert members(path) == [("a.zip!a.txt", b"A"), ("a.zip!b.txt", b"B")]


def test_plain_file_passes_through(tmp_path: Path):
    path = tmp_path / "plain.txt"
    path.write_bytes(b"x" * 3_000_000)
    [(label, data)] = members(path)
    assert (label, len(data)) == ("plain.txt", 3_000_000)


def test_truncated_gzip(tmp_path: Path):
    path = tmp_path / "t.jsonl.gz"
    data = gzip.compress("".join(f'{{"a": {i}}}\n' for i in range(5000)).encode())
    path.write_bytes(data[: len(data) // 2])
    assert failure(path).reason == "truncated_archive"


def test_corrupt_gzip(tmp_path: Path):
    data = bytearray(gzip.compress(b'{"a": 1}\n' * 10))
    data[-8] ^= 0xFF  # CRC
    path = tmp_path / "c.gz"
    path.write_bytes(bytes(data))
    assert failure(path).reason == "corrupt_archive"


def test_truncated_zip(tmp_path: Path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.csv", "a,b\n1,2\n" * 1000)
    path = tmp_path / "t.zip"
    path.write_bytes(buffer.getvalue()[:-30])
    assert failure(path).reason == "truncated_archive"


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/passwd", "a/../../evil.txt", "C:/evil.txt", "..\\evil.txt"])
def test_zip_slip_member_is_refused(tmp_path: Path, name: str):
    path = tmp_path / "slip.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ok.txt", "fine")
        archive.writestr(name, "evil")
    error = failure(path)
    assert (error.reason, error.file) == ("unsafe_member", f"slip.zip!{name}")


def test_symlink_member_is_refused(tmp_path: Path):
    path = tmp_path / "link.zip"
    info = zipfile.ZipInfo("link.txt")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(info, "/etc/passwd")
    assert failure(path).reason == "unsafe_member"


def test_zip_bomb_by_ratio_and_by_total(tmp_path: Path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.txt", b"0" * 20_000_000)  # ratio ≈ 1000
    assert failure(path).reason == "zip_bomb"
    assert failure(path, max_compression_ratio=5000, max_uncompressed_bytes=1_000_000).reason == "zip_bomb"
    assert len(members(path, max_compression_ratio=5000)[0][1]) == 20_000_000


def test_gzip_bomb_is_stopped_while_expanding(tmp_path: Path):
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(b"0" * 20_000_000))
    assert failure(path).reason == "zip_bomb"


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "empty_file"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:601a21b9\nsize 59919275\n", "lfs_pointer"),
    (b"\n  <!DOCTYPE html>\n<html><body>Sign in</body></html>", "html_instead_of_data"),
    (b"<HTML><head><title>404</title></head></HTML>", "html_instead_of_data"),
    (gzip.compress(b""), "empty_file"),
    (gzip.compress(b"<!doctype html><p>quota exceeded</p>"), "html_instead_of_data"),
])
def test_files_that_hold_no_data_are_refused(tmp_path: Path, content: bytes, reason: str):
    path = tmp_path / "data.json"
    path.write_bytes(content)
    assert failure(path).reason == reason


def test_html_is_data_when_allowed(tmp_path: Path):
    path = tmp_path / "page.html"
    path.write_bytes(b"<!DOCTYPE html><p>text</p>")
    assert members(path, allow_html=True) == [("page.html", b"<!DOCTYPE html><p>text</p>")]


def test_missing_file(tmp_path: Path):
    assert failure(tmp_path / "absent.json").reason == "unreadable_file"
