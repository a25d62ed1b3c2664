"""LLaMA-Factory export: the files and dataset_info.json follow LLaMA-Factory's documented fields and
format rules (data/README.md of hiyouga/LLaMA-Factory), and reading them back by those rules gives the
corpus rows again. Also the TRL column contract of the Parquet output itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from etl.cli import main
from etl.export import ExportError, export_llamafactory, training_snippet
from tests.helpers_badinput import plain_turns
from tests.helpers_output import make_output

# dataset_info.json keys LLaMA-Factory documents for a local file entry, and its column / tag names.
ENTRY_KEYS = {"file_name", "formatting", "ranking", "subset", "split", "folder", "num_samples", "columns", "tags"}
COLUMN_KEYS = {"prompt", "query", "response", "history", "messages", "system", "tools", "images", "videos",
               "audios", "chosen", "rejected", "kto_tag"}
TAG_KEYS = {"role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag", "function_tag", "system_tag"}


def read_as_llamafactory(dataset_dir: Path, name: str) -> list[dict[str, Any]]:
    """Read one dataset the way LLaMA-Factory's documented rules describe, into TRL-shaped rows.

    A key absent from `columns` / `tags` is unset once the block is given, so each entry must name every
    column and tag it relies on; sharegpt turns alternate user (odd) and assistant (even) positions, a
    ranking conversation has an odd length and its chosen / rejected are assistant messages.
    """
    info = json.loads((dataset_dir / "dataset_info.json").read_text(encoding="utf-8"))[name]
    assert set(info) <= ENTRY_KEYS, set(info) - ENTRY_KEYS
    assert info.get("formatting", "alpaca") in {"alpaca", "sharegpt"}
    columns = info.get("columns", {})
    assert set(columns) <= COLUMN_KEYS
    tags = info.get("tags", {})
    assert set(tags) <= TAG_KEYS
    path = dataset_dir / info["file_name"]
    assert path.suffix in {".json", ".jsonl"}
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    rows = []
    for record in records:
        system = record[columns["system"]] if columns.get("system") else ""
        head = [{"role": "system", "content": system}] if system else []
        if info.get("formatting", "alpaca") == "alpaca":
            if columns.get("response") is None:       # pretraining: the prompt column is the document
                rows.append({"id": record["id"], "text": record[columns["prompt"]]})
                continue
            query = [record[c] for c in (columns.get("prompt"), columns.get("query")) if c and record[c]]
            rows.append({"id": record["id"], "messages": [*head, {"role": "user", "content": "\n".join(query)},
                                                           {"role": "assistant", "content": record[columns["response"]]}]})
            continue
        role_tag, content_tag = tags["role_tag"], tags["content_tag"]
        names = {tags["user_tag"]: "user", tags["assistant_tag"]: "assistant",
                 tags["function_tag"]: "call", tags["observation_tag"]: "tool"}
        odd, even = {"user", "tool"}, {"assistant", "call"}    # LLaMA-Factory's accepted tags per position
        turns = record[columns["messages"]]
        for position, turn in enumerate(turns):
            assert names[turn[role_tag]] in (odd if position % 2 == 0 else even), turns
        messages = [*head, *(_turn(names[t[role_tag]], t[content_tag]) for t in turns)]
        tools = record.get(columns.get("tools", ""), "")
        assert isinstance(tools, str)
        if info.get("ranking"):
            assert len(turns) % 2 == 1
            pair = [record[columns["chosen"]], record[columns["rejected"]]]
            assert all(names[p[role_tag]] in even for p in pair)
            rows.append({"id": record["id"], "prompt": messages, "tools": tools or None,
                         "chosen": [_turn(names[pair[0][role_tag]], pair[0][content_tag])],
                         "rejected": [_turn(names[pair[1][role_tag]], pair[1][content_tag])]})
        else:
            assert len(turns) % 2 == 0
            rows.append({"id": record["id"], "messages": messages, "tools": tools or None})
    return rows


def _turn(kind: str, value: str) -> dict[str, Any]:
    """A corpus turn from a LLaMA-Factory one: a function_call value is `{name, arguments}` (or a list)."""
    if kind != "call":
        return {"role": kind, "content": value}
    calls = json.loads(value)
    return {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": c["name"], "arguments": json.dumps(c["arguments"], ensure_ascii=False)}}
        for c in (calls if isinstance(calls, list) else [calls])]}


def _corpus(out: Path, task: str, split: str, columns: list[str]) -> dict[str, dict]:
    table = pq.read_table(out / f"{task}/{split}-00000-of-00001.parquet", columns=["id", *columns])
    return {row["id"]: plain_turns(row) for row in table.to_pylist()}


def test_export_round_trip(tmp_path: Path) -> None:
    out, dest = tmp_path / "out", tmp_path / "lf"
    make_output(out)
    dest.mkdir()
    (dest / "dataset_info.json").write_text(json.dumps({"alpaca_en_demo": {"file_name": "alpaca_en_demo.json"}}))
    entries = export_llamafactory(out, dest)
    assert [(e.name, e.rows) for e in entries] == [
        ("medcorpus_pretrain", 6), ("medcorpus_sft_alpaca", 5), ("medcorpus_sft_alpaca_validation", 2),
        ("medcorpus_sft_sharegpt", 4), ("medcorpus_reward", 5), ("medcorpus_eval_sft_alpaca_test", 2)]
    info = json.loads((dest / "dataset_info.json").read_text(encoding="utf-8"))
    assert "alpaca_en_demo" in info                       # merged into an existing dataset_info.json
    assert info["medcorpus_reward"]["ranking"] is True
    assert info["medcorpus_sft_sharegpt"]["formatting"] == "sharegpt"
    for name in ("medcorpus_sft_sharegpt", "medcorpus_reward"):
        assert info[name]["columns"]["tools"] == "tools"
        assert (info[name]["tags"]["function_tag"], info[name]["tags"]["observation_tag"]) == \
            ("function_call", "observation")
    records = [json.loads(line) for line in (dest / "medcorpus/medcorpus_sft_sharegpt.jsonl").read_text().splitlines()]
    tool_record = next(r for r in records if r["tools"])
    assert [t["from"] for t in tool_record["conversations"]] == ["human", "function_call", "observation", "gpt"]
    assert json.loads(tool_record["conversations"][1]["value"]) == {"name": "get_weather", "arguments": {"city": "北京"}}
    assert json.loads(tool_record["tools"])[0]["function"]["name"] == "get_weather"

    pretrain = _corpus(out, "pretrain", "train", ["text"])
    assert {r["id"]: r for r in read_as_llamafactory(dest, "medcorpus_pretrain")} == pretrain
    sft = _corpus(out, "sft", "train", ["messages", "tools"])
    exported = read_as_llamafactory(dest, "medcorpus_sft_alpaca") + read_as_llamafactory(dest, "medcorpus_sft_sharegpt")
    assert {r["id"]: {"tools": None, **r} for r in exported} == sft
    assert {r["id"]: {"tools": None, **r} for r in read_as_llamafactory(dest, "medcorpus_sft_alpaca_validation")} == \
        _corpus(out, "sft", "validation", ["messages", "tools"])
    reward = _corpus(out, "reward", "train", ["prompt", "chosen", "rejected", "tools"])
    assert {r["id"]: r for r in read_as_llamafactory(dest, "medcorpus_reward")} == reward

    first = {p.name: p.read_bytes() for p in (dest / "medcorpus").iterdir()}
    export_llamafactory(out, dest)                        # deterministic and idempotent
    assert {p.name: p.read_bytes() for p in (dest / "medcorpus").iterdir()} == first
    assert list(json.loads((dest / "dataset_info.json").read_text())) == list(info)


def test_training_snippet(tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_output(out)
    snippet = training_snippet("data", export_llamafactory(out, tmp_path / "lf"))
    assert "stage: sft\ndataset_dir: data\ndataset: medcorpus_sft_alpaca,medcorpus_sft_sharegpt\n" \
           "eval_dataset: medcorpus_sft_alpaca_validation" in snippet
    assert "stage: dpo\ndataset_dir: data\ndataset: medcorpus_reward" in snippet
    assert "stage: pt\ndataset_dir: data\ndataset: medcorpus_pretrain" in snippet


def test_export_command_and_refusal(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    make_output(out)
    assert main(["export", "--format", "llamafactory", str(out), str(tmp_path / "lf")]) == 0
    assert "medcorpus_reward" in capsys.readouterr().out
    (out / "reward" / "train-00000-of-00001.parquet").unlink()
    with pytest.raises(ExportError, match="missing"):
        export_llamafactory(out, tmp_path / "lf2")
    assert not (tmp_path / "lf2").exists()


def test_trl_column_contract(tmp_path: Path) -> None:
    """sft `messages` and reward `prompt`/`chosen`/`rejected` are TRL's conversational formats as they are
    (after dropping null keys, as TRL's trainers do): see also test_consumers.py."""
    out = tmp_path / "out"
    make_output(out)
    for row in map(plain_turns, pq.read_table(out / "sft/train-00000-of-00001.parquet").to_pylist()):
        roles = [m["role"] for m in row["messages"]]
        assert all(set(m) <= {"role", "content", "tool_calls"} for m in row["messages"])
        body = roles[1:] if roles[0] == "system" else roles
        assert body[0] == "user" and body[-1] == "assistant"
        assert (row["tools"] is None) == all("tool_calls" not in m and m["role"] != "tool" for m in row["messages"])
    for row in map(plain_turns, pq.read_table(out / "reward/train-00000-of-00001.parquet").to_pylist()):
        assert row["prompt"][-1]["role"] in ("user", "tool")
        for reply in (row["chosen"], row["rejected"]):
            assert len(reply) == 1 and reply[0]["role"] == "assistant"
        assert row["chosen"] != row["rejected"]
