"""Tool calls are part of a turn's matching text: the polars and Python helpers agree on it, exact dedup
tells calls with different arguments apart, and redaction reaches the arguments while keeping them JSON."""

import json

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from etl.catalog import DedupConfig, QualityConfig
from etl.schemas import arrow_schema
from etl.stages.base import settle
from etl.stages.dedup import ExactDedup
from etl.stages.memory import run_in_memory
from etl.stages.normalise import Normalise
from etl.stages.quality import Quality
from etl.stages.redact import Redact, keep_json_valid, redact_strings
from etl.stages.text import (
    column_text,
    prompt_texts,
    row_text_series,
    row_texts,
    side_text_series,
)
from etl.textnorm import match_key
from tests import stage_rows

TURNS = arrow_schema("sft").field("messages").type


def turn(role: str, content: str, *calls: tuple[str, str]) -> dict:
    return {"role": role, "content": content, "tool_calls": [
        {"type": "function", "function": {"name": name, "arguments": arguments}} for name, arguments in calls
    ] if calls else None}


ASK = turn("user", "帮我查一下北京明天的天气")
WEATHER = ("get_weather", '{"city": "北京"}')
GOOD = "建议您先复查血常规和肝功能，空腹血糖7.8mmol/L偏高，注意控制饮食并按时服药。"
CONVERSATIONS = [
    [ASK, turn("assistant", "", WEATHER), turn("tool", '{"temp": 3}'), turn("assistant", "明天3度，注意保暖。")],
    [ASK, turn("assistant", "我来查两处。", WEATHER, ("get_weather", '{"city": "天津"}'))],   # content + two calls
    [turn("system", "You are a doctor."), ASK, turn("assistant", "多穿衣服。")],              # plain row
    [ASK, {"role": "assistant", "content": "", "tool_calls": []}],                            # empty list of calls
    [turn("user", ""), turn("assistant", "")],
]
EXPECTED = [
    '帮我查一下北京明天的天气\nget_weather({"city": "北京"})\n{"temp": 3}\n明天3度，注意保暖。',
    '帮我查一下北京明天的天气\n我来查两处。\nget_weather({"city": "北京"})\nget_weather({"city": "天津"})',
    "You are a doctor.\n帮我查一下北京明天的天气\n多穿衣服。",
    "帮我查一下北京明天的天气\n",
    "\n",
]


def sft_table(conversations: list[list[dict]], sources: list[str] | None = None) -> pa.Table:
    n = len(conversations)
    sources = sources or ["src"] * n
    common = stage_rows.common([f"{s}/{i}" for i, s in enumerate(sources)], sources, [50] * n)
    return pa.table({"messages": pa.array(conversations, TURNS), **common})


def reward_table(rows: list[tuple[list[dict], dict, dict]]) -> pa.Table:
    common = stage_rows.common([f"r/{i}" for i in range(len(rows))], ["r"] * len(rows), [50] * len(rows))
    return pa.table({"prompt": pa.array([p for p, _, _ in rows], TURNS), "chosen": pa.array([[c] for _, c, _ in rows], TURNS),
                     "rejected": pa.array([[r] for _, _, r in rows], TURNS), **common})


def test_turn_text_is_content_then_one_line_per_call():
    table = sft_table(CONVERSATIONS)
    assert row_texts(table, "sft") == EXPECTED
    # a plain conversation reads as its contents joined, exactly as before tool calls counted
    assert EXPECTED[2] == "\n".join(t["content"] for t in CONVERSATIONS[2])


@pytest.mark.parametrize("part", [slice(0, 5), slice(1, 4), slice(3, 5), slice(0, 1)])
def test_polars_texts_equal_python_texts(part):
    table = sft_table(CONVERSATIONS)
    chunked = pa.concat_tables([table.slice(0, 2), table.slice(2)])   # several chunks, then a slice of them
    for piece in (table.slice(part.start, part.stop - part.start), chunked.slice(part.start, part.stop - part.start)):
        texts = row_texts(piece, "sft")
        assert texts == EXPECTED[part]
        assert row_text_series(piece, "sft").to_list() == texts
        assert column_text(piece.column("messages"), "user").to_list() == prompt_texts(piece, "sft")
        prompt, response = side_text_series(piece, "sft")
        conversations = piece.column("messages").to_pylist()
        assert response.to_list() == [row_texts(sft_table([[t for t in c if t["role"] == "assistant"]]), "sft")[0]
                                      for c in conversations]
        assert prompt.to_list() == [row_texts(sft_table([[t for t in c if t["role"] != "assistant"]]), "sft")[0]
                                    for c in conversations]


def test_polars_texts_equal_python_texts_for_reward_rows():
    table = reward_table([
        ([ASK], turn("assistant", "", WEATHER), turn("assistant", "不知道。")),
        ([ASK], turn("assistant", "我查一下。", WEATHER, ("get_air", '{"city": "北京"}')), turn("assistant", "", ("search", "{}"))),
        ([ASK], turn("assistant", "多穿衣服。"), turn("assistant", "随便。")),
    ])
    texts = row_texts(table, "reward")
    assert texts[0] == '帮我查一下北京明天的天气\nget_weather({"city": "北京"})\n不知道。'
    assert texts[2] == "帮我查一下北京明天的天气\n多穿衣服。\n随便。"
    assert row_text_series(table, "reward").to_list() == texts
    prompt, response = side_text_series(table, "reward")
    assert prompt.to_list() == ["帮我查一下北京明天的天气"] * 3
    assert response.to_list()[1] == '我查一下。\nget_weather({"city": "北京"})\nget_air({"city": "北京"})\nsearch({})'


