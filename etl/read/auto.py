"""Reader `auto`: pick a reader per file (and per archive member) from its bytes, never its name.

Sniffing rules, first match wins:

1. Not data at all (empty, Git LFS pointer, HTML page): SourceFileError, as every reader does.
2. A zip holding `word/document.xml`: `docx`. Holding `xl/workbook.xml`: SourceFileError
   `unsupported_format` (xlsx has no reader yet). Any other zip: each member, in name order, by rule 4.
3. The OLE2 magic (`D0 CF 11 E0`): `xls`.
4. gzip: the decompressed data by rule 5; a plain file likewise; a tar (plain or gzipped): each member,
   in archive order, by rule 5.
5. For each data stream (plain file, gzip content, zip member):
   a. an archive or OLE magic inside: SourceFileError `nested_archive`;
   b. first non-blank character `[` or `{` (after a BOM): `json`;
   c. `options["delimiter"]` or `options["header"]` set: `csv` with that delimiter (default: tab if
      the first line has one, else comma);
   d. the first lines parse as a table of at least two columns with the same width throughout
      and header-like names (unique, non-empty, at most 64 characters and 4 words, no sentence
      punctuation): `tsv` if tab-separated, else `csv`;
   e. otherwise: `text`, one record per line.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

from etl.read.base import ReadItem, SourceFile, SourceFileError, reader
from etl.read.containers import (
    OLE_MAGIC,
    check_payload,
    is_archive,
    is_zip,
    open_members,
    open_zip,
)
from etl.read.encoding import ENCODING_SAMPLE, detect_encoding
from etl.read.jsonfamily import parse_json
from etl.read.office import read_docx, read_xls
from etl.read.streams import SNIFF_BYTES, peek
from etl.read.tabular import parse_table
from etl.read.text import parse_text_lines

_TABLE_SNIFF_ROWS = 6
_MAX_HEADER_NAME = 64
_MAX_HEADER_WORDS = 4
_SENTENCE_MARKS = (". ", "。", "？", "?", "！", "!", "：", "，")


def _file_kind(file: SourceFile, options: Mapping[str, Any]) -> str:
    """`docx`, `xls` or `data` for a file on disk (rules 1-3)."""
    try:
        with open(file.path, "rb") as handle:
            head = handle.read(4096)
    except OSError as exc:
        raise SourceFileError(file.relpath, "unreadable_file", str(exc)) from exc
    check_payload(file.relpath, head, bool(options.get("allow_html")))
    if head.startswith(OLE_MAGIC):
        return "xls"
    if is_zip(head):
        with open_zip(file, options) as archive:
            names = set(archive.namelist())
        if "word/document.xml" in names:
            return "docx"
        if "xl/workbook.xml" in names:
            raise SourceFileError(file.relpath, "unsupported_format", "xlsx workbooks have no reader")
    return "data"


def _header_like(name: str) -> bool:
    """A column name, not a piece of prose: short, few words, no sentence punctuation."""
    return (0 < len(name) <= _MAX_HEADER_NAME and len(name.split()) <= _MAX_HEADER_WORDS
            and not any(mark in name for mark in _SENTENCE_MARKS))


def table_delimiter(text: str, complete: bool) -> str | None:
    """The delimiter if the start of a decoded file looks like a header and rows (rule 5d)."""
    lines = text.splitlines(keepends=True)
    if not complete:
        lines = lines[:-1]  # may be cut
    first = next((line for line in lines if line.strip()), "")
    delimiter = "\t" if "\t" in first else ","
    try:
        rows = [row for row in csv.reader(lines, delimiter=delimiter) if row]
    except csv.Error:
        return None
    if not complete:
        rows = rows[:-1]  # a quoted field may go on past the head
    rows = rows[:_TABLE_SNIFF_ROWS]
    if len(rows) < 2:
        return None
    header = [name.strip() for name in rows[0]]
    if len(header) < 2 or len(set(header)) != len(header) or not all(map(_header_like, header)):
        return None
    return delimiter if all(len(row) == len(header) for row in rows) else None


def parse_auto(label: str, stream: BinaryIO, options: Mapping[str, Any]) -> Iterator[ReadItem]:
    """Records of one data stream, its format sniffed (rule 5)."""
    head, stream = peek(stream)
    if is_archive(head):
        raise SourceFileError(label, "nested_archive", "an archive inside an archive")
    if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"[", b"{"):
        return parse_json(label, stream, options)
    try:
        encoding = detect_encoding(head[:ENCODING_SAMPLE], options.get("encoding"))
    except LookupError as exc:
        raise SourceFileError(label, "unknown_encoding", str(exc)) from exc
    text = head.decode(encoding, errors="replace").lstrip("\ufeff")
    if options.get("delimiter") or options.get("header"):
        first = text.split("\n", 1)[0]
        return parse_table(label, stream, options, "\t" if "\t" in first else ",")
    delimiter = table_delimiter(text, len(head) < SNIFF_BYTES)
    if delimiter is not None:
        return parse_table(label, stream, options, delimiter)
    return parse_text_lines(label, stream, options)


@reader("auto")
def read_auto(files: list[SourceFile], options: dict[str, Any]) -> Iterator[ReadItem]:
    """Any supported format, sniffed per file and per archive member (module docstring)."""
    for file in files:
        kind = _file_kind(file, options)
        if kind == "docx":
            yield from read_docx([file], options)
        elif kind == "xls":
            yield from read_xls([file], options)
        else:
            for label, stream in open_members(file, options):
                yield from parse_auto(label, stream, options)
