"""Readers `csv` and `tsv`: one dict per data row, keyed by the header.

The header is the first non-blank row, names stripped of whitespace; `options["header"]` (a list)
names the columns of a file that has no header row. `options["delimiter"]` overrides `,` / tab and
`options["quoting"] = "none"` turns off quote handling. Quoted fields may hold delimiters, quotes and
newlines (CRLF or bare LF): the csv module sees the decoded physical lines with their terminators.
Locations are `row N`, N counting data rows from 1. A row with the wrong number of fields, or with a
field longer than `options["max_field_bytes"]` (default 64 MiB), is a `bad_csv_row` reject; a row whose bytes are not valid in the file's encoding is a `bad_encoding`
reject (decoded with replacement only to keep the CSV parser in step).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

from etl.read.base import RAW_LIMIT, RawRecord, ReadError, ReadItem, SourceFile, SourceFileError, cut, reader
from etl.read.containers import read_members
from etl.read.encoding import decoded_stream
from etl.read.streams import MAX_LINE_BYTES, iter_lines

FIELD_LIMIT = MAX_LINE_BYTES  # characters one CSV field may hold (options["max_field_bytes"])


def field_limit(options: Mapping[str, Any]) -> int:
    return int(options.get("max_field_bytes", FIELD_LIMIT))


def next_row(rows: Iterator[list[str]], limit: int) -> list[str] | csv.Error | None:
    """The next row of a csv reader, a `csv.Error` for a row that cannot be parsed (the reader goes on with
    the next one), or None at the end. The csv module keeps its field limit in process-global state, which
    any other reader may have changed (its default is 128 KiB): it is set here, for every row, so a row's
    fate never depends on what ran before it."""
    csv.field_size_limit(limit)
    try:
        return next(rows)
    except StopIteration:
        return None
    except csv.Error as exc:
        return exc


class _LineFeed:
    """Decoded physical lines for csv.reader, keeping aside what the reader cannot see: the raw text
    of the current row (cut), its undecodable lines, and lines too long to hold."""

    def __init__(self, label: str, encoding: str, stream: BinaryIO, max_bytes: int) -> None:
        self._lines = iter_lines(stream, max_bytes)
        self._label = label
        self._encoding = encoding
        self.raw: list[str] = []
        self.raw_size = 0
        self.bad_lines: list[int] = []
        self.errors: list[ReadError] = []

    def __iter__(self) -> Iterator[str]:
        for line in self._lines:
            if line.too_long:
                self.errors.append(ReadError(self._label, f"line {line.number}", "line_too_long",
                                             "line longer than the reader's bound", cut(line.data)))
                continue
            try:
                text = line.data.decode(self._encoding)
            except UnicodeDecodeError:
                text = line.data.decode(self._encoding, errors="replace")
                self.bad_lines.append(line.number)
            if self.raw_size < RAW_LIMIT:
                self.raw.append(text)
                self.raw_size += len(text)
            yield text

    def take_row(self) -> tuple[list[str], list[int]]:
        """The raw lines (cut) and bad line numbers of the row just parsed; resets both."""
        taken = self.raw, self.bad_lines
        self.raw, self.raw_size, self.bad_lines = [], 0, []
        return taken


def _blank(row: list[str]) -> bool:
    return not row or (len(row) == 1 and not row[0].strip())


def check_header(label: str, names: list[str]) -> list[str]:
    """Column names stripped of whitespace; duplicates would silently drop a column, so they fail the file."""
    header = [name.strip() for name in names]
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise SourceFileError(label, "bad_header", f"duplicate column names: {duplicates}")
    return header


def parse_table(label: str, stream: BinaryIO, options: Mapping[str, Any], delimiter: str) -> Iterator[ReadItem]:
    """Rows of one (decompressed) delimited-text stream; see the module docstring."""
    max_bytes = int(options.get("max_line_bytes", MAX_LINE_BYTES))
    limit = field_limit(options)
    encoding, stream = decoded_stream(label, stream, options)
    feed = _LineFeed(label, encoding, stream, max_bytes)
    quoting = csv.QUOTE_NONE if options.get("quoting") == "none" else csv.QUOTE_MINIMAL
    rows = csv.reader(feed, delimiter=options.get("delimiter", delimiter), quoting=quoting, strict=False)
    header = check_header(label, list(options["header"])) if options.get("header") else None
    number = 0
    while True:
        parsed = next_row(rows, limit)
        if parsed is None:
            break
        row, failure = ([], str(parsed)) if isinstance(parsed, csv.Error) else (parsed, None)
        if feed.errors:
            yield from feed.errors
            feed.errors.clear()
        raw_lines, bad_lines = feed.take_row()
        if failure is None and _blank(row):
            continue
        if header is None:
            if failure is not None or bad_lines:
                raise SourceFileError(label, "bad_header", failure or f"header not valid {encoding}")
            header = check_header(label, row)
            continue
        number += 1
        where = f"row {number}"
        if not bad_lines and failure is None and len(row) == len(header):
            yield RawRecord(label, where, dict(zip(header, row, strict=True)))
            continue
        raw = cut("".join(raw_lines))
        if bad_lines:
            yield ReadError(label, where, "bad_encoding", f"not valid {encoding} on line(s) {bad_lines}", raw)
        elif failure is not None:
            yield ReadError(label, where, "bad_csv_row", failure, raw)
        else:
            yield ReadError(label, where, "bad_csv_row", f"{len(row)} fields, the header has {len(header)}", raw)


@reader("csv")
def read_csv(files: list[SourceFile], options: dict[str, Any]) -> Iterator[ReadItem]:
    """Comma-separated rows as dicts keyed by the header (module docstring)."""
    return read_members(files, options, lambda label, stream, opts: parse_table(label, stream, opts, ","))


@reader("tsv")
def read_tsv(files: list[SourceFile], options: dict[str, Any]) -> Iterator[ReadItem]:
    """Tab-separated rows as dicts keyed by the header (module docstring)."""
    return read_members(files, options, lambda label, stream, opts: parse_table(label, stream, opts, "\t"))
