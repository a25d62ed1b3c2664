"""Readers `docx` and `xls`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docx
import pytest

from etl.read.base import RawRecord, ReadItem, SourceFileError
from tests.helpers_read import run_reader

FIXTURES = Path(__file__).parent / "fixtures"
GUIDES = FIXTURES / "xjun_pretrain_docx" / "data_pretrain" / "指南"
BOOK = FIXTURES / "xjun_pretrain_docx" / "data_pretrain" / "书籍" / "05.神经病学_第9版_全书签_可复制检索_481-494.docx"
XLS = FIXTURES / "shennong_tcm_test_examples" / "src" / "ShenNong-TCM-LLM - test examples.xls"


def read(path: Path, name: str, **options: Any) -> list[ReadItem]:
    return run_reader(name, path, **options)


def failure(path: Path, name: str) -> str:
    with pytest.raises(SourceFileError) as info:
        read(path, name)
    return info.value.reason


def test_docx_fixture_text_without_empty_paragraphs():
    path = GUIDES / "2014年欧洲抗风湿联盟关于类风湿关节炎目标治疗的推荐更新.docx"
    assert read(path, "docx") == [RawRecord(path.name, "document", (
        "中华风湿病学杂志 2015 年 8 月第 19 卷第 8 期 Chin J Rheumatol, August 2015, Vol. 19, No. 8\n"
        "•学术动态.\n"
        "2014年欧洲抗风湿联盟关于类风湿关节炎 目标治疗的推荐更新\n"
        "朱华群苏茵"))]


def test_docx_fixtures_keep_paragraph_order():
    [book] = read(BOOK, "docx")
    lines = book.value.split("\n")
    assert lines[:2] == ["第二十三章 内科系统疾病的神经系统并发症", "多样。"]
    assert all(line.strip() for line in lines)
    [guide] = read(GUIDES / "2013+WFSBP单相抑郁障碍生物治疗指南（一）：总论.docx", "docx")
    assert guide.value.startswith("2013 WFSBP单相抑郁障碍生物治疗指南（一）：总论\n医脉通 2014-10-11\n"
                                  "World Federation of Societies of Biological Psychiatry")


def test_docx_tables_are_tab_joined_rows_in_document_order(tmp_path: Path):
    document = docx.Document()
    document.add_paragraph("表23-1 分类")
    table = document.add_table(rows=3, cols=3)
    for r, row in enumerate([["类型", "部位", "备注"], ["经典", "中枢", "多行\n说明"], ["", "", ""]]):
        for c, text in enumerate(row):
            table.cell(r, c).text = text
    table.cell(0, 1).merge(table.cell(0, 2))
    document.add_paragraph("")
    document.add_paragraph("正文")
    path = tmp_path / "t.docx"
    document.save(str(path))
    [item] = read(path, "docx")
    assert item.value == "表23-1 分类\n类型\t部位 备注\n经典\t中枢\t多行 说明\n正文"


def test_broken_docx_files(tmp_path: Path):
    data = (GUIDES / "2014年欧洲抗风湿联盟关于类风湿关节炎目标治疗的推荐更新.docx").read_bytes()
    (tmp_path / "cut.docx").write_bytes(data[: len(data) // 2])
    assert failure(tmp_path / "cut.docx", "docx") == "truncated_archive"
    (tmp_path / "lfs.docx").write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 12164\n")
    assert failure(tmp_path / "lfs.docx", "docx") == "lfs_pointer"


def test_xls_rows_keyed_by_header():
    items = read(XLS, "xls")
    assert len(items) == 40
    assert items[0] == RawRecord(XLS.name, "sheet ChatMed-TCM 结果对比 row 1", {
        "问题": "<s>问：\n我最近腹痛，有什么方剂可以推荐吗？\n答：\n",
        "LlaMa原始": "建议您到医院做一下检查。",
        "ShenNong-TCM-LLM": "很抱歉听到您的不适。但是作为一个AI助手，我不能为您提供任何医疗建议或处方药物的解决方案。"
                            "如果您感到不舒服或者有其他健康问题需要解决的话，请咨询医生或其他专业医疗保健人员的意见并获得适当治疗方案。",
    })
    assert items[1].value["问题"] == "<s>问：\n腹痛怎么办啊？\n答：\n"
    assert items[-1].location == "sheet ChatMed-TCM 结果对比 row 40"


def test_broken_xls(tmp_path: Path):
    (tmp_path / "bad.xls").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600)
    assert failure(tmp_path / "bad.xls", "xls") == "bad_xls"
    (tmp_path / "csv.xls").write_bytes(b"a,b\n1,2\n")
    assert failure(tmp_path / "csv.xls", "xls") == "bad_xls"
