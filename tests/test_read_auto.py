"""Reader `auto`: the format is sniffed from content, per file and per archive member."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path
from typing import Any

import pytest

from etl.read.auto import table_delimiter
from etl.read.base import RawRecord, ReadItem, SourceFile, SourceFileError, get_reader
from tests.helpers_read import run_reader

FIXTURES = Path(__file__).parent / "fixtures"


def read(path: Path, relpath: str | None = None, **options: Any) -> list[ReadItem]:
    return run_reader("auto", path, relpath, **options)


@pytest.mark.parametrize(("relpath", "count", "location", "kind"), [
    ("toyhom_dialogue/样例_内科5000-6000.csv", 40, "row 1", dict),
    ("qizhen_drug_eval/data/eval/药品适应症评测数据集.csv", 40, "row 1", dict),
    ("zhongjing_rlhf_label_tool/src/rlhf_label/total_dataset.tsv", 1, "row 1", dict),
    ("cmedqa2/test_candidates.zip", 300, "row 1", dict),
    ("hh_rlhf/harmless-base/test.jsonl.gz", 40, "line 1", dict),
    ("xjun_sft_harmless/data_sft/harmlessness.json", 40, "line 1", dict),
    ("chatdoctor_genmedgpt5k/GenMedGPT-5k.json", 40, "element 0", dict),
    ("medicalgpt_rag_corpus/data/rag/medical_corpus.txt", 40, "line 1", dict),
    ("medicalgpt_pretrain/data/pretrain/fever.txt", 40, "line 1", str),
    ("medicalgpt_pretrain/data/pretrain/en_article_tail500.txt", 36, "line 1", str),
    ("toyhom_dialogue/Data_数据/IM_内科/内科.txt", 80, "line 1", str),
    ("xjun_pretrain_docx/data_pretrain/指南/2014年欧洲抗风湿联盟关于类风湿关节炎目标治疗的推荐更新.docx", 1, "document", str),
    ("shennong_tcm_test_examples/src/ShenNong-TCM-LLM - test examples.xls", 40, "sheet ChatMed-TCM 结果对比 row 1", dict),
])
def test_fixtures_are_sniffed(relpath: str, count: int, location: str, kind: type):
    items = read(FIXTURES / relpath, relpath)
    assert all(isinstance(item, RawRecord) for item in items)
    assert len(items) == count
    assert items[0].location == location
    assert isinstance(items[0].value, kind)


def test_auto_matches_the_named_reader():
    path = FIXTURES / "toyhom_dialogue" / "样例_内科5000-6000.csv"
    assert read(path) == list(get_reader("csv")([SourceFile(path, path.name)], {}))


def test_zip_with_mixed_members(tmp_path: Path):
    path = tmp_path / "mixed.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("c.txt", "第一段\n第二段\n")
        archive.writestr("a.jsonl", '{"q": 1}\n{"q": 2}\n')
        archive.writestr("b.csv", "id,text\n1,头痛\n")
    assert [(i.file, i.location, i.value) for i in read(path)] == [
        ("mixed.zip!a.jsonl", "line 1", {"q": 1}), ("mixed.zip!a.jsonl", "line 2", {"q": 2}),
        ("mixed.zip!b.csv", "row 1", {"id": "1", "text": "头痛"}),
        ("mixed.zip!c.txt", "line 1", "第一段"), ("mixed.zip!c.txt", "line 2", "第二段")]


def test_delimiter_option_forces_a_table(tmp_path: Path):
    path = tmp_path / "t.txt"
    path.write_bytes("病人\t医生\n".encode())
    assert [i.value for i in read(path, header=["q", "a"])] == [{"q": "病人", "a": "医生"}]


@pytest.mark.parametrize(("text", "expected"), [
    ("id,text\n1,a\n2,b\n", ","),
    ("id\ttext\n1\ta, b\n2\tc\n", "\t"),
    ('drug,html\n1,"<p>a,\nb</p>"\n2,c\n', ","),
    ("Hello, world. This is prose, with commas.\nAnd another line, also prose, with more.\n", None),
    ("a,b\n1,2,3\n", None),
    ("single column\nvalue\n", None),
    ("a,a\n1,2\n", None),
])
def test_table_delimiter(text: str, expected: str | None):
    assert table_delimiter(text, True) == expected


def test_xlsx_and_nested_archives_are_refused(tmp_path: Path):
    xlsx = tmp_path / "book.xlsx"
    with zipfile.ZipFile(xlsx, "w") as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
    nested = tmp_path / "nested.zip"
    with zipfile.ZipFile(nested, "w") as archive:
        archive.writestr("inner.gz", gzip.compress(b"x\n"))
    for path, reason in [(xlsx, "unsupported_format"), (nested, "nested_archive")]:
        with pytest.raises(SourceFileError) as info:
            read(path)
        assert info.value.reason == reason


def test_files_come_in_the_given_order():
    paths = [FIXTURES / "medicalgpt_pretrain" / "data" / "pretrain" / "fever.txt",
             FIXTURES / "cmedqa2" / "dev_candidates.zip"]
    items = list(get_reader("auto")([SourceFile(p, p.name) for p in paths], {}))
    assert [i.file for i in items] == ["fever.txt"] * 40 + ["dev_candidates.zip!dev_candidates.txt"] * 300
