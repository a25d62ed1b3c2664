"""Row validation: the semantic rules JSON Schema cannot express, ids, and the Arrow/JSON Schema pair."""

import json

import pyarrow as pa
import pytest

from etl.catalog import Source
from etl.convert.base import Reject, Row, Turn
from etl.rows import RowBuilder
from etl.schemas import arrow_schema, json_schema


def src(task: str = "sft") -> Source:
    return Source(id="demo_src", name="Demo", host="hf", repo="o/r", files=("a.jsonl",), task=task,
                  format="alpaca", license="MIT")


def sft(*pairs: tuple[str, str]) -> Row:
    return Row(messages=[Turn(r, c) for r, c in pairs])


def test_valid_sft_row_gets_common_columns_and_content_id():
    out = RowBuilder(src()).build(sft(("user", "头晕怎么办"), ("assistant", "多休息")), "train")
    assert out["source"] == "demo_src" and out["license"] == "MIT" and out["split"] == "train"
    assert out["id"].startswith("demo_src/") and len(out["id"]) == len("demo_src/") + 16
    assert (out["lang"], out["lang_score"], out["dup_count"], out["meta"]) == ("und", 0.0, 1, "{}")
    assert out["messages"] == [{"role": "user", "content": "头晕怎么办"}, {"role": "assistant", "content": "多休息"}]


@pytest.mark.parametrize(
    ("turns", "reason"),
    [
        ([("assistant", "hi"), ("user", "q")], "bad_role_order"),
        ([("user", "q"), ("user", "q2"), ("assistant", "a")], "bad_role_order"),
        ([("user", "q"), ("assistant", "a"), ("user", "more?")], "ends_without_answer"),
        ([("user", "q"), ("assistant", "   ")], "empty_output"),
        ([("user", ""), ("assistant", "a")], "empty_input"),
        ([("system", "s")], "empty_conversation"),
        ([("user", "q"), ("system", "s"), ("assistant", "a")], "bad_role_order"),
    ],
)
def test_sft_rules(turns, reason):
    with pytest.raises(Reject) as info:
        RowBuilder(src()).build(sft(*turns), "train")
    assert info.value.reason == reason


def test_leading_system_turn_is_allowed():
    out = RowBuilder(src()).build(sft(("system", "你是医生"), ("user", "q"), ("assistant", "a")), "train")
    assert [t["role"] for t in out["messages"]] == ["system", "user", "assistant"]


def test_reward_rules():
    builder = RowBuilder(src("reward"))
    good = builder.build(Row(prompt=[Turn("user", "q")], chosen="好的回答", rejected="差的回答"), "train")
    assert (good["chosen"], good["rejected"]) == ("好的回答", "差的回答")
    for row, reason in [
        (Row(prompt=[Turn("user", "q")], chosen="same", rejected=" same "), "chosen_equals_rejected"),
        (Row(prompt=[Turn("user", "q")], chosen="x", rejected=""), "empty_output"),
        (Row(prompt=[Turn("user", "q"), Turn("assistant", "a")], chosen="x", rejected="y"), "bad_role_order"),
        (Row(prompt=[], chosen="x", rejected="y"), "empty_prompt"),
    ]:
        with pytest.raises(Reject) as info:
            builder.build(row, "train")
        assert info.value.reason == reason


def test_native_ids_must_be_unique_and_content_ids_are_disambiguated():
    builder = RowBuilder(src())
    first = builder.build(Row(messages=[Turn("user", "q"), Turn("assistant", "a")], native_id="7"), "train")
    assert first["id"] == "demo_src/7"
    with pytest.raises(Reject) as info:
        builder.build(Row(messages=[Turn("user", "q2"), Turn("assistant", "a2")], native_id="7"), "train")
    assert info.value.reason == "duplicate_id"
    a = builder.build(sft(("user", "q"), ("assistant", "a")), "train")["id"]
    b = builder.build(sft(("user", "q"), ("assistant", "a")), "train")["id"]
    assert b == a + "-2"


def test_pretrain_empty_text_is_rejected():
    with pytest.raises(Reject) as info:
        RowBuilder(src("pretrain")).build(Row(text=" \n"), "train")
    assert info.value.reason == "empty_text"


def test_meta_is_sorted_json():
    row = sft(("user", "q"), ("assistant", "a"))
    row.meta = {"z": 1, "科室": "内科"}
    out = RowBuilder(src()).build(row, "train")
    assert out["meta"] == '{"z": 1, "科室": "内科"}'
    assert json.loads(out["meta"]) == {"z": 1, "科室": "内科"}


@pytest.mark.parametrize("task", ["pretrain", "sft", "reward"])
def test_arrow_schema_follows_json_schema(task):
    schema = arrow_schema(task)
    assert schema.names == list(json_schema(task)["properties"])
    assert schema.field("lang_score").type == pa.float32()
    assert schema.field("dup_count").type == pa.int32()
    if task == "sft":
        assert schema.field("messages").type == pa.list_(pa.struct([pa.field("role", pa.string(), nullable=False),
                                                                    pa.field("content", pa.string(), nullable=False)]))
