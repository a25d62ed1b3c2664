"""Row validation: the semantic rules JSON Schema cannot express, ids, and the Arrow/JSON Schema pair."""

import json

import pyarrow as pa
import pytest

from etl.catalog import Source
from etl.convert.base import Reject, Row, ToolCall, Turn
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


def reply(text: str) -> Turn:
    return Turn("assistant", text)


def test_reward_rules():
    builder = RowBuilder(src("reward"))
    good = builder.build(Row(prompt=[Turn("user", "q")], chosen=reply("好的回答"), rejected=reply("差的回答")), "train")
    assert (good["chosen"], good["rejected"]) == ([{"role": "assistant", "content": "好的回答"}],
                                                  [{"role": "assistant", "content": "差的回答"}])
    assert good["tools"] is None
    for row, reason in [
        (Row(prompt=[Turn("user", "q")], chosen=reply("same"), rejected=reply(" same ")), "chosen_equals_rejected"),
        (Row(prompt=[Turn("user", "q")], chosen=reply("x"), rejected=reply("")), "empty_output"),
        (Row(prompt=[Turn("user", "q")], chosen=Turn("user", "x"), rejected=reply("y")), "bad_role_order"),
        (Row(prompt=[Turn("user", "q"), Turn("assistant", "a")], chosen=reply("x"), rejected=reply("y")), "bad_role_order"),
        (Row(prompt=[], chosen=reply("x"), rejected=reply("y")), "empty_prompt"),
        (Row(prompt=[Turn("user", "q")], chosen=Turn("assistant", "", (ToolCall("f", "{}"),)),
             rejected=Turn("assistant", "", (ToolCall("f", "{}"),))), "chosen_equals_rejected"),
    ]:
        with pytest.raises(Reject) as info:
            builder.build(row, "train")
        assert info.value.reason == reason


CALL = Turn("assistant", "", (ToolCall("get_weather", '{"city": "北京"}'),))


def test_tool_call_rows():
    builder = RowBuilder(src())
    tools = '[{"function": {"name": "get_weather"}, "type": "function"}]'
    out = builder.build(Row(messages=[Turn("user", "天气?"), CALL, Turn("tool", "晴"), Turn("tool", "25度"),
                                      Turn("assistant", "晴, 25度")], tools=tools), "train")
    assert out["messages"][1] == {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "北京"}'}}]}
    assert out["messages"][2] == {"role": "tool", "content": "晴"}
    assert out["tools"] == tools
    # prompt of a preference row may end on the tool result; the chosen reply may itself be a call
    reward = RowBuilder(src("reward")).build(
        Row(prompt=[Turn("user", "天气?"), CALL, Turn("tool", "晴")], chosen=reply("晴天"), rejected=CALL), "train")
    assert reward["rejected"][0]["tool_calls"][0]["function"]["name"] == "get_weather"


@pytest.mark.parametrize(
    ("turns", "reason"),
    [
        ([Turn("user", "q"), CALL, Turn("assistant", "a")], "bad_role_order"),           # call without result
        ([Turn("user", "q"), Turn("tool", "r"), Turn("assistant", "a")], "bad_role_order"),  # result without call
        ([Turn("user", "q"), CALL, Turn("tool", "r")], "ends_without_answer"),
        ([Turn("user", "q"), CALL], "ends_without_answer"),
        ([Turn("user", "q", (ToolCall("f", "{}"),)), Turn("assistant", "a")], "bad_tool_call"),
        ([Turn("user", "q"), CALL, Turn("tool", " "), Turn("assistant", "a")], "empty_input"),
    ],
)
def test_tool_call_rules(turns, reason):
    with pytest.raises(Reject) as info:
        RowBuilder(src()).build(Row(messages=turns), "train")
    assert info.value.reason == reason


