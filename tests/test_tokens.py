"""Token counts: a tiny tokenizer built here (no download) against the character estimate, per batch,
per source and per config, and through a real build with `--tokenizer`."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from etl.cli import main
from etl.schemas import arrow_schema
from etl.tokens import ESTIMATE_LABEL, CharEstimate, TokenizerError, TokenTally, batch_texts, load_counter
from tests.helpers_badinput import GOOD_ID, good_entry, write_catalog


def tiny_tokenizer(folder: Path) -> Path:
    """A word-level tokenizer splitting on whitespace and punctuation: one token per word or mark."""
    vocab = {"[UNK]": 0, "hello": 1, "world": 2}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


def sft_batch(conversations: list[tuple[str, list[tuple[str, str]]]]) -> pa.RecordBatch:
    schema = arrow_schema("sft")
    rows = [{"id": f"{src}/{i}", "source": src, "split": "train", "tools": None, "lang": "en", "lang_score": 1.0,
             "license": "MIT", "dup_count": 1, "meta": "{}", "messages": [{"role": r, "content": c} for r, c in turns]}
            for i, (src, turns) in enumerate(conversations)]
    return pa.RecordBatch.from_pylist(rows, schema=schema)


def test_char_estimate_counts_cjk_and_other_characters() -> None:
    batch = sft_batch([("a", [("user", "头痛"), ("assistant", "多休息")]),     # 5 CJK + the joining newline
                       ("b", [("user", "abcd efgh"), ("assistant", "ij")])])  # 10 non-space others -> 3
    counts = CharEstimate().count(batch_texts(batch, "sft")).to_list()
    assert counts == [5, 3]


def test_tokenizer_counts_per_source_and_config(tmp_path: Path) -> None:
    counter = load_counter(str(tiny_tokenizer(tmp_path / "tok")))
    assert counter.method == "tokenizer" and "tok" in counter.label
    tally = TokenTally(counter)
    tally.add("sft", "train", sft_batch([("a", [("user", "hello world"), ("assistant", "hello, world!")]),
                                         ("b", [("user", "x y z"), ("assistant", "w")])]))
    tally.add("sft", "validation", sft_batch([("a", [("user", "hello"), ("assistant", "world")])]))
    manifest = tally.as_manifest()
    # a: 2 + 4 (hello , world !) = 6 and 2; b: 3 + 1 = 4
    assert manifest["sources"] == {"a": 8, "b": 4}
    assert manifest["configs"] == {"sft": {"train": 10, "validation": 2}}
    assert manifest["method"] == "tokenizer"


def test_unknown_tokenizer_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="no-such-tokenizer"):
        load_counter(str(tmp_path / "no-such-tokenizer"))


def test_build_with_and_without_tokenizer(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / GOOD_ID).mkdir(parents=True)
    (mirror / GOOD_ID / "good.jsonl").write_text(
        '{"query": "hello world", "response": "hello"}\n{"query": "x y", "response": "z"}\n', encoding="utf-8")
    catalog = write_catalog(tmp_path / "sources.yaml", [good_entry()])
    tok = tiny_tokenizer(tmp_path / "tok")
    args = ["build", "--catalog", str(catalog), "--mirror", str(mirror), "--workers", "2"]
    assert main([*args, "--out", str(tmp_path / "est")]) == 0
    assert main([*args, "--out", str(tmp_path / "tok_out"), "--tokenizer", str(tok)]) == 0
    estimate = json.loads((tmp_path / "est" / "manifest.json").read_text())
    counted = json.loads((tmp_path / "tok_out" / "manifest.json").read_text())
    assert estimate["tokens"]["label"] == ESTIMATE_LABEL
    assert counted["tokens"]["configs"] == {"sft": {"train": 6}}        # 2 + 1 + 2 + 1 words
    assert counted["tokens"]["sources"] == {GOOD_ID: 6}
    assert estimate["config_hash"] != counted["config_hash"]
    card = (tmp_path / "tok_out" / "README.md").read_text(encoding="utf-8")
    assert "| sft | train | 2 | 6 |" in card and "Tokens: tokenizer tok" in card
    assert main([*args, "--out", str(tmp_path / "bad"), "--tokenizer", str(tmp_path / "missing")]) == 2
    assert not (tmp_path / "bad" / "manifest.json").exists()
