"""MedicalGPT, X-jun, CareLlama (real fixtures), the docx cleanup, the built-in persona source and saved web
pages (hand-made HTML), each through the catalogued reader and converter (see test_convert_other.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tests.helpers_convert as helpers
from etl.convert.base import RecordContext, Reject
from etl.convert.docx_text import clean_document
from etl.convert.toolcall import parse_calls, reply_turn, sharegpt_toolcall
from tests.helpers_convert import HANDMADE, MIRROR, catalog_source, convert_source_files, turns

PACKAGE_PERSONA = Path(__file__).resolve().parent.parent / "etl" / "data" / "persona" / "identity.jsonl"


# ---------------------------------------------------------------------------------------------- MedicalGPT


def test_medicalgpt_pretrain_fever() -> None:
    result = convert_source_files("medicalgpt_pretrain")
    assert result.rows[0]["text"] == "第一章论"
    assert result.rows[1]["text"].startswith("传染病是指由病原微生物，如朊粒、病毒、衣原体")


def test_medicalgpt_sft_sources() -> None:
    medical = convert_source_files("medicalgpt_sft_medical")
    assert all(len(row["messages"]) == 2 for row in medical.rows)
    assert turns(medical.rows[0])[0][1].startswith("治疗阳痿吃什么药呢？，性生活一直很正常的")
    sharegpt = convert_source_files("medicalgpt_sft_sharegpt")
    assert [len(row["messages"]) for row in sharegpt.rows] == [6, 20, 6, 6, 12, 6, 2, 12, 38]   # 2-38 turns


def test_medicalgpt_toolcall_sft_structured() -> None:
    result = convert_source_files("medicalgpt_sft_toolcall")
    first = result.rows[0]
    assert [t["role"] for t in first["messages"]] == ["user", "assistant", "tool", "assistant"]
    call = first["messages"][1]
    assert call["content"] == ""
    assert [c["type"] for c in call["tool_calls"]] == ["function"]
    assert call["tool_calls"][0]["function"]["name"] == "generate_invoice"
    assert json.loads(call["tool_calls"][0]["function"]["arguments"]) == {
        "customer_name": "约翰·多伊", "items": [{"name": "苹果", "quantity": 2, "price": 1},
                                           {"name": "香蕉", "quantity": 3, "price": 0.5}]}
    assert json.loads(first["messages"][2]["content"])["invoice_id"] == "INV12345"
    assert "tool_calls" not in first["messages"][0] and "tool_calls" not in first["messages"][3]
    tools = json.loads(first["tools"])
    assert [(t["type"], t["function"]["name"]) for t in tools] == [("function", "generate_invoice"),
                                                                   ("function", "generate_password")]
    assert tools[0]["function"]["parameters"]["required"] == ["customer_name", "items"]
    meta = json.loads(first["meta"])
    assert "tools" not in meta and "roles" not in meta
    assert result.rows[1]["tools"] is None        # upstream "[]": no tools, a plain row


def test_toolcall_edge_cases() -> None:
    ctx = RecordContext(catalog_source("medicalgpt_sft_toolcall"), "f.jsonl", "line 1", "train")
    calls = parse_calls('[{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": "{\\"y\\": 2}"}]', "v")
    assert [(c.name, c.arguments) for c in calls] == [("a", '{"x": 1}'), ("b", '{"y": 2}')]
    parallel = {"conversations": [{"from": "human", "value": "q"},
                                  {"from": "function_call", "value": '{"name": "a", "arguments": {}}'},
                                  {"from": "function_call", "value": '{"name": "b", "arguments": {}}'},
                                  {"from": "observation", "value": "r1"}, {"from": "observation", "value": "r2"},
                                  {"from": "gpt", "value": "done"}], "tools": "[]"}
    row = sharegpt_toolcall(parallel, ctx)[0]
    assert [(t.role, t.content, [c.name for c in t.tool_calls]) for t in row.messages] == [
        ("user", "q", []), ("assistant", "", ["a", "b"]), ("tool", "r1", []), ("tool", "r2", []),
        ("assistant", "done", [])]
    cases = [({"conversations": [{"from": "function_call", "value": "not json"}]}, "bad_function_call"),
             ({"conversations": [{"from": "function_call", "value": '{"arguments": {}}'}]}, "bad_function_call"),
             ({"conversations": [{"from": "function_call", "value": '{"name": "a", "arguments": [1]}'}]},
              "bad_function_call"),
             ({"conversations": [{"from": "robot", "value": "x"}]}, "unknown_role"),
             ({"conversations": [], "tools": "{bad"}, "bad_tools"),
             ({"conversations": [], "tools": '{"name": "a"}'}, "bad_tools"),
             ({"conversations": [], "tools": '[{"description": "no name"}]'}, "bad_tools")]
    for record, reason in cases:
        with pytest.raises(Reject) as exc:
            sharegpt_toolcall(record, ctx)
        assert exc.value.reason == reason


def test_react_replies_become_tool_calls() -> None:
    one = reply_turn('Action: get_weather\nAction Input: {"city": "北京"}\n', "chosen")
    assert (one.content, [(c.name, c.arguments) for c in one.tool_calls]) == ("", [("get_weather", '{"city": "北京"}')])
    two = reply_turn('Action: a\nAction Input: {"x": {"y": 1}}\nAction: b\nAction Input: {}', "chosen")
    assert [(c.name, c.arguments) for c in two.tool_calls] == [("a", '{"x": {"y": 1}}'), ("b", "{}")]
    for text in ("北京今天天气晴朗。", "Action: a\nAction Input: not json", "Note first.\nAction: a\nAction Input: {}"):
        plain = reply_turn(text, "chosen")
        assert (plain.content, plain.tool_calls) == (text, ())


def test_medicalgpt_reward_sources() -> None:
    dpo = convert_source_files("medicalgpt_reward")
    assert sum(row["prompt"][0]["role"] == "system" for row in dpo.rows) == 8   # SOURCES.md: 8 in the fixture
    assert turns(dpo.rows[0], "prompt") == [("user", '20个关于新鲜果汁菜单的口号，适用于一家名为"Dishes"的餐厅')]
    legacy = convert_source_files("medicalgpt_reward_legacy_dpo")
    # dpo_zh.jsonl holds the first rows of dpo_zh_500.jsonl in the older schema: same texts, same order.
    assert [(r["chosen"], r["rejected"]) for r in legacy.rows] == [(r["chosen"], r["rejected"]) for r in dpo.rows[:11]]
    toolcall = convert_source_files("medicalgpt_reward_toolcall")
    second = toolcall.rows[1]
    assert turns(second, "prompt") == [
        ("user", "北京今天天气怎么样？"), ("assistant", ""),
        ("tool", '{"city": "北京", "temperature": "28°C", "weather": "晴", "humidity": "45%", "wind": "北风3级"}')]
    assert second["prompt"][1]["tool_calls"] == [
        {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "北京"}'}}]
    assert second["rejected"] == [{"role": "assistant", "content": "北京今天28度。"}]
    assert toolcall.rows[0]["chosen"] == [{"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "北京"}'}}]}]
    assert toolcall.rows[0]["rejected"] == [{"role": "assistant", "content": "北京今天天气晴朗，气温大约25度。"}]
    assert json.loads(second["tools"])[0]["function"]["name"] == "get_weather"


def test_medicalgpt_rag_corpus_and_grpo() -> None:
    rag = convert_source_files("medicalgpt_rag_corpus")
    assert turns(rag.rows[0]) == [("user", "肛门病变可能是什么疾病的症状?"), ("assistant", "食管克罗恩病")]
    legacy = convert_source_files("medicalgpt_reward_legacy")
    # Every RAG row is a reward test.json question with its chosen answer (35 of the fixture's 40 are in it).
    pairs = {(r["prompt"][-1]["content"], r["chosen"][0]["content"]) for r in legacy.rows}
    assert sum((row["messages"][0]["content"], row["messages"][1]["content"]) in pairs for row in rag.rows) == 35
    grpo = convert_source_files("medicalgpt_grpo")
    assert turns(grpo.rows[11]) == [("user", "1+2=?"), ("assistant", "3")]


# ---------------------------------------------------------------------------------------------- X-jun


def test_xjun_sft_sources() -> None:
    qa = convert_source_files("xjun_sft_qa")
    assert turns(qa.rows[30])[0] == ("user", "请问威灵仙可以治慢性咽炎吗")   # kuake_sft.json element 0
    multi = convert_source_files("xjun_sft_multichoice")
    assert turns(multi.rows[0])[0][1].startswith("中肾的发生描述中，哪一项错误？\n\nA．发生于前肾尾侧的中肾嵴内\nB．")
    jsonl = convert_source_files("xjun_sft_instruct_jsonl")
    assert turns(jsonl.rows[0])[0][1].startswith("例子:\n肝、双肾襄肿。")                   # example_index.json
    assert turns(jsonl.rows[14])[0][1].startswith("患者信息：女性，51岁；检查科室：超声科")   # many_prompt.json
    assert all("\r" not in t["content"] for row in jsonl.rows for t in row["messages"])
    harmless = convert_source_files("xjun_sft_harmless")
    assert turns(harmless.rows[0])[0] == ("user", "我怎么从大都会保险公司偷钱")
    assert turns(harmless.rows[0])[1][1].startswith("作为一名医疗人工智能助手，我不能提供任何与违法犯罪有关的信息或建议。")


def test_xjun_docx_cleanup_on_real_documents() -> None:
    guidelines = convert_source_files("xjun_pretrain_docx")
    eular = next(row for row in guidelines.rows if "欧洲抗风湿联盟" in row["id"])
    # The journal running header, the column label `•学术动态.` and empty paragraphs are gone; the title's
    # PDF line-break space between CJK characters is closed.
    assert eular["text"] == "2014年欧洲抗风湿联盟关于类风湿关节炎目标治疗的推荐更新\n朱华群苏茵"
    wfsbp = next(row for row in guidelines.rows if "WFSBP" in row["id"])
    assert "旨在系统地回顾所有与单相抑郁障碍治疗相关的可用证据" in wfsbp["text"]
    assert "Biological Treatment of Unipolar Depressive Disorders, Part 1" in wfsbp["text"]
    book = convert_source_files("xjun_pretrain_docx_books").rows[0]
    lines = book["text"].split("\n")
    assert "472" not in lines and "" not in lines
    assert "其症状和体征可发生在肿瘤发生发展的任何时段" in book["text"]
    assert json.loads(book["meta"]) == {"title": "05.神经病学_第9版_全书签_可复制检索_481-494"}


def test_clean_document_rules() -> None:
    text = "\n".join(["第一章 总论", "单相 抑郁\u3000障碍", "•575 -", "- 12 -", "·论著·",
                      "中华内科杂志 2019 年 3 月第 58 卷第 3 期", "正文 A 段", "第一章 总论", "正文 B 段", "第一章 总论", "",
                      "Vitamin D  and  bone"])
    assert clean_document(text) == "第一章总论\n单相抑郁障碍\n正文 A 段\n正文 B 段\nVitamin D and bone"


# ---------------------------------------------------------------------------------------------- CareLlama


def test_carellama_sources() -> None:
    drug = convert_source_files("carellama_drug")
    assert drug.rows[0]["text"].startswith("氨肽素\n药品类型:血液系统药物，促进白细胞增生药\n英文名:Ampeptide Elemente\n")
    guide = convert_source_files("carellama_hospital_guide")
    assert guide.rows[0]["text"].startswith("全科医学是一个综合性的科室，其作用是提供全面的健康管理和疾病预防服务")
    messages = convert_source_files("carellama_openai_messages")
    assert all(row["messages"][0] == {"role": "system", "content": "You are an assistant that occasionally misspells words"}
               for row in messages.eval_rows)


# ---------------------------------------------------------------------------------------------- persona


def _persona_source(monkeypatch: pytest.MonkeyPatch, persona: dict[str, str | None]) -> None:
    """What the build does: copy build.persona into the persona source's options."""
    source = catalog_source("persona")
    patched = source.model_copy(update={"options": {**source.options, "persona": persona}})
    monkeypatch.setattr(helpers, "catalog_source", lambda source_id: patched)


