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
import os
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


def _phase(sources: list[tuple[Source, FetchedSource]], work: Path, workers: int, columnar: bool,
           units: bool) -> tuple[float, dict[str, str]]:
    """The conversion phase on a pool: one task per source (today's build), or work units mapped over
    the pool and merged per source, as etl/build.py fetch_and_convert runs them."""
    context = multiprocessing.get_context("spawn")
    start = time.perf_counter()
    digests = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        if not units:
            futures = {s.id: pool.submit(convert_source, s, f, work, columnar) for s, f in sources}
            digests = {sid: _digest(fut.result().folder) for sid, fut in futures.items()}
        else:
            submitted = [(s, f, [pool.submit(convert_unit, u, columnar) for u in plan_units(s, f, work, workers)])
                         for s, f in sources]
            for source, fetched, futs in submitted:
                merged = merge_units(source, fetched, work, (fut.result() for fut in futs))
                digests[source.id] = _digest(merged.folder)
    return time.perf_counter() - start, digests


PHASES = (  # label, column-wise, work units
    ("per record, one task per source (today, baseline)", False, False),
    ("column-wise, one task per source", True, False),
    ("column-wise, balanced work units", True, True),
)


def run(records: int, workers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="medcorpus-convert-bench-") as tmp:
        root = Path(tmp)
        sources = generate(root / "mirror", records)
        result: dict[str, Any] = {"records": sum(int(records * share) for *_, share in SHAPES), "workers": workers,
                                  "input_mb": sum(f.files[0].size for _, f in sources) / 1e6,
                                  "largest_units": len(plan_units(*sources[0], root / "plan", workers))}
        digests = []
        for label, columnar in (("per_record", False), ("columnar", True)):
            work = root / f"work-{label}"
            result[f"{label}_s"], digest = _per_source(sources, work, columnar)
            digests.append(digest)
            shutil.rmtree(work)
        result["phases"] = []
        for index, (label, columnar, units) in enumerate(PHASES):
            work = root / f"phase-{index}"
            seconds, digest = _phase(sources, work, workers, columnar, units)
            result["phases"].append((label, seconds))
            digests.append(digest)
            shutil.rmtree(work)
        result["identical"] = all(d == digests[0] for d in digests)
        result["load"] = os.getloadavg()[1]
        return result


def report(result: dict[str, Any]) -> str:
    n = result["records"]

    def line(label: str, seconds: float, base: float) -> str:
        return f"| {label} | {seconds:.1f} s | {n / seconds / 1e3:.1f}k | {base / seconds:.2f}× |"

    first = result["phases"][0][1]
    return "\n".join([
        f"{n:,} records ({result['input_mb']:.0f} MB of JSONL and text; five sources in the generic formats "
        f"alpaca, query_response, sharegpt, messages, text; alpaca holds 55% and is cut into "
        f"{result['largest_units']} units); the phase runs on {result['workers']} workers.",
        "",
        "| conversion | wall | records/s | vs baseline |",
        "|---|---|---|---|",
        line("one process: per record (baseline)", result["per_record_s"], result["per_record_s"]),
        line("one process: column-wise", result["columnar_s"], result["per_record_s"]),
        *(line(f"phase on {result['workers']} workers: {label}", seconds, first) for label, seconds in result["phases"]),
        "",
        f"Every variant wrote the same bytes (sha256 of rows/eval/rejects Parquet and counts.json): {result['identical']}. "
        f"Machine load (5-minute average) at the end: {result['load']:.1f} on {os.cpu_count()} cores.",
    ])


def write_section(path: Path, records: int = 300_000, workers: int = 2) -> None:
    """Run the benchmark and put its table into `path` (bench/RESULTS.md) as the `## Conversion` section."""
    body = report(run(records, workers))
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    head, _, rest = text.partition("\n## Conversion\n")
    tail = rest[rest.find("\n## "):] if "\n## " in rest else ""
    notes = rest[:rest.find("\n## ")] if tail else rest
    kept = notes[notes.find("\n### Notes"):] if "\n### Notes" in notes else ""
    path.write_text(f"{head.rstrip()}\n\n## Conversion\n\n{body}\n{kept}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the `## Conversion` section of this file (bench/RESULTS.md)")
    args = parser.parse_args()
    if args.out:
        write_section(args.out, args.records, args.workers)
    else:
        print(report(run(args.records, args.workers)))


if __name__ == "__main__":
    main()
