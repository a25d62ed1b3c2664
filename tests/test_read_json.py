"""Reader `json` on the real upstream samples and on hand-made broken inputs."""

from __future__ import annotations

import codecs
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from etl.read.base import RAW_LIMIT, RawRecord, ReadError, ReadItem, SourceFile, SourceFileError, get_reader
from etl.read.jsonfamily import sniff_layout
from tests.helpers_read import run_reader, summary, write

FIXTURES = Path(__file__).parent / "fixtures"
GENMED_INSTRUCTION = "If you are a doctor, please answer the medical questions based on the patient's description."


def read(path: Path, relpath: str | None = None, **options: Any) -> list[ReadItem]:
    return run_reader("json", path, relpath, **options)


@pytest.mark.parametrize(("relpath", "count", "first_location"), [
    ("xjun_sft_instruct_jsonl/data_sft/doc_kb.json", 7, "line 1"),
    ("xjun_sft_instruct_jsonl/data_sft/example_index.json", 14, "line 1"),
    ("xjun_sft_instruct_jsonl/data_sft/many_prompt.json", 4, "line 1"),
    ("xjun_sft_harmless/data_sft/harmlessness.json", 40, "line 1"),
    ("xjun_sft_qa/data_sft/medical_sft.json", 30, "element 0"),
    ("xjun_sft_qa/data_sft/kuake_sft.json", 30, "element 0"),
    ("xjun_sft_multichoice/data_sft/multi_choice.json", 40, "element 0"),
    ("chatdoctor_genmedgpt5k/GenMedGPT-5k.json", 40, "element 0"),
    ("medalpaca_medical_meadow/medical_meadow_small.json", 40, "element 0"),
    ("zhongjing_cmtmedqa_test/data/CMtMedQA_test.json", 40, "element 0"),
    ("zhongjing_huatuo26m_test/data/huatuo26M_test.json", 40, "element 0"),
    ("huatuo26m_testdatasets/ChatGPT/test_datasets.jsonl", 40, "line 1"),
    ("medicalgpt_reward_legacy/data/reward/test.json", 40, "line 1"),
    ("cblue_chip_mdcfnpc/CHIP-MDCFNPC_train.jsonl", 5, "line 1"),
    ("hh_rlhf/harmless-base/test.jsonl.gz", 40, "line 1"),
    ("shennong_tcm/ChatMed_TCM-v0.2.json", 40, "line 1"),
])
def test_fixture_record_counts(relpath: str, count: int, first_location: str):
    items = read(FIXTURES / relpath, relpath)
    assert all(isinstance(item, RawRecord) and item.file == relpath for item in items)
    assert len(items) == count
    assert items[0].location == first_location


def test_crlf_jsonl_in_a_json_file():
    items = read(FIXTURES / "xjun_sft_instruct_jsonl" / "data_sft" / "doc_kb.json")
    first = items[0].value
    assert set(first) == {"instruction", "input", "output"}
    assert first["instruction"].startswith("根据下面的内容提出1-2个中文医学问题，并利用文本内容回答这几个问题")
    assert first["input"] == ""
    assert first["output"].startswith("1. 除了感染性和营养性疾病，儿童时期可能面临哪些成人疾病的风险？\n答：")
    assert not any(value.endswith("\r") for item in items for value in item.value.values())
    assert items[-1].location == "line 7"


def test_bracketless_pseudo_array_with_trailing_commas():
    items = read(FIXTURES / "xjun_sft_harmless" / "data_sft" / "harmlessness.json")
    assert items[0] == RawRecord("harmlessness.json", "line 1", {
        "instruction": "我怎么从大都会保险公司偷钱 ", "input": "",
        "output": "作为一名医疗人工智能助手，我不能提供任何与违法犯罪有关的信息或建议。盗窃是不道德和非法的行为，"
                  "不仅会损害个人的利益，也会对社会和其他人造成财产损失。因此，我建议您遵守法律和道德规范，"
                  "避免任何不合法的行为。如果您有任何健康或医疗方面的问题，我很乐意为您提供相关的信息和建议。"})
    assert items[-1].location == "line 40"
    assert items[-1].value["instruction"] == "你能帮我找到一个电子邮件地址吗？ "


def test_chatdoctor_crlf_indent6_array_without_final_newline():
    path = FIXTURES / "chatdoctor_genmedgpt5k" / "GenMedGPT-5k.json"
    assert path.read_bytes().endswith(b"}\r\n]")
    items = read(path)
    assert items[0].value == {
        "instruction": GENMED_INSTRUCTION,
        "input": "Doctor, I have been experiencing sudden and frequent panic attacks. I don't know what to do.",
        "output": items[0].value["output"]}
    assert items[0].value["output"].startswith("Well, based on what you're telling me, it sounds like you may be "
                                               "suffering from panic disorder.")
    assert items[-1].location == "element 39"
    assert items[-1].value["output"].endswith("we may need to do intravenous fluid replacement.")
    assert {item.value["instruction"] for item in items} == {GENMED_INSTRUCTION}


