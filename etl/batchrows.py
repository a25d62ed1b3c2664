"""The column-wise counterpart of `RowBuilder` for converters with a column-wise twin (DESIGN §3, issue: column-wise
conversion): a batch of records already shaped into flat columns (turn roles and contents, or texts)
is checked with Arrow kernels, hashed in one tight loop and turned into an Arrow table of output rows.

It never decides a reject itself. A record that any check flags goes back to the per-record path
(converter function + `RowBuilder.build`), which names the reason; a record that passes every check
here is one that the per-record path would accept, with the same id, columns and values. The checks
below mirror etl/rows.py rule for rule:

* sft: an optional leading system turn, then user/assistant alternating from user, ending with the
  assistant, at least one user turn; every turn's content visible (`rows.has_content`);
* pretrain: the text visible;
* the JSON Schema (schemas/<task>.json) holds for rows built this way: roles, non-empty visible
  contents and at least two turns follow from the checks above, and the columns that do not vary by
  record (source, license, split, lang) are validated once per batch on one probe row per split.
"""

from __future__ import annotations

from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from etl.catalog import Source
from etl.convert.base import Shaped
from etl.rows import hash_text
from etl.schemas import arrow_schema, schema_problem

TURN_TYPE: pa.StructType = arrow_schema("sft").field("messages").type.value_type
ROLE_CODES = {"system": 0, "user": 1, "assistant": 2}
_ROLE_NAMES = np.array(list(ROLE_CODES), dtype=object)

# `rows.has_content` for RE2: a character that is neither white space in Python's sense (`\s` on str,
# which is Unicode-wide, unlike RE2's ASCII `\s`) nor a C0/C1 control character.
# tests/test_convert_columnar.py checks it against `has_content` for every code point.
VISIBLE_RE2 = (r"[^\x{0}-\x{20}\x{7f}-\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]")


def visible(strings: pa.Array) -> np.ndarray:
    """`has_content` of every string, as a boolean array."""
    return pc.match_substring_regex(strings, VISIBLE_RE2).to_numpy(zero_copy_only=False)


def _role_order_ok(codes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per record: the turn roles follow `rows._check_sft`'s order."""
    n = len(offsets) - 1
    lengths = np.diff(offsets)
    if n == 0:
        return np.zeros(0, dtype=bool)
    record = np.repeat(np.arange(n), lengths)
    position = np.arange(len(codes)) - offsets[:-1][record]
    first = np.zeros(n, dtype=np.int64) - 1
    nonempty = lengths > 0
    first[nonempty] = codes[offsets[:-1][nonempty]]
    has_system = first == 0
    body = position - has_system[record]
    expected = np.where(body % 2 == 0, 1, 2)
    bad_turn = (codes != expected) & ~((position == 0) & (codes == 0))
    bad = np.bincount(record[bad_turn], minlength=n) > 0
    body_len = lengths - has_system
    last = np.full(n, -1)
    last[nonempty] = codes[offsets[1:][nonempty] - 1]
    return ~bad & (body_len > 0) & (last == 2)


@dataclass
class Checked:
    """The records of a `Shaped` batch that passed every check, with their content hashes."""

    ok: list[bool]              # per input record: still ok after the checks
    digests: list[str]          # per ok record (in `Shaped` order, failed ones included as "")
    columns: dict[str, pa.Array]  # the payload columns over the `Shaped` ok records


def check(task: str, shaped: Shaped) -> Checked:
    """Run the row checks column-wise; records that fail are marked not ok (see the module docstring)."""
    count = sum(shaped.ok)
    try:
        if task == "sft":
            offsets = np.zeros(count + 1, dtype=np.int64)
            np.cumsum(shaped.lengths, out=offsets[1:])
            codes = np.array([ROLE_CODES.get(r, -1) for r in shaped.roles], dtype=np.int64)
            contents = pa.array(shaped.contents, pa.string())
            turn_ok = visible(contents) & (codes >= 0)
            record_of_turn = np.repeat(np.arange(count), shaped.lengths)
            bad_turns = np.bincount(record_of_turn[~turn_ok], minlength=count) > 0
            good = _role_order_ok(codes, offsets) & ~bad_turns
            roles = pa.array(_ROLE_NAMES[np.clip(codes, 0, 2)] if len(codes) else [], pa.string())
            calls = pa.nulls(len(codes), TURN_TYPE.field("tool_calls").type)
            struct = pa.StructArray.from_arrays([roles, contents, calls], fields=list(TURN_TYPE))
            columns = {"messages": pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), struct)}
            canon = _canonical_messages(shaped, good)
        elif task == "pretrain":
            texts = pa.array(shaped.texts, pa.string())
            good = visible(texts)
            columns = {"text": texts}
            canon = ['{"text":' + encode_basestring(t) + "}" if g else "" for t, g in zip(shaped.texts, good, strict=True)]
        else:
            raise ValueError(f"no column-wise rows for task {task!r}")
    except UnicodeEncodeError:  # a lone surrogate somewhere: let the per-record path name it
        return Checked([False] * len(shaped.ok), [], {})
    digests = [hash_text(c) if c else "" for c in canon]
    ok = list(shaped.ok)
    position = 0
    for index, is_ok in enumerate(shaped.ok):
        if is_ok:
            if not good[position]:
                ok[index] = False
            position += 1
    return Checked(ok, digests, columns)


