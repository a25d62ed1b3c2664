"""Readers for office documents: `docx` (one str per document) and `xls` (one dict per sheet row).

`docx`: the body in document order, one line per non-empty paragraph and one per table row (cells
joined by a tab, line breaks inside a cell turned into spaces, a merged cell written once); location
`document`. Headers, footers, footnotes and text boxes are not read.
`xls` (legacy BIFF, via xlrd): every sheet in workbook order; the first non-empty row of a sheet is its
header; each later non-empty row is a dict keyed by it, location `sheet S row N` with N counting data
rows from 1. Cells: text as str, whole numbers as int, other numbers as float, dates as ISO strings,
booleans as bool, empty cells as "" and error cells as None. A row with values beyond the header's
width is a `bad_row` reject.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from typing import Any

import docx
import xlrd
from docx.opc.exceptions import PackageNotFoundError
from docx.table import Table
from lxml.etree import XMLSyntaxError

from etl.read.base import RawRecord, ReadError, ReadItem, SourceFile, SourceFileError, cut, reader
from etl.read.containers import OLE_MAGIC, check_payload, open_zip
from etl.read.tabular import check_header


def _head(file: SourceFile) -> bytes:
    try:
        with open(file.path, "rb") as handle:
            head = handle.read(4096)
    except OSError as exc:
        raise SourceFileError(file.relpath, "unreadable_file", str(exc)) from exc
    check_payload(file.relpath, head)
    return head


def _table_lines(table: Table) -> Iterator[str]:
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append(" ".join(cell.text.split("\n")).strip())
        if any(cells):
            yield "\t".join(cells)


def docx_text(file: SourceFile, options: dict[str, Any]) -> str:
    """The text of a .docx file (module docstring)."""
    _head(file)
    open_zip(file, options).close()  # truncation and zip-bomb checks before python-docx inflates parts
    try:
        document = docx.Document(str(file.path))
    except (PackageNotFoundError, KeyError, zipfile.BadZipFile, XMLSyntaxError, ValueError) as exc:
        raise SourceFileError(file.relpath, "bad_docx", f"not a readable Word document: {exc}") from exc
    lines: list[str] = []
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            lines.extend(_table_lines(block))
        elif block.text.strip():
            lines.append(block.text)
    return "\n".join(lines)


@reader("docx")
def read_docx(files: list[SourceFile], options: dict[str, Any]) -> Iterator[ReadItem]:
    """One str per Word document (module docstring)."""
    for file in files:
        yield RawRecord(file.relpath, "document", docx_text(file, options))


def _cell(cell: xlrd.sheet.Cell, datemode: int) -> Any:
    kind, value = cell.ctype, cell.value
    if kind in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK):
        return ""
    if kind == xlrd.XL_CELL_NUMBER:
        return int(value) if float(value).is_integer() else value
    if kind == xlrd.XL_CELL_DATE:
        try:
            return xlrd.xldate_as_datetime(value, datemode).isoformat()
        except (xlrd.xldate.XLDateError, OverflowError):
            return value
    if kind == xlrd.XL_CELL_BOOLEAN:
        return bool(value)
    if kind == xlrd.XL_CELL_ERROR:
        return None
    return value


def _header_name(value: Any) -> str:
    return str(value).strip()


def _sheet_rows(label: str, sheet: xlrd.sheet.Sheet, datemode: int) -> Iterator[ReadItem]:
    header: list[str] | None = None
    number = 0
    for index in range(sheet.nrows):
        values = [_cell(cell, datemode) for cell in sheet.row(index)]
        if all(value in ("", None) for value in values):
            continue
        if header is None:
            names = [_header_name(value) for value in values]
            while names and not names[-1]:
                names.pop()
            header = check_header(label, names)
            continue
        number += 1
        where = f"sheet {sheet.name} row {number}"
        extra = values[len(header):]
        if any(value not in ("", None) for value in extra):
            yield ReadError(label, where, "bad_row", f"{len(values)} cells, the header has {len(header)}",
                            cut("\t".join(str(value) for value in values)))
            continue
        values += [""] * (len(header) - len(values))
        yield RawRecord(label, where, dict(zip(header, values, strict=False)))


@reader("xls")
def read_xls(files: list[SourceFile], options: dict[str, Any]) -> Iterator[ReadItem]:
    """One dict per row of every sheet of legacy Excel workbooks (module docstring)."""
    for file in files:
        if not _head(file).startswith(OLE_MAGIC):
            raise SourceFileError(file.relpath, "bad_xls", "not a legacy Excel (OLE2) workbook")
        try:
            book = xlrd.open_workbook(str(file.path), on_demand=True)
        except (xlrd.XLRDError, xlrd.compdoc.CompDocError, AssertionError, IndexError, ValueError) as exc:
            raise SourceFileError(file.relpath, "bad_xls", f"not a readable workbook: {exc}") from exc
        try:
            for sheet_index in range(book.nsheets):
                yield from _sheet_rows(file.relpath, book.sheet_by_index(sheet_index), book.datemode)
                book.unload_sheet(sheet_index)
        finally:
            book.release_resources()
