"""Containers: open a source file as one or more byte streams, expanding gzip, zip and tar by content.

`open_members` yields `(label, stream)`: the file itself (`relpath`), the decompressed gzip data
(`relpath`), each zip member in name order, or each tar member (also inside gzip: `.tar.gz`, `.tgz`) in
archive order (`relpath!member`), whatever the file is called. Before any data is parsed it refuses what
is not data: an empty file, a Git LFS pointer, an HTML page (a login wall or an error page saved under the
data's name; `options["allow_html"]` when pages are the data), an unsafe member (absolute path, `..`, a
drive letter, a symbolic or hard link, a device or FIFO), an encrypted member, an archive inside a member
(`nested_archive`), and archives that expand past the size or ratio limits (zip bombs). Members are read
by their own format: the reader's parser runs on each member's bytes.
"""

from __future__ import annotations

import gzip
import io
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import PurePosixPath
from typing import Any, BinaryIO

from etl.read.base import ReadItem, SourceFile, SourceFileError
from etl.read.sniff import html_instead_of_data
from etl.read.streams import buffered, peek

MAX_TOTAL_UNCOMPRESSED = 32 * 1024**3   # bytes one archive may expand to (options["max_uncompressed_bytes"])
MAX_COMPRESSION_RATIO = 200             # uncompressed / compressed (options["max_compression_ratio"])
RATIO_FLOOR = 1 << 20                   # the ratio limit applies past this many uncompressed bytes

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; the end record of an empty zip
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy Office (.xls, .doc)
LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"
_SKIPPED_MEMBERS = ("__MACOSX/",)  # resource forks added by macOS archivers, never data


def check_payload(label: str, head: bytes, allow_html: bool = False) -> None:
    """Refuse a file that holds no data: empty, a Git LFS pointer, or (unless the data are web pages,
    `allow_html`) an HTML page."""
    if not head:
        raise SourceFileError(label, "empty_file", "the file is empty")
    if head.startswith(LFS_POINTER):
        raise SourceFileError(label, "lfs_pointer", "a Git LFS pointer, not the data it points to")
    if not allow_html and html_instead_of_data(head):
        raise SourceFileError(label, "html_instead_of_data", "an HTML page where data was expected")


def is_zip(head: bytes) -> bool:
    return head.startswith(ZIP_MAGIC)


