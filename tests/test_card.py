"""The dataset card: publishable metadata, `datasets` configs that load offline, deterministic chart."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import datasets
import huggingface_hub.constants
import pytest
import yaml

from etl.card import card_metadata, hub_license_id, render_card, size_category, write_card
from etl.chart import render_composition
from tests.helpers_output import make_output


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_card_metadata_and_sections(tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_output(out)
    text = (out / "README.md").read_text(encoding="utf-8")
    meta = _front_matter(text)
    assert meta["license"] == ["apache-2.0", "cc-by-sa-4.0", "gpl-3.0", "unknown"]
    assert meta["language"] == ["en", "zh"]
    assert meta["size_categories"] == ["n<1K"]
    assert "text-generation" in meta["task_categories"]
    configs = {c["config_name"]: c["data_files"] for c in meta["configs"]}
    assert configs["sft"] == [{"split": "train", "path": "sft/train-*.parquet"},
                              {"split": "validation", "path": "sft/validation-*.parquet"}]
    assert set(configs) == {"pretrain", "sft", "reward", "eval"}
    assert configs["eval"] == [{"split": "test", "path": "eval/test-*.parquet"}]
    tokens = make_output(tmp_path / "again", write_readme=False)["tokens"]
    cmedqa2_tokens = tokens["sources"]["cmedqa2"]
    for needle in ("## Composition", "stats/composition.png",
                   f"| `cmedqa2` | 7 | train 5, validation 2 | {cmedqa2_tokens:,} | 63.6% | zh 100.0%",
                   f"| sft | validation | 2 | {tokens['configs']['sft']['validation']:,} |",
                   "| eval | test | 2 |", "Tokens: estimate (no tokenizer given)",
                   "published as the `eval` config", "`tool_calls`",
                   "Non-commercial use only", "`cmedqa2`", "## Citations", "@article{zhang2018cmedqa2",
                   "0123456789abcdef", "128 permutations", "Jaccard threshold 0.8", "13-grams",
                   "`messages`", "`chosen`", "https://github.com/zhangsheng93/cMedQA2", "(`cmb_eval`)"):
        assert needle in text, needle
    assert (out / "stats" / "composition.png").read_bytes().startswith(b"\x89PNG")
    assert not list(out.glob(".*.tmp")) and not list((out / "stats").glob(".*.tmp"))


def test_card_omits_empty_config_and_flags_other_licence(tmp_path: Path) -> None:
    manifest = make_output(tmp_path / "out", write_readme=False)
    manifest = copy.deepcopy(manifest)
    del manifest["splits"]["reward"]
    manifest["sources"]["med_pref"]["counts"]["written"] = 0
    manifest["sources"]["med_pref"]["status"] = "failed"
    manifest["sources"]["med_pref"]["error"] = "download failed: 404"
    manifest["sources"]["chatdoctor"]["license"] = "Custom research licence"
    meta = card_metadata(manifest)
    assert [c["config_name"] for c in meta["configs"]] == ["pretrain", "sft", "eval"]
    assert "other" in meta["license"] and meta["license_name"]
    text = render_card(manifest)
    assert "| `med_pref` | failed | download failed: 404 |" in text


def test_card_is_deterministic(tmp_path: Path) -> None:
    manifest = make_output(tmp_path / "a")
    write_card(tmp_path / "b", json.loads(json.dumps(manifest)))
    for rel in ("README.md", "stats/composition.png"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_chart_without_rows(tmp_path: Path) -> None:
    render_composition({"sources": {}}, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(("text", "expected"), [
    ("Apache-2.0", "apache-2.0"), ("GPL-3.0 (non-commercial research)", "gpl-3.0"),
    ("CC BY-NC 4.0", "cc-by-nc-4.0"), ("Custom terms", "other"), ("cc-by-nc-4.0", "cc-by-nc-4.0"), ("unknown", "unknown"), ("", "unknown"),
    ("MIT; see repo", "mit"),
])
def test_hub_license_id(text: str, expected: str) -> None:
    assert hub_license_id(text) == expected


def test_size_category() -> None:
    assert size_category(999) == "n<1K"
    assert size_category(1000) == "1K<n<10K"
    assert size_category(5_000_000) == "1M<n<10M"


def test_load_dataset_offline_from_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Offline for this test only: the libraries read these switches at import, so patch their constants.
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    out = tmp_path / "out"
    make_output(out)
    sft = datasets.load_dataset(str(out), "sft", cache_dir=str(tmp_path / "cache"))
    assert set(sft) == {"train", "validation"}
    assert sft["train"].num_rows == 9 and sft["validation"].num_rows == 2
    # a plain turn: role and content, the struct's tool_calls null; plain rows have a null `tools`
    assert sft["train"][0]["messages"][0] == {"role": "user", "content": "头痛怎么办？0", "tool_calls": None}
    assert sft["train"][0]["tools"] is None
    tool_row = sft["train"][8]
    assert tool_row["messages"][1]["tool_calls"] == [
        {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "北京"}'}}]
    assert json.loads(tool_row["tools"])[0]["function"]["name"] == "get_weather"
    reward = datasets.load_dataset(str(out), "reward", cache_dir=str(tmp_path / "cache"))
    assert {"prompt", "chosen", "rejected", "tools"} <= set(reward["train"].column_names)
    assert reward["train"][0]["chosen"] == [{"role": "assistant", "content": "Ask your doctor; it depends. 0",
                                            "tool_calls": None}]
    bench = datasets.load_dataset(str(out), "eval", cache_dir=str(tmp_path / "cache"))
    assert set(bench) == {"test"} and bench["test"].num_rows == 2
    assert bench["test"][0]["task"] == "sft" and bench["test"][0]["text"] is None
    assert bench["test"][0]["messages"][1]["content"] == "A"
    pretrain = datasets.load_dataset(str(out), "pretrain", cache_dir=str(tmp_path / "cache"))
    assert pretrain["train"].num_rows == 6
