"""Conversion benchmark: records/s of the generic converters per record vs column-wise, and of the whole
conversion phase on N workers, whole sources (one task per source) vs work units (balanced chunks).

A seeded generator writes JSONL sources in the generic shapes (alpaca, query_response, sharegpt,
messages) and a plain-text pretrain source, one of them much larger than the rest (the usual skew of a
real catalogue: Huatuo-26M next to a few thousand-row sets). Every figure comes from the same run.

    python -m bench.convert_bench --records 300000 --workers 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import random
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from etl.catalog import Source
from etl.conversion import convert_source, convert_unit, merge_units, plan_units
from etl.fetch.base import FetchedFile, FetchedSource, sha256_file

ZH = "患者头晕胸闷气短咳嗽发热腹痛恶心呕吐失眠心悸乏力腹泻头痛建议服用阿司匹林每日两次饭后复查血压血糖"
EN = ["the", "patient", "presented", "with", "dizziness", "chest", "pain", "cough", "fever", "and", "was",
      "advised", "to", "take", "aspirin", "twice", "daily"]

# (source id, format, task, share of the records)
SHAPES = [
    ("bench_alpaca", "alpaca", "sft", 0.55),
    ("bench_qr", "query_response", "sft", 0.15),
    ("bench_sharegpt", "sharegpt", "sft", 0.1),
    ("bench_messages", "messages", "sft", 0.1),
    ("bench_text", "text", "pretrain", 0.1),
]


def _sentence(rng: random.Random) -> str:
    if rng.random() < 0.8:
        return "".join(rng.choice(ZH) for _ in range(rng.randint(20, 120))) + "。"
    return " ".join(rng.choice(EN) for _ in range(rng.randint(8, 40))) + "."


def _record(fmt: str, rng: random.Random) -> Any:
    q, a = _sentence(rng), _sentence(rng) + _sentence(rng)
    if fmt == "alpaca":
        return {"instruction": q, "input": _sentence(rng) if rng.random() < 0.3 else "", "output": a}
    if fmt == "query_response":
        return {"query": q, "response": a}
    if fmt == "sharegpt":
        turns = [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
        if rng.random() < 0.3:
            turns += [{"from": "human", "value": _sentence(rng)}, {"from": "gpt", "value": _sentence(rng)}]
        return {"conversations": turns}
    if fmt == "messages":
        return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
    return q + a


def generate(root: Path, records: int, seed: int = 11) -> list[tuple[Source, FetchedSource]]:
    """Write the benchmark sources below `root` and return them as the build would see them."""
    rng = random.Random(seed)
    sources = []
    for source_id, fmt, task, share in SHAPES:
        folder = root / source_id
        folder.mkdir(parents=True, exist_ok=True)
        name = "data.txt" if fmt == "text" else "data.jsonl"
        path = folder / name
        with open(path, "w", encoding="utf-8") as handle:
            for _ in range(int(records * share)):
                value = _record(fmt, rng)
                handle.write((value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)) + "\n")
        source = Source(id=source_id, name=source_id, host="http", url=f"https://example.org/{name}",
                        files=(name,), task=task, format=fmt, reader="text" if fmt == "text" else None)
        fetched = FetchedSource(source_id, folder, None,
                                (FetchedFile(name, path, path.stat().st_size, sha256_file(path)),))
        sources.append((source, fetched))
    return sources


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in ("rows.parquet", "eval.parquet", "rejects.parquet", "counts.json"):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


def _per_source(sources: list[tuple[Source, FetchedSource]], work: Path, columnar: bool) -> tuple[float, dict[str, str]]:
    start = time.perf_counter()
    digests = {s.id: _digest(convert_source(s, f, work, columnar=columnar).folder) for s, f in sources}
    return time.perf_counter() - start, digests


def _phase(sources: list[tuple[Source, FetchedSource]], work: Path, workers: int,
           units: bool) -> tuple[float, dict[str, str]]:
    """The conversion phase as the build runs it: today's one per-record task per source, or work
    units (column-wise) mapped over the pool and merged per source (etl/build.py fetch_and_convert)."""
    context = multiprocessing.get_context("spawn")
    start = time.perf_counter()
    digests = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        if not units:
            futures = {s.id: pool.submit(convert_source, s, f, work, False) for s, f in sources}
            digests = {sid: _digest(fut.result().folder) for sid, fut in futures.items()}
        else:
            submitted = [(s, f, [pool.submit(convert_unit, u) for u in plan_units(s, f, work, workers)])
                         for s, f in sources]
            for source, fetched, futs in submitted:
                merged = merge_units(source, fetched, work, (fut.result() for fut in futs))
                digests[source.id] = _digest(merged.folder)
    return time.perf_counter() - start, digests


def run(records: int, workers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="medcorpus-convert-bench-") as tmp:
        root = Path(tmp)
        sources = generate(root / "mirror", records)
        counts = sum(int(records * share) for *_, share in SHAPES)
        result: dict[str, Any] = {"records": counts, "workers": workers,
                                  "input_mb": sum(f.files[0].size for _, f in sources) / 1e6}
        timings = {}
        for label, columnar in (("per_record", False), ("columnar", True)):
            work = root / f"work-{label}"
            timings[label] = _per_source(sources, work, columnar)
            shutil.rmtree(work)
        result["per_record_s"], result["columnar_s"] = timings["per_record"][0], timings["columnar"][0]
        result["paths_identical"] = timings["per_record"][1] == timings["columnar"][1]
        phases = {}
        for label, units in (("by_source", False), ("units", True)):
            work = root / f"work-{label}"
            phases[label] = _phase(sources, work, workers, units)
            shutil.rmtree(work)
        result["by_source_s"], result["units_s"] = phases["by_source"][0], phases["units"][0]
        result["units_identical"] = phases["by_source"][1] == phases["units"][1] == timings["per_record"][1]
        return result


def report(result: dict[str, Any]) -> str:
    n = result["records"]

    def line(label: str, seconds: float, base: float) -> str:
        return f"| {label} | {seconds:.1f} s | {n / seconds / 1e3:.1f}k | {base / seconds:.2f}× |"

    return "\n".join([
        f"{n:,} records ({result['input_mb']:.0f} MB JSONL/text, five sources, one holds 55%), "
        f"{result['workers']} workers for the phase.",
        "",
        "| conversion | wall | records/s | vs baseline |",
        "|---|---|---|---|",
        line("one process, per record (baseline)", result["per_record_s"], result["per_record_s"]),
        line("one process, column-wise", result["columnar_s"], result["per_record_s"]),
        line(f"phase, {result['workers']} workers: per record, one task per source (baseline)",
             result["by_source_s"], result["by_source_s"]),
        line(f"phase, {result['workers']} workers: column-wise, balanced work units", result["units_s"], result["by_source_s"]),
        "",
        f"Output identical per record vs column-wise: {result['paths_identical']}; "
        f"units vs whole sources: {result['units_identical']} (sha256 of rows/eval/rejects Parquet and counts.json).",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(report(run(args.records, args.workers)))


if __name__ == "__main__":
    main()