def test_turns_without_a_tool_calls_field_read_as_before():
    table = stage_rows.sft([[("user", "头疼"), ("assistant", "多休息")], [("user", ""), ("assistant", "好")]])
    assert row_texts(table, "sft") == ["头疼\n多休息", "\n好"]
    assert row_text_series(table, "sft").to_list() == ["头疼\n多休息", "\n好"]
    assert column_text(table.column("messages"), "assistant").to_list() == ["多休息", "好"]
    # a tool_calls field that is not a list of calls is not read as calls
    odd = pa.array([[{"role": "assistant", "content": "已记录", "tool_calls": '[{"name": "save"}]'}]],
                   pa.list_(pa.struct([("role", pa.string()), ("content", pa.string()), ("tool_calls", pa.string())])))
    odd_table = pa.table({"messages": odd})
    assert row_texts(odd_table, "sft") == row_text_series(odd_table, "sft").to_list() == ["已记录"]


def _exact(table: pa.Table, tmp_path) -> tuple[pa.Table, dict]:
    return run_in_memory("sft", table, [Normalise("sft"), ExactDedup(DedupConfig())], tmp_path / "work", tmp_path / "reports")


def test_exact_dedup_tells_calls_apart_by_arguments_and_name(tmp_path):
    answer = turn("assistant", "明天晴。")
    table = sft_table([
        [ASK, turn("assistant", "", ("get_weather", '{"city": "北京"}')), answer],
        [ASK, turn("assistant", "", ("get_weather", '{"city": "上海"}')), answer],   # other arguments
        [ASK, turn("assistant", "", ("get_forecast", '{"city": "北京"}')), answer],  # other tool
        [ASK, turn("assistant", "", ("get_weather", '{"city": "北京"}')), answer],   # a true copy of row 0
    ])
    out, removed = _exact(table, tmp_path)
    assert sorted(out.column("id").to_pylist()) == ["src/0", "src/1", "src/2"]
    assert removed["exact_dedup"]["src"] == 1
    assert dict(zip(out.column("id").to_pylist(), out.column("dup_count").to_pylist(), strict=True)) == {
        "src/0": 2, "src/1": 1, "src/2": 1}


def test_redaction_reaches_call_arguments_and_keeps_them_json():
    arguments = json.dumps({"patient": {"phone": "13812345678", "notes": ["邮箱 a.b@qq.com"]}, "dept": "心内科"},
                           ensure_ascii=False)
    table = sft_table([
        [ASK, turn("assistant", "好的。", ("book", arguments), ("call", '{"to": "+86 139-1234-5678"}'))],
        [ASK, turn("assistant", "", ("book", '{"dept": "心内科"}'))],
    ])
    out = Redact("sft").apply(Normalise("sft").apply(table.to_batches()[0]))
    calls = out.column("messages").to_pylist()[0][1]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["book", "call"]
    assert json.loads(calls[0]["function"]["arguments"]) == {
        "patient": {"phone": "<PHONE>", "notes": ["邮箱 <EMAIL>"]}, "dept": "心内科"}
    assert json.loads(calls[1]["function"]["arguments"]) == {"to": "<PHONE>"}
    assert out.column("messages").to_pylist()[1] == table.column("messages").to_pylist()[1]
    _, tally = settle(out)
    assert tally.counts == {"src": {"PHONE": 2, "EMAIL": 1}}
    # the key is recomputed over the redacted arguments
    assert out.column("_key").to_pylist() == [match_key(t) for t in row_texts(out, "sft")]
    assert "13812345678" not in out.column("_key")[0].as_py()


def test_a_match_that_would_break_a_json_escape_is_redacted_on_the_decoded_value():
    # `\n` is an escape in the JSON text: the email rule run on the raw text would take `nfoo@x.com`
    # and leave `\<EMAIL>`, which is not JSON.
    raw = json.dumps({"note": "联系方式：\nfoo@x.com", "tel": "13812345678"}, ensure_ascii=False)
    before = pl.Series([raw, raw])
    after = redact_strings(before)
    with pytest.raises(ValueError):
        json.loads(after[0])
    fixed = keep_json_valid(before, after, np.array([True, False]))
    assert json.loads(fixed[0]) == {"note": "联系方式：\n<EMAIL>", "tel": "<PHONE>"}
    assert fixed[1] == after[1]                                       # not JSON: left as redacted text
    table = sft_table([[ASK, turn("assistant", "", ("save", raw))]])
    out = Redact("sft").apply(Normalise("sft").apply(table.to_batches()[0]))
    saved = out.column("messages").to_pylist()[0][1]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(saved) == {"note": "联系方式：\n<EMAIL>", "tel": "<PHONE>"}
    _, tally = settle(out)
    assert tally.counts == {"src": {"EMAIL": 1, "PHONE": 1}}


def test_quality_judges_contents_only_and_never_drops_a_call_as_short():
    call_only = [ASK, turn("assistant", "", WEATHER)]
    repeated = [ASK, *[turn("assistant", "", WEATHER)] * 3, turn("assistant", GOOD)]
    plain_short = [ASK, turn("assistant", "。")]
    table = sft_table([call_only, repeated, plain_short])
    stage = Quality("sft", QualityConfig())
    assert stage.apply(table.to_batches()[0]).column("_drop").to_pylist() == [None, None, "short_answer"]
    # the measures are those of the same rows with their calls taken out
    bare = sft_table([[{**t, "tool_calls": None} for t in c] for c in (call_only, repeated, plain_short)])
    with_calls, without = stage.measures(table.to_batches()[0]), stage.measures(bare.to_batches()[0])
    assert with_calls["calls_tools"].tolist() == [True, True, False]
    for name, values in without.items():
        if name != "calls_tools":
            assert values.tolist() == with_calls[name].tolist(), name

