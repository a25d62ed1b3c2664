"""Wrong-shape records: a file whose records are of another format than the catalogue says.

A ShareGPT file catalogued as alpaca used to be rejected record by record as `empty_instruction`, and a
one-column table read as plain text turned its header line into a pretraining row. Both are one
mistake in the catalogue entry, not many bad records, so they get one reason, `schema_mismatch`, whose
message names the keys found and the keys the format expects. The message is the same for every
record of the same shape, so `mismatch_by_file` can report the mistake once per file (the build puts it
in the source's counts as `schema_mismatch_files`, and the summary prints one line per file); every
record still has its rejects row, so nothing vanishes.

A record is of the wrong shape when it holds none of the keys its format reads; a record that has some
of them but misses one is a bad record (`missing_field`), not a wrong shape.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from etl.convert.base import RecordContext, Reject
from etl.convert.fieldtools import require_mapping

SCHEMA_MISMATCH = "schema_mismatch"
_SHOWN_KEYS = 12
# A column name alone on the first line of a plain-text file (`input`, `text`, `question_id`).
_HEADER_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")


def _keys(keys: Iterable[str]) -> str:
    names = sorted(keys)
    shown = ", ".join(names[:_SHOWN_KEYS])
    return f"[{shown}{', …' if len(names) > _SHOWN_KEYS else ''}]"


def require_shape(record: Any, ctx: RecordContext, expected: Iterable[str]) -> dict[str, Any]:
    """`record` as a mapping, or `schema_mismatch` when it holds none of the `expected` upstream keys
    (already mapped through the source's `fields:`)."""
    record = require_mapping(record)
    wanted = [key for key in dict.fromkeys(expected) if key]
    if wanted and not any(key in record for key in wanted):
        raise Reject(SCHEMA_MISMATCH, f"keys found {_keys(record)}; format {ctx.source.format} "
                                      f"expects {_keys(wanted)} (check format:, fields: and reader:)")
    return record


def may_be_header_line(line: str) -> bool:
    """Whether `line` would be a column name if it stood on line 1 (the column-wise text path sends such
    lines through the per-record converter, which knows the location)."""
    return _HEADER_WORD.match(line.strip()) is not None


def reject_header_line(line: str, ctx: RecordContext) -> None:
    """The first line of a plain-text file that is a bare column name means the file is a table."""
    if ctx.location == "line 1" and may_be_header_line(line):
        raise Reject(SCHEMA_MISMATCH, f"line 1 is a column name {line.strip()!r}, not text: the file is a "
                                      f"one-column table (reader: csv, fields: {{text: {line.strip()}}})")


def mismatch_by_file(rejects_path: Path) -> dict[str, dict[str, Any]]:
    """`{file: {records, message}}` for the `schema_mismatch` rejects of one converted source (the first
    message of each file), in file order; `{}` when there are none."""
    table = pq.read_table(rejects_path, columns=["file", "reason", "message"])
    table = table.filter(pc.equal(table["reason"], SCHEMA_MISMATCH))
    if not table.num_rows:
        return {}
    grouped = table.group_by("file", use_threads=False).aggregate([("message", "first"), ("message", "count")])
    return {file: {"records": count, "message": message} for file, message, count in sorted(zip(
        grouped["file"].to_pylist(), grouped["message_first"].to_pylist(), grouped["message_count"].to_pylist(),
        strict=True))}
