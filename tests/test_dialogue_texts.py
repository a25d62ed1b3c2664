"""text.dialogue_texts against the definition it replaced (the turns concatenated, then their contents
filtered; kept here as it was written) on rows of every shape: system turns, empty and null lists, null
turns, roles and contents, tool calls, every pairing of them in reward rows, sliced batches."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pytest

from etl.schemas import arrow_schema
from etl.stages.text import SEPARATOR, combined, dialogue_texts


def old_dialogue_texts(batch: pa.RecordBatch, task: str) -> pl.Series:
    columns = ["messages"] if task == "sft" else ["prompt", "chosen"]
    turns = pl.DataFrame([pl.Series(name, combined(batch.column(name))) for name in columns])
    joined = turns.select(pl.concat_list(columns).alias("turns")).to_series()
    content = pl.element().struct.field("content").filter(pl.element().struct.field("role") != "system")
    return joined.list.eval(content).list.join(SEPARATOR).fill_null("")


CALL = [{"type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}]
TURN_LISTS = [
    [{"role": "system", "content": "be kind"}, {"role": "user", "content": "头痛"}, {"role": "assistant", "content": "休息"}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "", "tool_calls": CALL},
     {"role": "tool", "content": "{}"}, {"role": "assistant", "content": "b"}],
    [], None, [{"role": "system", "content": "only system"}], [{"role": "user", "content": None}],
    [None, {"role": "user", "content": "after a null turn"}], [{"role": None, "content": "no role"}],
    [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}],
]
TURN = pa.struct([("role", pa.string()), ("content", pa.string()), ("tool_calls", pa.list_(pa.struct([
    ("type", pa.string()), ("function", pa.struct([("name", pa.string()), ("arguments", pa.string())]))])))])


def test_sft_and_reward_rows_of_every_shape() -> None:
    turns = pa.array(TURN_LISTS, type=pa.list_(TURN))
    sft = pa.RecordBatch.from_arrays([turns], names=["messages"])
    assert dialogue_texts(sft, "sft").to_list() == old_dialogue_texts(sft, "sft").to_list()
    n = len(TURN_LISTS)
    pairs = [(TURN_LISTS[i], TURN_LISTS[j]) for i in range(n) for j in range(n)]
    reward = pa.RecordBatch.from_arrays([pa.array([p for p, _ in pairs], type=pa.list_(TURN)),
                                         pa.array([c for _, c in pairs], type=pa.list_(TURN))], names=["prompt", "chosen"])
    for batch in (reward, reward.slice(5, 40)):
        assert dialogue_texts(batch, "reward").to_list() == old_dialogue_texts(batch, "reward").to_list()
    texts = dialogue_texts(reward, "reward").to_list()
    assert texts[1] == "头痛\n休息\na\n\n{}\nb" and texts[2] == "头痛\n休息" and texts[3 * n + 3] == ""


@pytest.mark.parametrize("task", ["sft", "reward"])
def test_schema_rows(task: str) -> None:
    schema = arrow_schema(task)
    columns = ["messages"] if task == "sft" else ["prompt", "chosen"]
    turn_type = schema.field(columns[0]).type
    rows = pa.array(TURN_LISTS[:3] * 3, type=turn_type)
    batch = pa.RecordBatch.from_arrays([rows] * len(columns), names=columns)
    assert dialogue_texts(batch, task).to_list() == old_dialogue_texts(batch, task).to_list()
