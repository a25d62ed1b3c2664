"""Readers `text` (one str record per line), `text_file` (the whole file as one str record) and
`html` (`text_file` for saved web pages, which other readers refuse as `html_instead_of_data`).

`text`: line terminators (`\\n`, `\\r\\n`, `\\r`) stripped, location `line N` (1-based physical line);
blank lines are skipped unless `options["keep_blank"]` (then they are `""` records).
`text_file`: for block-structured formats a converter splits itself; line endings are normalised to
`\\n` and a UTF-8 BOM is dropped; location `file`. A file larger than `options["max_record_bytes"]`
is a `record_too_long` reject; undecodable bytes are a `bad_encoding` reject at the first bad line.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

from etl.read.base import RawRecord, ReadError, ReadItem, SourceFile, cut, reader
from etl.read.containers import open_members, read_members
from etl.read.encoding import decoded_stream, text_lines

MAX_RECORD_BYTES = 512 * 1024 * 1024  # text_file's bound on one record (options["max_record_bytes"])


def parse_text_lines(label: str, stream: BinaryIO, options: Mapping[str, Any]) -> Iterator[ReadItem]:
    keep_blank = bool(options.get("keep_blank"))
    for item in text_lines(label, stream, options):
        if isinstance(item, ReadError):
            yield item
            continue
        number, text = item
        if keep_blank or text.strip():
            yield RawRecord(label, f"line {number}", text)


def parse_text_file(label: str, stream: BinaryIO, options: Mapping[str, Any]) -> Iterator[ReadItem]:
    limit = int(options.get("max_record_bytes", MAX_RECORD_BYTES))
    encoding, stream = decoded_stream(label, stream, options)
    data = stream.read(limit + 1)
    if len(data) > limit:
        yield ReadError(label, "file", "record_too_long", f"the file is larger than {limit} bytes", cut(data))
        return
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        yield ReadError(label, f"line {line}", "bad_encoding", f"not valid {encoding}: {exc.reason}", cut(data))
        return
    yield RawRecord(label, "file", text.replace("\r\n", "\n").replace("\r", "\n"))


def content_lines(files: list[SourceFile], options: Mapping[str, Any]) -> Iterator[tuple[str, int, str] | ReadError]:
    """Every non-blank line of every file (archive members expanded, encoding detected per member) as
    (label, line number, line), or the ReadError of a line that cannot be decoded: the base of readers
    for line-based custom formats."""
    for file in files:
        for label, stream in open_members(file, options):
            for item in text_lines(label, stream, options):
                if isinstance(item, ReadError):
                    yield item
                elif item[1].strip():
                    yield (label, *item)


@reader("html")
def read_html(files: list[SourceFile], options: dict[str, Any]) -> Iterator[ReadItem]:
    """Saved web pages: like `text_file`, for sources whose data are HTML pages (no HTML refusal)."""
    return read_members(files, {**options, "allow_html": True}, parse_text_file)


@reader("text")
def read_text(files: list[SourceFile], options: dict[str, Any]) -> Iterator[ReadItem]:
    """One str per non-blank line (module docstring)."""
    return read_members(files, options, parse_text_lines)


@reader("text_file")
def read_text_file(files: list[SourceFile], options: dict[str, Any]) -> Iterator[ReadItem]:
    """The whole decoded file as one str (module docstring)."""
    return read_members(files, options, parse_text_file)