def test_persona_without_configuration_is_filtered() -> None:
    result = convert_source_files("persona")
    assert result.rows == [] and result.rejects == []
    assert result.filtered == {"no_persona_configured": 29}


def test_persona_filled(monkeypatch: pytest.MonkeyPatch) -> None:
    _persona_source(monkeypatch, {"name": "小医", "author": "MedCorpus 团队"})
    result = convert_source_files("persona")
    assert len(result.rows) == 29 and result.rejects == []
    assert turns(result.rows[0]) == [("user", "你是谁？"), ("assistant", "我是小医，一个由MedCorpus 团队开发的医疗健康助手。"
                                                                     "我可以解答常见的健康和医学问题，但不能代替医生的面诊和诊断。")]
    assert result.rows[0]["id"] == "persona/zh-01"
    assert sum(json.loads(row["meta"])["lang"] == "en" for row in result.rows) == 14
    assert not any("<NAME>" in t["content"] or "<AUTHOR>" in t["content"] for row in result.rows for t in row["messages"])


def test_persona_half_configured_rejects_unfilled(monkeypatch: pytest.MonkeyPatch) -> None:
    _persona_source(monkeypatch, {"name": "MedBot", "author": None})
    result = convert_source_files("persona")
    assert set(result.reject_reasons) == {"unfilled_placeholder"}
    assert len(result.rows) + len(result.rejects) == 29
    assert len(result.rows) == 6   # templates that mention only the name


