"""The `eval` config: eval rows are written in the task formats with a `task` column, never into training
configs; the licence gate withholds an eval source from the output but it still decontaminates."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from tests.helpers_badinput import entry, run_build

QUESTION = "患者男性，45岁，反复上腹痛三年，进食后缓解，夜间痛醒，最可能的诊断是什么疾病呢"
BENCH = {"bench": {"bench.jsonl": (json.dumps({"query": QUESTION, "response": "十二指肠溃疡"}, ensure_ascii=False)
                                   + "\n" + json.dumps({"query": "高血压的定义是什么", "response": "收缩压≥140"},
                                                       ensure_ascii=False) + "\n").encode()},
         "train_qa": {"train.jsonl": (json.dumps({"query": QUESTION, "response": "十二指肠溃疡可能性大"},
                                                 ensure_ascii=False) + "\n").encode()}}
SOURCES = [entry("bench", "bench.jsonl", "query_response", role="eval", license="Tianchi terms",
                 license_terms=["no-redistribution"]),
           entry("train_qa", "train.jsonl", "query_response")]


def _eval_rows(out) -> list[dict]:
    return [row for path in sorted((out / "eval").glob("*.parquet")) for row in pq.read_table(path).to_pylist()]


def test_eval_rows_form_their_own_config(tmp_path) -> None:
    run = run_build(tmp_path, SOURCES, BENCH, extra_args=("--workers", "2"))
    assert run.code == 0, run.stderr
    rows = _eval_rows(run.out)
    assert [(r["source"], r["task"], r["messages"][0]["content"]) for r in rows] == [
        ("bench", "sft", QUESTION), ("bench", "sft", "高血压的定义是什么")]
    assert all(r["text"] is None and r["prompt"] is None and r["chosen"] is None for r in rows)
    assert run.source("bench")["counts"]["eval_written"] == 2
    assert run.manifest["splits"]["eval"] == {"test": {"rows": 2, "shards": 1}}
    assert run.counts("train_qa")["decontaminated"] == 1                  # the benchmark item left training
    assert "bench" not in {r["source"] for r in run.rows("sft")}
    card = (run.out / "README.md").read_text(encoding="utf-8")
    assert "config_name: eval" in card and "| eval | test | 2 |" in card


def test_licence_gate_withholds_eval_rows_but_still_decontaminates(tmp_path) -> None:
    run = run_build(tmp_path, SOURCES, BENCH, extra_args=("--workers", "2", "--license-profile", "publishable"))
    assert run.code == 0, run.stderr
    assert _eval_rows(run.out) == [] and "eval" not in run.manifest["splits"]
    bench = run.source("bench")
    assert bench["withheld"] == "licence category no-redistribution is denied (--license-profile publishable)"
    assert bench["counts"]["eval_written"] == 0
    assert run.counts("train_qa")["decontaminated"] == 1                  # still used to clean training data
    card = (run.out / "README.md").read_text(encoding="utf-8")
    assert "config_name: eval" not in card and "used only to decontaminate" in card
