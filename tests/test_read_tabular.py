"""Readers `csv` / `tsv` on the real upstream samples and on hand-made broken inputs."""

from __future__ import annotations

import codecs
import zipfile
from pathlib import Path
from typing import Any

import pytest

from etl.read.base import RawRecord, ReadItem, SourceFileError
from tests.helpers_read import run_reader, summary, write

FIXTURES = Path(__file__).parent / "fixtures"
TOYHOM = FIXTURES / "toyhom_dialogue" / "样例_内科5000-6000.csv"
QIZHEN = FIXTURES / "qizhen_drug_eval" / "data" / "eval" / "药品适应症评测数据集.csv"


def read(path: Path, name: str = "csv", **options: Any) -> list[ReadItem]:
    return run_reader(name, path, **options)


def test_toyhom_gbk_csv_first_record():
    items = read(TOYHOM)
    assert len(items) == 40
    assert items[0] == RawRecord(TOYHOM.name, "row 1", {
        "department": "心血管科",
        "title": "高血压患者能吃党参吗？",
        "ask": "我有高血压这两天女婿来的时候给我拿了些党参泡水喝，您好高血压可以吃党参吗？",
        "answer": "高血压病人可以口服党参的。党参有降血脂，降血压的作用，可以彻底消除血液中的垃圾，从而对冠心病以及"
                  "心血管疾病的患者都有一定的稳定预防工作作用，因此平时口服党参能远离三高的危害。另外党参除了益气养血，"
                  "降低中枢神经作用，调整消化系统功能，健脾补肺的功能。感谢您的进行咨询，期望我的解释对你有所帮助。",
    })
    assert items[-1].location == "row 40"
    assert items[-1].value["title"] == "高血压脑出血要休养多久？"


def test_gbk_characters_outside_gb2312(tmp_path: Path):
    content = "department,title,ask,answer\n内科,黃疸—怎么办,现·在,无\n".encode("gbk")
    assert summary(read(write(tmp_path, "g.csv", content))) == [
        ("row 1", {"department": "内科", "title": "黃疸—怎么办", "ask": "现·在", "answer": "无"})]


def test_qizhen_crlf_csv():
    items = read(QIZHEN)
    assert len(items) == 40
    first = items[0].value
    assert list(first) == ["药品", "药品适应症", "医学专家标注的适应病症", "instruction"]
    assert first["药品"] == "地屈孕酮片"
    assert first["医学专家标注的适应病症"] == ("内源性孕酮不足|痛经|子宫内膜异位症|继发性闭经|月经周期不规则|"
                                        "功能失调性子宫出血|经前期综合征")
    assert first["instruction"] == "地屈孕酮片的适应病症"
    assert first["药品适应症"].startswith("<p>本品用于治疗内源性孕酮不足引起的疾病")
    assert not any(v.endswith("\r") for item in items for v in item.value.values())


def test_quoted_commas_quotes_and_embedded_crlf_and_lf(tmp_path: Path):
    content = (b'drug,text,label\r\n'
               b'a,"one, two",x\r\n'
               b'b,"line1\nline2\r\nline3",y\r\n'
               b'c,"say ""hi""",z\r\n')
    assert summary(read(write(tmp_path, "q.csv", content))) == [
        ("row 1", {"drug": "a", "text": "one, two", "label": "x"}),
        ("row 2", {"drug": "b", "text": "line1\nline2\r\nline3", "label": "y"}),
        ("row 3", {"drug": "c", "text": 'say "hi"', "label": "z"}),
    ]


def test_wrong_field_counts_are_rejected_and_reading_goes_on(tmp_path: Path):
    content = b"a,b,c\n1,2,3\n1,2\n\n1,2,3,4\n7,8,9"
    items = read(write(tmp_path, "w.csv", content))
    assert summary(items) == [("row 1", {"a": "1", "b": "2", "c": "3"}), ("row 2", "bad_csv_row"),
                              ("row 3", "bad_csv_row"), ("row 4", {"a": "7", "b": "8", "c": "9"})]
    assert (items[1].raw, items[2].raw) == ("1,2\n", "1,2,3,4\n")
    assert items[1].message == "2 fields, the header has 3"


def test_bom_header_and_invalid_bytes_in_one_row(tmp_path: Path):
    content = codecs.BOM_UTF8 + b"id,text\r\n1," + "头痛".encode() + b"\r\n2,\xff\xfe\r\n3," + "发热".encode()
    items = read(write(tmp_path, "b.csv", content))
    assert summary(items) == [("row 1", {"id": "1", "text": "头痛"}), ("row 2", "bad_encoding"),
                              ("row 3", {"id": "3", "text": "发热"})]


def test_huge_field_is_allowed(tmp_path: Path):
    big = "长" * 300_000
    items = read(write(tmp_path, "h.csv", f'a,b\n1,"{big}"\n'.encode()))
    assert items[0].value["b"] == big


def test_header_option_for_headerless_file_and_delimiter(tmp_path: Path):
    path = write(tmp_path, "n.txt", b"1|x\n2|y\n")
    assert summary(read(path, header=["id", "v"], delimiter="|")) == [
        ("row 1", {"id": "1", "v": "x"}), ("row 2", {"id": "2", "v": "y"})]


def test_duplicate_header_fails_the_file(tmp_path: Path):
    with pytest.raises(SourceFileError) as info:
        read(write(tmp_path, "d.csv", b"a,a\n1,2\n"))
    assert info.value.reason == "bad_header"


def test_zhongjing_tsv():
    path = FIXTURES / "zhongjing_rlhf_label_tool" / "src" / "rlhf_label" / "total_dataset.tsv"
    [item] = read(path, "tsv")
    assert list(item.value) == ["id", "query", "history", "rank1", "rank2", "rank3", "rank4"]
    assert (item.value["id"], item.value["query"], item.value["history"]) == ("0", "【测试】你好", "[]")
    assert item.value["rank1"].startswith("今天早晨我去了 一 趟 酒 店 ， 在 check in 的 时 候")


def test_tsv_quoting_none(tmp_path: Path):
    path = write(tmp_path, "t.tsv", b'a\tb\n"x\ty"\n')
    assert summary(read(path, "tsv", quoting="none")) == [("row 1", {"a": '"x', "b": 'y"'})]


def test_cmedqa2_zip_members():
    for name, count, first in [("dev_candidates.zip", 300, "51747753"), ("test_candidates.zip", 300, "23423734")]:
        path = FIXTURES / "cmedqa2" / name
        items = read(path)
        member = name.replace(".zip", ".txt")
        assert len(items) == count
        assert items[0].file == f"{name}!{member}"
        assert items[0].value == {"question_id": first, "ans_id": items[0].value["ans_id"], "cnt": "0", "label": "1"}
        assert [item.value["cnt"] for item in items[:100]] == [str(i) for i in range(100)]


def test_zip_of_two_csvs_in_member_order(tmp_path: Path):
    path = tmp_path / "two.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("b.csv", "k\nb1\n")
        archive.writestr("a.csv", "k\na1\na2\n")
    assert [(i.file, i.location, i.value["k"]) for i in read(path)] == [
        ("two.zip!a.csv", "row 1", "a1"), ("two.zip!a.csv", "row 2", "a2"), ("two.zip!b.csv", "row 1", "b1")]
