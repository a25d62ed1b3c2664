"""`medcorpus inspect` on every fixture family: the entry it proposes converts the fixture, through the
real conversion, with no rejects."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
import yaml

from etl.catalog import Source
from etl.cli import main
from etl.conversion import convert_source
from etl.fetch.base import fetch_folder
from etl.inspect import inspect_path
from tests.helpers_convert import catalog_source

FIXTURES = Path(__file__).parent / "fixtures"
FAMILIES = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir() and p.name != "handmade")
# Families no entry can convert on their own, and why (the catalogue cannot either).
UNCONVERTIBLE = {
    "cmedqa2": "the fixture holds only the candidate lists; question.zip and answer.zip could not be obtained",
}
# Where the catalogue's choice is known, inspect must find the same converter.
EXPECTED_FORMAT = {
    "medical_dialog_raw_zh": "meddialog_raw", "medical_dialog_raw_en": "meddialog_raw", "pubmedqa": "pubmedqa",
    "zhongjing_huatuo26m_test": "huatuo26m", "medicalgpt_sft_medical": "sharegpt", "hh_rlhf": "hh_rlhf",
    "xjun_pretrain_docx": "docx_text", "qizhen_drug_eval": "qizhen_drug_eval", "cblue_chip_mdcfnpc": "chip_mdcfnpc",
}


@pytest.mark.parametrize("family", [f for f in FAMILIES if f not in UNCONVERTIBLE])
def test_proposed_entry_converts_the_fixture_without_rejects(family: str, tmp_path: Path) -> None:
    folder = FIXTURES / family
    proposals = inspect_path(folder)
    catalogued = {PurePosixPath(f).name for f in catalog_source(family).files}
    formats = set()
    for index, proposal in enumerate(proposals):
        names = {PurePosixPath(f.relpath).name for f in proposal.files}
        if proposal.best is None:  # only data the catalogue does not convert on its own either
            assert not names & catalogued, f"{family}: no entry proposed for {sorted(names & catalogued)}"
            continue
        source = Source.model_validate(proposal.entry)
        counts = convert_source(source, fetch_folder(source, folder), tmp_path / str(index)).counts
        assert counts["read"] == proposal.best.read > 0
        assert counts["rejected"] == 0 and counts["partial_rejects"] == 0, (family, counts["rejected_by_reason"])
        made = counts["rows"] + counts["eval_rows"]
        assert made > 0 or counts["filtered"] == counts["read"], (family, counts)
        formats.add(source.format)
    if family in EXPECTED_FORMAT:
        assert EXPECTED_FORMAT[family] in formats


def test_one_column_table_is_read_as_a_table(tmp_path: Path) -> None:
    """The header line `input` of the 本草 question sample: inspect proposes the csv reader and maps the
    column, instead of the plain-text reading that turned the header into a row."""
    (proposal,) = inspect_path(FIXTURES / "huatuo_llama_knowledge_tuning")
    assert (proposal.entry["format"], proposal.entry["reader"], proposal.entry["fields"]) == ("text", "csv", {"text": "input"})
    assert proposal.best.read == 40 and not proposal.best.rejected


def test_cli_prints_a_loadable_entry_with_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(FIXTURES / "medical_dialog_raw_zh")]) == 0
    out = capsys.readouterr().out
    assert "container plain, encoding utf-8, layout text" in out
    assert "meddialog_raw (reader meddialog_raw): 13 records read, 11 converted into 11 rows; rejected: none; " \
           "filtered: no_doctor_reply 2" in out
    entry = yaml.safe_load("\n".join(line for line in out.splitlines() if not line.startswith("#")))[0]
    assert Source.model_validate(entry).format == "meddialog_raw" and entry["files"] == ["qa_zh_1.txt"]


def test_gb18030_file_gets_its_encoding_in_options(tmp_path: Path) -> None:
    path = tmp_path / "问答.csv"
    path.write_bytes("问,答\n头晕怎么办,多休息\n胃疼吃什么,清淡饮食\n".encode("gb18030"))
    (proposal,) = inspect_path(path)
    assert proposal.files[0].encoding == "gb18030"
    # alpaca and query_response make the same rows of a two-column table; ties go by name
    assert (proposal.entry["format"], proposal.entry["fields"]) == ("alpaca", {"instruction": "问", "output": "答"})
    assert proposal.entry["options"] == {"encoding": "gb18030"}
    assert (proposal.best.converted, proposal.best.rows) == (2, 2)


def test_archive_is_inspected_through_its_members() -> None:
    """The demo mirror's zip around the real MedDialog excerpt: the member is sniffed and the raw
    MedDialog converter proposed for the archive itself."""
    archive = FIXTURES.parent.parent / "examples" / "mirror" / "medical_dialog_raw_zh" / "data" / \
        "Medical-Dialogue-Dataset-Chinese.zip"
    (proposal,) = inspect_path(archive)
    assert (proposal.files[0].container, proposal.files[0].layout) == ("zip", "text")
    assert proposal.entry["format"] == "meddialog_raw" and proposal.entry["files"] == [archive.name]
    assert (proposal.best.read, proposal.best.converted, dict(proposal.best.filtered)) == (13, 11, {"no_doctor_reply": 2})