def is_tar(head: bytes) -> bool:
    """A tar archive: the `ustar` magic of POSIX and GNU tar, or an old-style header whose checksum holds."""
    if len(head) < tarfile.BLOCKSIZE:
        return False
    if head[257:262] == b"ustar":
        return True
    try:
        info = tarfile.TarInfo.frombuf(head[:tarfile.BLOCKSIZE], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return bool(info.name)


def is_archive(head: bytes) -> bool:
    return head.startswith((*ZIP_MAGIC, GZIP_MAGIC, OLE_MAGIC)) or is_tar(head)


class _Guarded(io.RawIOBase):
    """A decompressing stream that turns codec failures into SourceFileError and stops expanding
    past the size limits."""

    def __init__(self, inner: BinaryIO, label: str, compressed: int, options: Mapping[str, Any]) -> None:
        self._inner = inner
        self._label = label
        self._limit, ratio = _limits(options)
        self._ratio_limit = max(RATIO_FLOOR, ratio * compressed)
        self._total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            data = self._inner.read(len(buffer))
        except EOFError as exc:
            raise SourceFileError(self._label, "truncated_archive", f"compressed data ends early: {exc}") from exc
        except (OSError, zlib.error, zipfile.BadZipFile) as exc:
            raise SourceFileError(self._label, "corrupt_archive", str(exc)) from exc
        self._total += len(data)
        if self._total > self._limit or self._total > self._ratio_limit:
            raise SourceFileError(self._label, "zip_bomb", f"expands past {self._total} bytes")
        buffer[: len(data)] = data
        return len(data)


def _limits(options: Mapping[str, Any]) -> tuple[int, float]:
    return (int(options.get("max_uncompressed_bytes", MAX_TOTAL_UNCOMPRESSED)),
            float(options.get("max_compression_ratio", MAX_COMPRESSION_RATIO)))


def open_zip(file: SourceFile, options: Mapping[str, Any]) -> zipfile.ZipFile:
    """Open a zip (also a docx/xlsx) after checking its declared sizes against the bomb limits."""
    try:
        archive = zipfile.ZipFile(file.path)
    except zipfile.BadZipFile as exc:
        raise SourceFileError(file.relpath, "truncated_archive", f"not a complete zip: {exc}") from exc
    total_limit, ratio_limit = _limits(options)
    infos = archive.infolist()
    total = sum(info.file_size for info in infos)
    if total > total_limit:
        archive.close()
        raise SourceFileError(file.relpath, "zip_bomb", f"members declare {total} bytes (limit {total_limit})")
    for info in infos:
        if info.file_size > RATIO_FLOOR and info.file_size > ratio_limit * max(info.compress_size, 1):
            archive.close()
            raise SourceFileError(file.relpath, "zip_bomb",
                                  f"{info.filename}: compression ratio above {ratio_limit:g}")
    return archive


def _unsafe_name(name: str) -> bool:
    path = PurePosixPath(name.replace("\\", "/"))
    return path.is_absolute() or ".." in path.parts or bool(path.parts and path.parts[0].endswith(":"))


def _check_member(label: str, info: zipfile.ZipInfo) -> None:
    if _unsafe_name(info.filename):
        raise SourceFileError(label, "unsafe_member", "absolute path or `..` in a member name")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise SourceFileError(label, "unsafe_member", "symbolic link in the archive")
    if info.flag_bits & 0x1:
        raise SourceFileError(label, "encrypted_archive", "encrypted member")


def _member_stream(label: str, head: bytes, stream: BinaryIO, options: Mapping[str, Any]) -> BinaryIO:
    """A member's stream after the checks every member gets: data, not a page, not another archive."""
    check_payload(label, head, bool(options.get("allow_html")))
    if is_archive(head):
        raise SourceFileError(label, "nested_archive", "an archive inside an archive")
    return stream


def _tar_members(label: str, stream: BinaryIO, options: Mapping[str, Any]) -> Iterator[tuple[str, BinaryIO]]:
    """The regular-file members of a tar stream, in archive order; links, devices and unsafe names fail it."""
    limit, _ = _limits(options)
    total = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for info in archive:
                where = f"{label}!{info.name}"
                if _unsafe_name(info.name):
                    raise SourceFileError(where, "unsafe_member", "absolute path or `..` in a member name")
                if info.issym() or info.islnk():
                    raise SourceFileError(where, "unsafe_member", f"{'symbolic' if info.issym() else 'hard'} link "
                                                                  f"to {info.linkname!r} in the archive")
                if info.isdir() or info.name.startswith(_SKIPPED_MEMBERS):
                    continue
                if not info.isfile():
                    raise SourceFileError(where, "unsafe_member", "a device or FIFO in the archive")
                total += info.size
                if total > limit:
                    raise SourceFileError(label, "zip_bomb", f"members declare {total} bytes (limit {limit})")
                member = archive.extractfile(info)
                if member is None or not info.size:
                    continue  # an empty member holds no records
                head, member_stream = peek(member)  # type: ignore[arg-type]
                yield where, _member_stream(where, head, member_stream, options)
    except tarfile.ReadError as exc:
        raise SourceFileError(label, "truncated_archive", f"not a complete tar archive: {exc}") from exc


def _zip_members(file: SourceFile, options: Mapping[str, Any]) -> Iterator[tuple[str, BinaryIO]]:
    with open_zip(file, options) as archive:
        infos = sorted(archive.infolist(), key=lambda info: info.filename)
        for info in infos:
            _check_member(f"{file.relpath}!{info.filename}", info)
        for info in infos:
            if info.is_dir() or info.filename.startswith(_SKIPPED_MEMBERS):
                continue
            label = f"{file.relpath}!{info.filename}"
            try:
                member = archive.open(info)
            except NotImplementedError as exc:
                raise SourceFileError(label, "unsupported_compression", str(exc)) from exc
            with member:
                head, stream = peek(buffered(_Guarded(member, label, info.compress_size, options)))
                if not head:
                    continue  # an empty member holds no records
                yield label, _member_stream(label, head, stream, options)


def open_members(file: SourceFile, options: Mapping[str, Any] | None = None) -> Iterator[tuple[str, BinaryIO]]:
    """The byte streams inside `file` (see the module docstring). A stream is valid until the next
    item is requested. Truncated or corrupt compressed data raises SourceFileError when it is reached."""
    options = options or {}
    try:
        handle = open(file.path, "rb")  # noqa: SIM115  (closed below, after the consumer is done)
    except OSError as exc:
        raise SourceFileError(file.relpath, "unreadable_file", str(exc)) from exc
    with handle:
        head, stream = peek(handle)
        allow_html = bool(options.get("allow_html"))
        check_payload(file.relpath, head, allow_html)
        if is_zip(head):
            yield from _zip_members(file, options)
            return
        if head.startswith(GZIP_MAGIC):
            size = file.path.stat().st_size
            gz = gzip.GzipFile(fileobj=stream, mode="rb")
            head, stream = peek(buffered(_Guarded(gz, file.relpath, size, options)))
            check_payload(file.relpath, head, allow_html)
        if is_tar(head):
            yield from _tar_members(file.relpath, stream, options)
            return
        yield file.relpath, stream


def read_members(files: list[SourceFile], options: Mapping[str, Any],
                 parse: Callable[[str, BinaryIO, Mapping[str, Any]], Iterator[ReadItem]]) -> Iterator[ReadItem]:
    """Run `parse(label, stream, options)` over every member of every file, in order."""
    for file in files:
        for label, stream in open_members(file, options):
            yield from parse(label, stream, options)