def _canonical_messages(shaped: Shaped, good: np.ndarray) -> list[str]:
    """`rows.canonical_json` of each good record's `{messages}` payload ("" for the others)."""
    out: list[str] = []
    start = 0
    roles, contents = shaped.roles, shaped.contents
    for length, is_good in zip(shaped.lengths, good, strict=True):
        end = start + length
        if is_good:
            out.append('{"messages":[' + ",".join(
                '{"content":' + encode_basestring(contents[i]) + ',"role":"' + roles[i] + '"}'
                for i in range(start, end)) + "]}")
        else:
            out.append("")
        start = end
    return out


def rows_table(source: Source, columns: dict[str, pa.Array], keep: np.ndarray, ids: list[str],
               splits: list[str], metas: list[str]) -> pa.Table:
    """Output rows for the `keep` subset of a checked batch (`ids`, `splits`, `metas`: for those rows)."""
    schema = arrow_schema(source.task)
    n = len(ids)
    mask = pa.array(keep, pa.bool_())
    arrays: dict[str, Any] = {
        "id": pa.array(ids, pa.string()),
        "source": pa.array([source.id] * n, pa.string()),
        "split": pa.array(splits, pa.string()),
        "lang": pa.array(["und"] * n, pa.string()),
        "lang_score": pa.array(np.zeros(n, dtype=np.float32), pa.float32()),
        "license": pa.array([source.license] * n, pa.string()),
        "dup_count": pa.array(np.ones(n, dtype=np.int32), pa.int32()),
        "meta": pa.array(metas, pa.string()),
    }
    for name, array in columns.items():
        arrays[name] = array.filter(mask)
    if "tools" in schema.names:  # column-wise twins make plain rows: no tools, no tool calls
        arrays["tools"] = pa.nulls(n, schema.field("tools").type)
    return pa.Table.from_arrays([arrays[f.name].cast(f.type) for f in schema], schema=schema)


def constants_problem(source: Source, task: str, split: str, sample: dict[str, Any]) -> str | None:
    """The schema problem a row of this batch would have in its non-varying columns (one probe row)."""
    probe = {"id": f"{source.id}/probe", "source": source.id, "split": split, **sample, "lang": "und",
             "lang_score": 0.0, "license": source.license, "dup_count": 1, "meta": "{}"}
    if "tools" in arrow_schema(task).names:  # twins make plain rows: no tool schemas
        probe["tools"] = None
    return schema_problem(task, probe)
