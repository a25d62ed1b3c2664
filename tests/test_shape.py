"""Wrong-shape records (etl/convert/shape.py): one `schema_mismatch` reason naming the keys found and
expected, every record in rejects, and one line per file in the source's counts (`schema_mismatch_files`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from etl.conversion import convert_source
from etl.convert.base import RecordContext, Reject
from etl.convert.generic import alpaca, text
from etl.fetch.base import FetchedFile, FetchedSource
from etl.fetch.cache import sha256_file
from tests.helpers_convert import MIRROR, catalog_source, convert_source_files

SHAREGPT = MIRROR / "medicalgpt_sft_medical" / "data" / "sft" / "medical_sft_1K_format.jsonl"


def _fetched(source_id: str, folder: Path, name: str) -> FetchedSource:
    path = folder / name
    return FetchedSource(source_id, folder, None, (FetchedFile(name, path, path.stat().st_size, sha256_file(path)),))


def test_sharegpt_file_under_an_alpaca_entry_is_one_schema_mismatch_per_file(tmp_path: Path) -> None:
    """The real MedicalGPT ShareGPT sample catalogued as alpaca: every record rejected as
    `schema_mismatch` (no longer `empty_instruction`), the message naming the keys, and the counts saying
    it once for the file."""
    source = catalog_source("xjun_sft_multichoice").model_copy(update={"files": ("wrong.jsonl",), "sha256": {}})
    folder = tmp_path / "src"
    folder.mkdir()
    shutil.copy(SHAREGPT, folder / "wrong.jsonl")
    records = sum(1 for line in SHAREGPT.read_text(encoding="utf-8").splitlines() if line.strip())
    converted = convert_source(source, _fetched(source.id, folder, "wrong.jsonl"), tmp_path / "work")
    counts = converted.counts
    assert counts["rejected_by_reason"] == {"schema_mismatch": records} and counts["rows"] == 0
    message = "keys found [conversations]; format alpaca expects [input, instruction, output] " \
              "(check format:, fields: and reader:)"
    assert counts["schema_mismatch_files"] == {"wrong.jsonl": {"records": records, "message": message}}
    rejects = pq.read_table(converted.rejects_path).to_pylist()
    assert len(rejects) == records and {r["message"] for r in rejects} == {message}


def test_good_files_have_no_schema_mismatch_entry(tmp_path: Path) -> None:
    source = catalog_source("medicalgpt_sft_medical").model_copy(update={"files": ("ok.jsonl",), "sha256": {}})
    folder = tmp_path / "src"
    folder.mkdir()
    shutil.copy(SHAREGPT, folder / "ok.jsonl")
    counts = convert_source(source, _fetched(source.id, folder, "ok.jsonl"), tmp_path / "work").counts
    assert counts["rejected"] == 0 and "schema_mismatch_files" not in counts


def test_a_record_missing_one_key_is_still_a_bad_record_not_a_wrong_shape() -> None:
    ctx = RecordContext(catalog_source("xjun_sft_multichoice"), "f.json", "element 1", "train")
    with pytest.raises(Reject, match="missing_field"):
        alpaca({"instruction": "头痛怎么办", "input": ""}, ctx)
    with pytest.raises(Reject, match=r"schema_mismatch: keys found \[answer, text\]"):
        alpaca({"text": "头痛怎么办", "answer": "休息"}, ctx)


def test_one_column_table_read_as_text_rejects_its_header_line() -> None:
    """huatuo_llama_knowledge_tuning: the real file's first line is the column name `input`; it used to
    become a pretraining row."""
    result = convert_source_files("huatuo_llama_knowledge_tuning")
    assert result.rejects == [("data/knowledge_tuning_data_sample.txt", "line 1", "schema_mismatch")]
    assert result.rows and all(r["text"] != "input" for r in result.rows)
    ctx = RecordContext(catalog_source("huatuo_llama_knowledge_tuning"), "f.txt", "line 2", "train")
    assert text("input", ctx)[0].text == "input"  # only the first line of a file can be a header