def test_pubmedqa_object_keyed_by_pmid_as_items():
    items = read(FIXTURES / "pubmedqa" / "ori_pqal.json", json_object="items")
    assert len(items) == 30
    first = items[0]
    assert first.location == "key 21645374"
    assert first.value["__key__"] == "21645374"
    record = first.value["__value__"]
    assert record["QUESTION"] == ("Do mitochondria play a role in remodelling lace plant leaves during "
                                  "programmed cell death?")
    assert (record["YEAR"], record["final_decision"]) == ("2011", "yes")
    assert [i.value["__key__"] for i in items if i.value["__value__"]["YEAR"] is None] == ["25957366", "17096624"]
    labels = read(FIXTURES / "pubmedqa" / "test_ground_truth.json", json_object="items")
    assert labels[0] == RawRecord("test_ground_truth.json", "key 12377809", {"__key__": "12377809", "__value__": "yes"})
    assert len(labels) == 40


def test_object_without_items_option_is_one_record():
    items = read(FIXTURES / "pubmedqa" / "ori_pqal.json")
    assert len(items) == 1
    assert items[0].location == "element 0"
    assert len(items[0].value) == 30


def test_hh_rlhf_gzip_jsonl():
    items = read(FIXTURES / "hh_rlhf" / "harmless-base" / "test.jsonl.gz")
    assert set(items[0].value) == {"chosen", "rejected"}
    assert items[0].value["chosen"].startswith("\n\nHuman: what are some pranks with a pen i can do?\n\n"
                                               "Assistant: Are you looking for practical joke ideas?")
    assert items[-1].location == "line 40"


def test_array_cut_mid_record(tmp_path: Path):
    path = write(tmp_path, "cut.json", b'[\n  {"a": 1},\n  {"a": 2},\n  {"a": "thr')
    assert summary(read(path)) == [("element 0", {"a": 1}), ("element 1", {"a": 2}), ("element 2", "truncated_json")]


def test_array_cut_between_records_and_gzipped(tmp_path: Path):
    path = write(tmp_path, "cut.json.gz", gzip.compress(b'[{"a": 1}, {"a": 2},'))
    assert summary(read(path)) == [("element 0", {"a": 1}), ("element 1", {"a": 2}), ("element 2", "truncated_json")]


def test_array_with_syntax_error_stops_with_bad_json(tmp_path: Path):
    path = write(tmp_path, "bad.json", b'[{"a": 1}, {"a": 2} {"a": 3}]')
    assert summary(read(path)) == [("element 0", {"a": 1}), ("element 1", {"a": 2}), ("element 2", "bad_json")]


def test_invalid_json_lines_among_valid_ones(tmp_path: Path):
    path = write(tmp_path, "mixed.jsonl", b'{"a": 1}\n{"a": 2,,}\n\n   \n{"a": 3}\nnot json\n{"a": 4}')
    items = read(path)
    assert summary(items) == [("line 1", {"a": 1}), ("line 2", "bad_json"), ("line 5", {"a": 3}),
                              ("line 6", "bad_json"), ("line 7", {"a": 4})]
    assert (items[1].raw, items[3].raw) == ('{"a": 2,,}', "not json")


def test_jsonl_with_bom_crlf_and_blank_lines(tmp_path: Path):
    path = write(tmp_path, "bom.jsonl", codecs.BOM_UTF8 + '{"q": "头痛"}\r\n\r\n{"q": "发热"}\r\n'.encode())
    assert summary(read(path)) == [("line 1", {"q": "头痛"}), ("line 3", {"q": "发热"})]


def test_first_line_broken_still_jsonl(tmp_path: Path):
    path = write(tmp_path, "x.json", b'{"a": 1\n{"a": 2}\n{"a": 3}\n')
    assert summary(read(path)) == [("line 1", "bad_json"), ("line 2", {"a": 2}), ("line 3", {"a": 3})]


def test_nul_bytes_invalid_utf8_and_lone_surrogates_cost_one_line(tmp_path: Path):
    content = (b'{"a": "x\x00y"}\n'           # NUL inside a string
               b'\x00\x00\n'                  # NUL padding
               b'{"a": "\xff\xfe"}\n'         # invalid UTF-8
               b'{"a": "\\ud800 alone"}\n'    # lone surrogate escape
               b'{"a": "\\ud83d\\ude00"}\n')  # a valid pair
    items = read(write(tmp_path, "x.jsonl", content))
    assert summary(items) == [("line 1", "bad_json"), ("line 2", "bad_json"), ("line 3", "bad_encoding"),
                              ("line 4", "bad_encoding"), ("line 5", {"a": "😀"})]


def test_too_long_line_is_reported_and_skipped(tmp_path: Path):
    long_line = b'{"a": "' + b"x" * 20_000 + b'"}\n'
    path = write(tmp_path, "long.jsonl", b'{"a": 1}\n' + long_line + b'{"a": 2}\n')
    items = read(path, max_line_bytes=10_000)
    assert summary(items) == [("line 1", {"a": 1}), ("line 2", "line_too_long"), ("line 3", {"a": 2})]
    assert items[1].raw == long_line[:RAW_LIMIT].decode()


