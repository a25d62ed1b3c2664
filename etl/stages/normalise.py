"""normalise: clean the stored text and add the matching key every later stage compares on."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from etl.stages.base import Stage
from etl.stages.text import combined, row_text_series, text_columns
from etl.textnorm import clean_texts, match_keys


def _clean_strings(column: pa.Array) -> pa.Array:
    return clean_texts(pl.from_arrow(column)).to_arrow().cast(column.type)  # type: ignore[arg-type]


def _clean_turns(column: pa.Array) -> pa.Array:
    """list<struct<role, content>> with every content cleaned, offsets and roles untouched."""
    offsets = pc.subtract(column.offsets, column.offsets[0])
    turns = column.flatten()
    children = turns.flatten()
    fields = list(turns.type)
    cleaned = [_clean_strings(child) if field.name == "content" else child
               for field, child in zip(fields, children, strict=True)]
    values = pa.StructArray.from_arrays(cleaned, fields=fields)
    mask = column.is_null() if column.null_count else None
    return pa.ListArray.from_arrays(offsets, values, type=column.type, mask=mask)



class Normalise(Stage):
    """Reads the task's text columns; writes them cleaned (control characters, stray HTML entities,
    surrounding whitespace) plus `_key` (the matching key of the whole row, textnorm.match_keys) and
    `_len` (characters of the cleaned row text: the "longest content" of the survivor rule)."""

    name = "normalise"

    def __init__(self, task: str) -> None:
        self.task = task
        self.reads = tuple(text_columns(task))
        self.writes = (*self.reads, "_key", "_len")

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        for column_name in self.reads:
            index = batch.schema.get_field_index(column_name)
            column = combined(batch.column(index))
            cleaned = _clean_turns(column) if pa.types.is_list(column.type) else _clean_strings(column)
            batch = batch.set_column(index, column_name, cleaned)
        texts = row_text_series(batch, self.task)
        keys = match_keys(texts).to_arrow().cast(pa.string())
        lengths = texts.str.len_chars().cast(pl.Int32).to_arrow()
        for column_name, values in (("_key", keys), ("_len", lengths)):
            index = batch.schema.get_field_index(column_name)
            if index >= 0:
                batch = batch.set_column(index, column_name, values)
            else:
                batch = batch.append_column(column_name, values)
        return batch
