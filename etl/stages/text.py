"""The text of a row that matching works on: the whole document or conversation, per task.

A turn's text is its `content`; a turn that calls tools (a non-empty `tool_calls`) adds one line
`name(arguments)` per call, in call order, after its content (an empty content is left out, so a
call-only turn is just its call lines). Two conversations that differ only in the tool called or its
arguments thus get different texts, and so different matching keys and shingles, and decontamination
sees the arguments. Plain turns (tool_calls null, empty, not a list, or no such field) are their content alone.
The Python helpers (`row_texts`, `prompt_texts`) and the polars ones (`column_text`, `row_text_series`,
`side_text_series`) give the same strings.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

SEPARATOR = "\n"


def call_line(name: str, arguments: str) -> str:
    """How one tool call reads in a turn's text."""
    return f"{name}({arguments})"


def turn_text(turn: dict[str, Any]) -> str:
    """A turn's text (the module docstring): its content, then one `call_line` per tool call."""
    calls = turn.get("tool_calls")
    if not calls or not isinstance(calls, list):     # like text_turns: only a list of calls counts
        return turn["content"]
    lines = [call_line(c["function"]["name"], c["function"]["arguments"]) for c in calls]
    return SEPARATOR.join([turn["content"], *lines] if turn["content"] else lines)


def row_texts(batch: pa.RecordBatch | pa.Table, task: str) -> list[str]:
    """One string per row: pretrain `text`; sft every turn's text (turn_text); reward the prompt turns,
    then the chosen and the rejected reply (each a one-message list). SFT/reward keys thus cover whole
    conversations (issue 5): one question with two different answers is two different texts."""
    if task == "pretrain":
        return batch.column("text").to_pylist()
    if task == "sft":
        return [SEPARATOR.join(map(turn_text, turns)) for turns in batch.column("messages").to_pylist()]
    if task == "reward":
        prompts = batch.column("prompt").to_pylist()
        chosen = batch.column("chosen").to_pylist()
        rejected = batch.column("rejected").to_pylist()
        return [SEPARATOR.join(map(turn_text, [*p, *c, *r])) for p, c, r in zip(prompts, chosen, rejected, strict=True)]
    raise ValueError(f"unknown task {task!r}")


def text_columns(task: str) -> list[str]:
    return {"pretrain": ["text"], "sft": ["messages"], "reward": ["prompt", "chosen", "rejected"]}[task]


def prompt_texts(batch: pa.RecordBatch | pa.Table, task: str) -> list[str]:
    """The asking side of each row, which is what a benchmark item is recognised by: pretrain `text`;
    sft user turns; reward prompt user turns (each turn's turn_text)."""
    if task == "pretrain":
        return batch.column("text").to_pylist()
    column = "messages" if task == "sft" else "prompt"
    if task not in ("sft", "reward"):
        raise ValueError(f"unknown task {task!r}")
    return [SEPARATOR.join(turn_text(t) for t in turns if t["role"] == "user")
            for turns in batch.column(column).to_pylist()]


def dialogue_texts(batch: pa.RecordBatch | pa.Table, task: str) -> pl.Series:
    """What a row's language is judged on: user and assistant text, no system prompt (issue 5); for
    reward the prompt's user/assistant turns and the chosen reply. Computed in polars."""
    if task == "pretrain":
        return column_text(batch.column("text"))
    if task not in ("sft", "reward"):
        raise ValueError(f"unknown task {task!r}")
    columns = ["messages"] if task == "sft" else ["prompt", "chosen"]
    # each column's contents first: concatenating lists of strings is far cheaper than lists of turns
    content = pl.element().filter(pl.element().struct.field("role") != "system").struct.field("content")
    said = pl.DataFrame([pl.Series(name, combined(batch.column(name))).list.eval(content) for name in columns])
    return said.select(pl.concat_list(columns)).to_series().list.join(SEPARATOR).fill_null("")