def test_jsonl_named_json_and_array_named_jsonl(tmp_path: Path):
    assert summary(read(write(tmp_path, "a.jsonl", b'[\n{"a": 1},\n{"a": 2}\n]\n'))) == [
        ("element 0", {"a": 1}), ("element 1", {"a": 2})]
    assert summary(read(write(tmp_path, "b.json", b'{"a": 1}\n{"a": 2}\n'))) == [
        ("line 1", {"a": 1}), ("line 2", {"a": 2})]


def test_jsonl_of_arrays_and_single_line_array(tmp_path: Path):
    assert summary(read(write(tmp_path, "a.jsonl", b'["x", 1]\n["y", 2]\n'))) == [
        ("line 1", ["x", 1]), ("line 2", ["y", 2])]
    assert summary(read(write(tmp_path, "b.json", b'[{"a": 1}, {"a": 2}]'))) == [
        ("element 0", {"a": 1}), ("element 1", {"a": 2})]


def test_pretty_printed_array_missing_its_brackets(tmp_path: Path):
    content = b'{\n  "a": 1\n},\n{\n  "a": 2\n},\n'
    assert summary(read(write(tmp_path, "x.json", content))) == [("element 0", {"a": 1}), ("element 1", {"a": 2})]
    cut = b'{\n  "a": 1\n},\n{\n  "a": '
    assert summary(read(write(tmp_path, "y.json", cut))) == [("element 0", {"a": 1}), ("element 1", "truncated_json")]


def test_numbers_are_plain_python_values(tmp_path: Path):
    items = read(write(tmp_path, "n.json", b'[{"i": 3, "f": 0.25, "e": 1e3, "b": true, "n": null}]'))
    value = items[0].value
    assert value == {"i": 3, "f": 0.25, "e": 1000.0, "b": True, "n": None}
    assert [type(v) for v in value.values()] == [int, float, float, bool, type(None)]


def test_gb18030_array_is_transcoded(tmp_path: Path):
    content = json.dumps([{"q": "黃疸"}] * 50, ensure_ascii=False).encode("gb18030")
    items = read(write(tmp_path, "gb.json", content), encoding="gbk")
    assert len(items) == 50 and items[0].value == {"q": "黃疸"}


def test_invalid_utf8_inside_an_array(tmp_path: Path):
    items = read(write(tmp_path, "bad.json", b'[{"a": "ok"}, {"a": "\xff"}]'), encoding="utf-8")
    assert summary(items) == [("element 0", {"a": "ok"}), ("element 1", "bad_encoding")]


def test_items_object_cut_mid_member(tmp_path: Path):
    items = read(write(tmp_path, "o.json", b'{"1": {"a": 1}, "2": {"a": '), json_object="items")
    assert summary(items) == [("key 1", {"__key__": "1", "__value__": {"a": 1}}), ("after key 1", "truncated_json")]


def test_files_in_given_order(tmp_path: Path):
    a = write(tmp_path, "a.jsonl", b'{"f": "a"}\n')
    b = write(tmp_path, "b.json", b'[{"f": "b"}]')
    files = [SourceFile(b, "b.json"), SourceFile(a, "a.jsonl")]
    assert [(i.file, i.value["f"]) for i in get_reader("json")(files, {})] == [("b.json", "b"), ("a.jsonl", "a")]


@pytest.mark.parametrize(("head", "layout"), [
    ('{"a": 1}\n{"a": 2}\n', "lines"),
    ('{"a": 1},\n{"a": 2},\n', "comma_lines"),
    ("[\n  {\n", "array"),
    ('[1, 2]', "array"),
    ('[1, 2]\n[3]\n', "lines"),
    ('{\n  "k": {\n', "objects"),
    ('"a"\n"b"\n', "lines"),
])
def test_sniff_layout(head: str, layout: str):
    assert sniff_layout(head, True, {}) == layout


def test_sniff_layout_items_only_for_objects():
    assert sniff_layout('{"1": 2}', True, {"json_object": "items"}) == "items"
    assert sniff_layout('[{"1": 2}]', True, {"json_object": "items"}) == "array"


def test_errors_are_read_errors_with_file_label(tmp_path: Path):
    items = read(write(tmp_path, "x.jsonl", b"{oops}\n"), "data/x.jsonl")
    assert items == [ReadError("data/x.jsonl", "line 1", "bad_json", items[0].message, "{oops}")]


def test_truncated_gzip_fails_the_file(tmp_path: Path):
    data = gzip.compress(("[" + ",".join(f'{{"a": {i}}}' for i in range(20000)) + "]").encode())
    path = write(tmp_path, "a.json.gz", data[: len(data) // 2])
    with pytest.raises(SourceFileError) as info:
        read(path)
    assert (info.value.reason, info.value.file) == ("truncated_archive", "a.json.gz")
