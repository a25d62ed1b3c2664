"""The text of a row that matching works on: the whole document or conversation, per task."""

from __future__ import annotations

import polars as pl
import pyarrow as pa

SEPARATOR = "\n"


def row_texts(batch: pa.RecordBatch | pa.Table, task: str) -> list[str]:
    """One string per row: pretrain `text`; sft every turn's content; reward the prompt turns, then
    the chosen and the rejected reply (each a one-message list). SFT/reward keys thus cover whole
    conversations (issue 5): one question with two different answers is two different texts."""
    if task == "pretrain":
        return batch.column("text").to_pylist()
    if task == "sft":
        return [SEPARATOR.join(t["content"] for t in turns) for turns in batch.column("messages").to_pylist()]
    if task == "reward":
        prompts = batch.column("prompt").to_pylist()
        chosen = batch.column("chosen").to_pylist()
        rejected = batch.column("rejected").to_pylist()
        return [SEPARATOR.join(t["content"] for t in [*p, *c, *r]) for p, c, r in zip(prompts, chosen, rejected, strict=True)]
    raise ValueError(f"unknown task {task!r}")


def text_columns(task: str) -> list[str]:
    return {"pretrain": ["text"], "sft": ["messages"], "reward": ["prompt", "chosen", "rejected"]}[task]


def prompt_texts(batch: pa.RecordBatch | pa.Table, task: str) -> list[str]:
    """The asking side of each row, which is what a benchmark item is recognised by: pretrain `text`;
    sft user turns; reward prompt user turns."""
    if task == "pretrain":
        return batch.column("text").to_pylist()
    column = "messages" if task == "sft" else "prompt"
    if task not in ("sft", "reward"):
        raise ValueError(f"unknown task {task!r}")
    return [SEPARATOR.join(t["content"] for t in turns if t["role"] == "user")
            for turns in batch.column(column).to_pylist()]


def dialogue_texts(batch: pa.RecordBatch | pa.Table, task: str) -> pl.Series:
    """What a row's language is judged on: user and assistant text, no system prompt (issue 5); for
    reward the prompt's user/assistant turns and the chosen reply. Computed in polars."""
    if task == "pretrain":
        return column_text(batch.column("text"))
    if task not in ("sft", "reward"):
        raise ValueError(f"unknown task {task!r}")
    columns = ["messages"] if task == "sft" else ["prompt", "chosen"]
    turns = pl.DataFrame([_series(batch.column(name)).alias(name) for name in columns])
    joined = turns.select(pl.concat_list(columns).alias("turns")).to_series()
    content = pl.element().struct.field("content").filter(pl.element().struct.field("role") != "system")
    return joined.list.eval(content).list.join(SEPARATOR).fill_null("")


def _series(column: pa.Array | pa.ChunkedArray) -> pl.Series:
    return pl.Series(column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column)


def column_text(column: pa.Array | pa.ChunkedArray, role: str | None = None) -> pl.Series:
    """One string per row, in polars: a string column as it is; a list of turns (list<struct<...,
    content, ...>>) as its contents joined by SEPARATOR, only the turns of `role` when given."""
    series = pl.Series(column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column)
    if series.dtype == pl.String:
        return series.fill_null("")
    content = pl.element().struct.field("content")
    picked = content if role is None else content.filter(pl.element().struct.field("role") == role)
    return series.list.eval(picked).list.join(SEPARATOR).fill_null("")


def row_text_series(batch: pa.RecordBatch | pa.Table, task: str) -> pl.Series:
    """`row_texts` in polars, without a trip through Python objects (normalise, redact, decontaminate);
    either shape of reward `chosen`/`rejected` (a string or a list of turns)."""
    if task not in ("pretrain", "sft", "reward"):
        raise ValueError(f"unknown task {task!r}")
    parts = [column_text(batch.column(name)).alias(name) for name in text_columns(task)]
    if len(parts) == 1:
        return parts[0]
    return pl.DataFrame(parts).select(pl.concat_str(pl.all(), separator=SEPARATOR)).to_series()


def side_text_series(batch: pa.RecordBatch | pa.Table, task: str) -> tuple[pl.Series, pl.Series]:
    """The two sides near-dedup compares separately (DESIGN §5): sft prompt = every non-assistant
    turn, response = every assistant turn; reward prompt = the prompt turns, response = chosen and
    rejected. Each side's contents joined by SEPARATOR."""
    if task == "sft":
        turns = pl.Series(batch.column("messages").combine_chunks()
                          if isinstance(batch.column("messages"), pa.ChunkedArray) else batch.column("messages"))

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