def test_plain_row_ids_do_not_depend_on_the_tools_column():
    # ids of rows without tools are the hash of their messages alone, as before the column existed
    out = RowBuilder(src()).build(sft(("user", "头晕怎么办"), ("assistant", "多休息")), "train")
    payload = {"messages": out["messages"]}
    from etl.rows import content_hash
    assert out["id"] == f"demo_src/{content_hash(payload)}"


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
    turn = pa.struct([pa.field("role", pa.string(), nullable=False), pa.field("content", pa.string(), nullable=False),
                      pa.field("tool_calls", pa.list_(pa.struct([
                          pa.field("type", pa.string(), nullable=False),
                          pa.field("function", pa.struct([pa.field("name", pa.string(), nullable=False),
                                                          pa.field("arguments", pa.string(), nullable=False)]),
                                   nullable=False)])))])
    if task == "sft":
        assert schema.field("messages").type == pa.list_(turn)
    if task == "reward":
        assert [schema.field(c).type for c in ("prompt", "chosen", "rejected")] == [pa.list_(turn)] * 3
    if task != "pretrain":
        assert schema.field("tools").type == pa.string() and schema.field("tools").nullable
    assert [f.name for f in schema if f.nullable] == ([] if task == "pretrain" else ["tools"])


def _valid_rows() -> dict[str, dict]:
    rows = {"sft": RowBuilder(src()).build(sft(("user", "头晕怎么办"), ("assistant", "多休息")), "train"),
            "pretrain": RowBuilder(src("pretrain")).build(Row(text="高血压患者应低盐饮食。"), "train"),
            "reward": RowBuilder(src("reward")).build(
                Row(prompt=[Turn("user", "q")], chosen=Turn("assistant", "a"), rejected=Turn("assistant", "b")), "train")}
    return rows


def _mutations(task: str, row: dict) -> list[dict]:
    """Copies of a valid row, each with one varying column given a value the schema must refuse."""
    turns = {"sft": "messages", "pretrain": None, "reward": "prompt"}[task]
    changed = [{"split": "dev"}, {"split": None}, {"id": ""}, {"id": 7}, {"meta": {}}]
    if task == "pretrain":
        changed += [{"text": ""}, {"text": " \n"}, {"text": 5}]
    else:
        first = row[turns][0]
        changed += [{"tools": 3}, {turns: [{**first, "role": "doctor"}, *row[turns][1:]]},
                    {turns: [{**first, "content": 42}, *row[turns][1:]]},
                    {turns: [{**first, "content": ""}, *row[turns][1:]]},
                    {turns: [{**first, "extra": 1}, *row[turns][1:]]}]
    if task == "sft":
        changed += [{"messages": row["messages"][:1]}]
    if task == "reward":
        changed += [{"chosen": []}, {"chosen": row["chosen"] * 2}, {"prompt": []}]
    return [{**row, **change} for change in changed]


@pytest.mark.parametrize("task", ["sft", "pretrain", "reward"])
def test_the_validator_is_skipped_only_for_rows_it_would_pass(task):
    """RowBuilder skips the JSON Schema for `plain_row` rows of an already validated split: every value
    the schema refuses in a varying column must make `plain_row` false."""
    from etl.rows import plain_row
    from etl.schemas import schema_problem

    row = _valid_rows()[task]
    assert plain_row(task, row) and schema_problem(task, row) is None
    mutations = _mutations(task, row)
    assert len(mutations) >= 8
    for bad in mutations:
        assert schema_problem(task, bad) is not None, bad
        assert not plain_row(task, bad), bad


def test_a_later_row_with_a_bad_split_is_still_refused():
    builder = RowBuilder(src())
    builder.build(sft(("user", "q1"), ("assistant", "a1")), "train")
    with pytest.raises(Reject) as info:
        builder.build(Row(messages=[Turn("user", "q2"), Turn("assistant", "a2")], split="dev"), "train")
    assert info.value.reason == "schema_violation" and "dev" not in builder._validated_splits
