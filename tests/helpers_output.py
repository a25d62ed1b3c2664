"""A small output folder in the layout `medcorpus build` writes (DESIGN §4), for the card, publish and
export tests. Plain functions, no fixtures: tests call `make_output(tmp_path / "out")`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from etl.schemas import REJECTS_SCHEMA, arrow_schema
from etl.tokens import CharEstimate, TokenTally

SCHEMAS = {task: arrow_schema(task) for task in ("pretrain", "sft", "reward", "eval")} | {"rejects": REJECTS_SCHEMA}
WEATHER_TOOLS = json.dumps([{"type": "function", "function": {
    "name": "get_weather", "description": "weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])


def call(name: str, arguments: str) -> dict[str, Any]:
    return {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": name, "arguments": arguments}}]}

SOURCES: dict[str, dict[str, Any]] = {
    "med_wiki": {"name": "Medical Wiki", "task": "pretrain", "license": "CC BY-SA 4.0", "license_terms": [],
                 "homepage": "https://example.org/med_wiki", "citation": None},
    "cmedqa2": {"name": "cMedQA2", "task": "sft", "license": "GPL-3.0 (non-commercial research)",
                "license_terms": ["non-commercial"], "homepage": "https://github.com/zhangsheng93/cMedQA2",
                "citation": "@article{zhang2018cmedqa2,\n  title={Multi-scale attentive interaction networks},\n"
                            "  year={2018}\n}"},
    "chatdoctor": {"name": "ChatDoctor", "task": "sft", "license": "Apache-2.0", "license_terms": [],
                   "homepage": "https://github.com/Kent0n-Li/ChatDoctor", "citation": "Li et al. 2023, ChatDoctor."},
    "med_pref": {"name": "Medical Preference", "task": "reward", "license": "unknown",
                 "license_terms": ["unclear"], "homepage": "https://example.org/med_pref", "citation": None},
    "cmb_eval": {"name": "CMB", "task": "sft", "role": "eval", "license": "Apache-2.0", "license_terms": [],
                 "homepage": "https://github.com/FreedomIntelligence/CMB", "citation": "@misc{cmb}"},
}


def _common(source: str, split: str, index: int, lang: str) -> dict[str, Any]:
    return {"id": f"{source}/{index}", "source": source, "split": split, "lang": lang, "lang_score": 0.99,
            "license": SOURCES[source]["license"], "dup_count": 1, "meta": "{}"}


def _rows() -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Rows per (task, split), in the fixed order the shards hold them."""
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    rows[("pretrain", "train")] = [
        {**_common("med_wiki", "train", i, "zh" if i % 3 else "en"), "text": f"医学知识 第{i}条。 Medical fact {i}."}
        for i in range(6)
    ]
    rows[("sft", "train")] = [
        {**_common("cmedqa2", "train", i, "zh"),
         "messages": [{"role": "user", "content": f"头痛怎么办？{i}"}, {"role": "assistant", "content": f"多休息。{i}"}]}
        for i in range(5)
    ] + [
        {**_common("chatdoctor", "train", i, "en"),
         "messages": [{"role": "system", "content": "You are a doctor."},
                      {"role": "user", "content": f"I have a cough {i}"},
                      {"role": "assistant", "content": f"How long? {i}"},
                      {"role": "user", "content": "Two days."},
                      {"role": "assistant", "content": f"Drink water. {i}"}]}
        for i in range(3)
    ]
    rows[("sft", "train")].append({
        **_common("chatdoctor", "train", 3, "zh"), "tools": WEATHER_TOOLS,
        "messages": [{"role": "user", "content": "北京天气？"}, call("get_weather", '{"city": "北京"}'),
                     {"role": "tool", "content": '{"weather": "晴"}'}, {"role": "assistant", "content": "北京晴。"}]})
    rows[("sft", "validation")] = [
        {**_common("cmedqa2", "validation", 100 + i, "zh"),
         "messages": [{"role": "user", "content": f"发烧吗？{i}"}, {"role": "assistant", "content": f"量体温。{i}"}]}
        for i in range(2)
    ]
    rows[("reward", "train")] = [
        {**_common("med_pref", "train", i, "en"),
         "prompt": [{"role": "user", "content": f"Is aspirin safe? {i}"}],
         "chosen": [{"role": "assistant", "content": f"Ask your doctor; it depends. {i}"}],
         "rejected": [{"role": "assistant", "content": f"Always. {i}"}], "tools": None}
        for i in range(4)
    ]
    rows[("reward", "train")].append({
        **_common("med_pref", "train", 4, "zh"), "tools": WEATHER_TOOLS,
        "prompt": [{"role": "user", "content": "北京天气？"}],
        "chosen": [call("get_weather", '{"city": "北京"}')],
        "rejected": [{"role": "assistant", "content": "北京天气很好。"}]})
    rows[("eval", "test")] = [
        {**_common("cmb_eval", "test", i, "zh"), "task": "sft",
         "messages": [{"role": "user", "content": f"以下哪项是发热的原因？{i}"}, {"role": "assistant", "content": "A"}]}
        for i in range(2)
    ]
    return rows


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_output(out: Path, *, license_terms: dict[str, list[str]] | None = None,
                write_readme: bool = True) -> dict[str, Any]:
    """Write shards, rejects, a manifest and (unless told not to) the card; return the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, Any]] = []
    splits: dict[str, dict[str, dict[str, int]]] = {}
    langs: dict[str, dict[str, int]] = {}
    written: dict[str, int] = {}
    by_split: dict[str, dict[str, int]] = {}
    eval_written: dict[str, int] = {}
    tally = TokenTally(CharEstimate())
    for (task, split), rows in _rows().items():
        rel = f"{task}/{split}-00000-of-00001.parquet"
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMAS[task]), path, compression="zstd")
        shards.append({"path": rel, "task": task, "split": split, "rows": len(rows),
                       "bytes": path.stat().st_size, "sha256": _sha256(path)})
        splits.setdefault(task, {})[split] = {"rows": len(rows), "shards": 1}
        for batch in pq.read_table(path).to_batches():
            tally.add(task, split, batch, task=batch.column("task")[0].as_py() if task == "eval" else None)
        if task == "eval":
            for row in rows:
                eval_written[row["source"]] = eval_written.get(row["source"], 0) + 1
            continue
        for row in rows:
            by_split.setdefault(row["source"], {}).setdefault(split, 0)
            by_split[row["source"]][split] += 1
            langs.setdefault(row["source"], {}).setdefault(row["lang"], 0)
            langs[row["source"]][row["lang"]] += 1
            written[row["source"]] = written.get(row["source"], 0) + 1
    rejects = [{"source": "cmedqa2", "file": "answer.csv", "location": "17", "reason": "empty_output",
                "message": "answer is empty", "raw": "17,,"}]
    rel = "rejects/rejects-00000-of-00001.parquet"
    (out / "rejects").mkdir(exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rejects, schema=SCHEMAS["rejects"]), out / rel, compression="zstd")
    shards.append({"path": rel, "task": "rejects", "split": "rejects", "rows": 1,
                   "bytes": (out / rel).stat().st_size, "sha256": _sha256(out / rel)})
    sources: dict[str, Any] = {}
    for sid, spec in SOURCES.items():
        n = written.get(sid, 0)
        terms = (license_terms or {}).get(sid, spec["license_terms"])
        sources[sid] = {
            "name": spec["name"], "task": spec["task"], "role": spec.get("role", "train"),
            "license": spec["license"], "license_terms": terms, "homepage": spec["homepage"],
            "citation": spec["citation"], "revision": "0" * 40, "host": "github", "status": "ok",
            "error": None, "files": [{"path": "data.json", "size": 10, "sha256": "a" * 64}],
            "counts": {"read": n + 3, "converted": n + 2, "rejected": 1, "filtered": 0, "rows": n + 2,
                       "eval_rows": 0 if spec.get("role", "train") == "train" else 7,
                       "rejected_by_reason": {"empty_output": 1}, "filtered_by_reason": {},
                       "exact_dup": 1, "near_dup": 1, "decontaminated": 0, "written": n,
                       "written_by_split": by_split.get(sid, {}), "eval_written": eval_written.get(sid, 0)},
            "langs": langs.get(sid, {}),
        }
    manifest = {
        "tool": "medcorpus", "version": "0.1.0", "config_hash": "0123456789abcdef",
        "build": {"dedup": {"exact": True, "minhash": {"num_perm": 128, "threshold": 0.8, "ngram": 5, "seed": 1}},
                  "decontam": {"enabled": True, "ngram_zh": 13, "ngram_en": 8, "threshold": 0.5},
                  "langid": {"langs": ["zh", "en"]}},
        "sources": sources, "splits": splits, "shards": shards,
        "totals": {"rows": sum(written.values()), "rejected": 1},
        "tokens": tally.as_manifest(),
    }
    if write_readme:
        from etl.card import write_card

        write_card(out, manifest)
    from etl.build import output_files

    manifest["files"] = output_files(out)  # checksums of the card and chart, as a build records them
    (out / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
    return manifest