def combined(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array of a column (a table's columns come chunked)."""
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _values(column: pa.Array) -> pa.Array:
    """The elements a list array's rows span (its values after any slicing offset), in offset order."""
    start, end = column.offsets[0].as_py(), column.offsets[-1].as_py()
    return column.values.slice(start, end - start)


def _list_of(column: pa.Array, values: pa.Array) -> pa.Array:
    """`values` (one per element of `column`) regrouped into `column`'s rows, nulls kept."""
    offsets = pc.subtract(column.offsets, column.offsets[0])
    return type(column).from_arrays(offsets, values, mask=column.is_null() if column.null_count else None)


def text_turns(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A list of turns with each turn's `content` replaced by its text (the module docstring), as
    list<struct<role, content>>; vectorised: the turns and their calls are flattened, each call's
    line and each turn's text computed over the flat arrays, and the rows rebuilt with the same
    offsets. A column whose turns carry no list of calls, or no call at all, is returned as it is."""
    column = combined(column)
    turn_type = column.type.value_type
    if not pa.types.is_struct(turn_type) or turn_type.get_field_index("tool_calls") < 0:
        return column
    turns = _values(column)
    children = dict(zip([f.name for f in turn_type], turns.flatten(), strict=True))
    calls = children["tool_calls"]
    if not (pa.types.is_list(calls.type) or pa.types.is_large_list(calls.type)) \
            or calls.offsets[-1].as_py() == calls.offsets[0].as_py():
        return column
    function = _values(calls).flatten()[calls.type.value_type.get_field_index("function")]
    fields = dict(zip([f.name for f in function.type], function.flatten(), strict=True))
    lines = pc.binary_join_element_wise(fields["name"], "(", fields["arguments"], ")", "")
    joined = pc.binary_join(_list_of(calls, lines), SEPARATOR)        # null where a turn has no calls
    calling = pc.fill_null(pc.not_equal(joined, ""), False)
    content = children["content"]
    at = pc.indices_nonzero(calling)
    said, called = content.take(at), joined.take(at).cast(content.type)
    text = pc.if_else(pc.equal(said, ""), called, pc.binary_join_element_wise(said, called, SEPARATOR))
    values = pa.StructArray.from_arrays([children["role"], pc.replace_with_mask(content, calling, text)],
                                        names=["role", "content"], mask=turns.is_null() if turns.null_count else None)
    return _list_of(column, values)


def column_text(column: pa.Array | pa.ChunkedArray, role: str | None = None, calls: bool = True) -> pl.Series:
    """One string per row, in polars: a string column as it is; a list of turns (list<struct<...,
    content, ...>>) as its turns' texts joined by SEPARATOR (with `calls=False` their contents alone,
    tool calls left out), only the turns of `role` when given."""
    column = combined(column)
    series = pl.Series(text_turns(column) if calls and not pa.types.is_string(column.type) else column)
    if series.dtype == pl.String:
        return series.fill_null("")
    content = pl.element().struct.field("content")
    picked = content if role is None else content.filter(pl.element().struct.field("role") == role)
    return series.list.eval(picked).list.join(SEPARATOR).fill_null("")


def row_text_series(batch: pa.RecordBatch | pa.Table, task: str, calls: bool = True) -> pl.Series:
    """`row_texts` in polars, without a trip through Python objects (normalise, redact, decontaminate);
    either shape of reward `chosen`/`rejected` (a string or a list of turns). `calls=False`: the
    contents alone (column_text)."""
    if task not in ("pretrain", "sft", "reward"):
        raise ValueError(f"unknown task {task!r}")
    parts = [column_text(batch.column(name), calls=calls).alias(name) for name in text_columns(task)]
    if len(parts) == 1:
        return parts[0]
    return pl.DataFrame(parts).select(pl.concat_str(pl.all(), separator=SEPARATOR)).to_series()


def side_text_series(batch: pa.RecordBatch | pa.Table, task: str) -> tuple[pl.Series, pl.Series]:
    """The two sides near-dedup compares separately (DESIGN §5): sft prompt = every non-assistant
    turn, response = every assistant turn; reward prompt = the prompt turns, response = chosen and
    rejected. Each side's turn texts joined by SEPARATOR."""
    if task == "sft":
        turns = pl.Series(text_turns(batch.column("messages")))

        def side(assistant: bool) -> pl.Series:
            is_assistant = pl.element().struct.field("role") == "assistant"
            return turns.list.eval(pl.element().filter(is_assistant if assistant else ~is_assistant)
                                   .struct.field("content")).list.join(SEPARATOR)

        return side(False), side(True)
    if task == "reward":
        response = pl.DataFrame([column_text(batch.column(n)).alias(n) for n in ("chosen", "rejected")])
        return (column_text(batch.column("prompt")),
                response.select(pl.concat_str(pl.all(), separator=SEPARATOR)).to_series())
    raise ValueError(f"task {task!r} has no prompt/response sides")