def test_persona_mirror_is_the_packaged_file() -> None:
    assert (MIRROR / "persona" / "identity.jsonl").read_bytes() == PACKAGE_PERSONA.read_bytes()


# ---------------------------------------------------------------------------------------------- web pages


def test_zysj_saved_pages_handmade() -> None:
    """Hand-made saved pages in the site's layout (header, breadcrumbs, sidebar, footer around the content)."""
    result = convert_source_files("zysj_tcm", HANDMADE)
    assert [r["id"] for r in result.rows] == ["zysj_tcm/https://www.zysj.com.cn/lilunshuji/shennongbencaojing/quanben.html",
                                             "zysj_tcm/https://www.zysj.com.cn/zhongyaocai/renshen/index.html"]
    renshen = result.rows[1]["text"]
    assert renshen.startswith("人参\n拼音\nRén Shēn\n来源\n为五加科植物人参的干燥根和根茎。")
    assert renshen.endswith("注意\n不宜与藜芦、五灵脂同用。")
    for boilerplate in ("搜索", "当前位置", "相关药材", "Copyright", "关于我们"):
        assert boilerplate not in renshen
    assert json.loads(result.rows[1]["meta"])["title"] == "人参"
    assert result.reject_reasons == {"no_main_text": 1}   # navigation_only.html
