"""`make bench`: dedup, baseline, language-tagging and end-to-end build figures in one run, written to
bench/RESULTS.md.

    .venv/bin/python -m bench.run                       # 200k dedup documents, 1M-record end-to-end build
    .venv/bin/python -m bench.run --records 5000000     # the end-to-end build at 5M (or 10000000)
    .venv/bin/python -m bench.run --docs 1000000        # dedup on 1M (the datasketch baseline stays on 200k)

The dedup stages run on the build's own executor and engine (etl/executor.py, `--workers`, default 2),
cluster reports included; their phases are the executor's. Peak RSS of those phases is sampled over
the whole process tree (bench.e2e.Sampler); the other phases report this process's high-water mark
(VmHWM, reset before each phase through /proc/self/clear_refs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench import convert_bench, ray_bench, redact_quality
from bench.e2e import Sampler
from bench.generate import generate, variant
from bench.langset import labelled_set
from etl.catalog import DedupConfig, LangIdConfig, MinHashConfig
from etl.engines.local import LocalEngine
from etl.executor import TaskRun
from etl.stages.dedup import ExactDedup, NearDedup, batch_band_hashes
from etl.stages.langid import LanguageTagger
from etl.stages.minhash import band_hashes, shingle_hashes, signatures
from etl.stages.normalise import Normalise
from etl.textnorm import match_keys

BATCH = 20_000


@dataclass
class Phase:
    name: str
    docs: int
    seconds: float = 0.0
    peak_mib: float = 0.0

    @property
    def rate(self) -> float:
        return self.docs / self.seconds if self.seconds else float("inf")


@dataclass
class Report:
    phases: list[Phase] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    @contextmanager
    def phase(self, name: str, docs: int) -> Iterator[Phase]:
        _reset_peak()
        record = Phase(name, docs)
        start = time.perf_counter()
        yield record
        record.seconds = time.perf_counter() - start
        record.peak_mib = _peak_mib()
        self.phases.append(record)
        print(f"  {name}: {record.seconds:.1f} s, {record.rate:,.0f} docs/s, peak {record.peak_mib:,.0f} MiB", flush=True)


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def quality(truth: np.ndarray, kinds: np.ndarray, drop: np.ndarray, into: np.ndarray) -> dict[str, Any]:
    """Recall/precision of removed rows against ground truth. A removed row is right when the row
    that finally absorbed it belongs to the same true cluster."""
    n = truth.size
    survivor = np.arange(n)
    survivor[drop] = into
    for _ in range(8):                     # follow chains (exact, then near)
        survivor = survivor[survivor]
    removed = drop.size
    correct = int(np.count_nonzero(truth[drop] == truth[survivor[drop]]))
    expected = n - np.unique(truth).size
    wrong = drop[truth[drop] != truth[survivor[drop]]]
    negatives = int(np.count_nonzero((kinds[wrong] == "hard_negative") | (kinds[survivor[wrong]] == "hard_negative")))
    # Per variant kind: caught when it ends in the same survivor as its cluster's original.
    original = {int(c): i for i, (c, k) in enumerate(zip(truth, kinds, strict=True)) if k == "original"}
    by_kind: dict[str, float] = {}
    for kind in sorted(set(kinds.tolist()) - {"original", "hard_negative"}):
        rows = np.flatnonzero(kinds == kind)
        caught = sum(survivor[r] == survivor[original[int(truth[r])]] for r in rows.tolist())
        by_kind[kind] = caught / rows.size if rows.size else float("nan")
    return {"removed": removed, "expected": int(expected), "recall": correct / expected if expected else 1.0,
            "precision": correct / removed if removed else 1.0, "hard_negatives_merged": negatives,
            "hard_negatives": int(np.count_nonzero(kinds == "hard_negative")), "by_kind": by_kind}


def _stream(path: Path) -> Callable[[list[str] | None], Iterator[pa.RecordBatch]]:
    return lambda columns: pq.ParquetFile(path).iter_batches(batch_size=BATCH, columns=columns)


def run_chain(task: str, stages: list[Any], path: Path, work: Path, workers: int,
              report: Report | None, docs: int) -> tuple[TaskRun, pa.Table]:
    """`stages` over the rows in `path` with the build's executor and engine; phases go to `report`."""
    sampler = Sampler(work)
    sampler.start()
    try:
        with LocalEngine(workers) as engine:
            run = TaskRun(task, stages, work / "stages", work / "reports", lambda columns: iter(()), engine)
            (work / "reports").mkdir(parents=True, exist_ok=True)
            columns = set(pq.ParquetFile(path).schema_arrow.names)
            out = pa.Table.from_batches(list(run.run(_stream(path), columns)))
    finally:
        sampler.halt.set()
        sampler.join()
    if report is not None:
        for name, start, end in run.phases:
            report.phases.append(Phase(f"executor: {name}", docs, end - start, sampler.peak(start, end)[0] / 2**20))
    return run, out


def run_ours(corpus: Path, config: MinHashConfig, work: Path, report: Report, workers: int) -> dict[str, Any]:
    """normalise → exact_dedup → near_dedup on the build's executor (etl/executor.py, local engine,
    `workers` processes), cluster reports included."""
    n = pq.ParquetFile(corpus).metadata.num_rows
    exact = ExactDedup(DedupConfig(minhash=config))
    near = NearDedup(config, DedupConfig().report_clusters, "pretrain")
    first = len(report.phases)
    _, out = run_chain("pretrain", [Normalise("pretrain"), exact, near], corpus, work, workers, report, n)
    dedup_phases = report.phases[first:]
    whole = sum(p.seconds for p in dedup_phases)
    truth_table = pq.read_table(corpus, columns=["_truth_cluster", "_truth_kind"])
    truth = truth_table.column("_truth_cluster").to_numpy()
    kinds = np.array(truth_table.column("_truth_kind").to_pylist())
    drop = np.concatenate([exact.resolution.drop, near.resolution.drop])
    into = np.concatenate([exact.resolution.absorbed_by, near.resolution.absorbed_by])
    return {"quality": quality(truth, kinds, drop, into), "whole_seconds": whole, "whole_rate": n / whole,
            "whole_peak": max(p.peak_mib for p in dedup_phases), "candidate_pairs": near.figures["candidate_pairs"],
            "verified": near.figures.get("verified_pairs", 0), "bands": near.bands, "rows": near.rows,
            "exact_removed": int(exact.resolution.drop.size), "near_removed": int(near.resolution.drop.size),
            "output_rows": out.num_rows, "truth": truth, "kinds": kinds, "workers": workers}


def run_signature_kernel(keys: list[str], config: MinHashConfig, report: Report) -> None:
    """The signature kernel alone on one core (shingles + MinHash + bands), to compare with datasketch."""
    bands, rows = NearDedup(config).bands, NearDedup(config).rows
    with report.phase("near: signatures (shingles + MinHash + bands), kernel on 1 core", len(keys)):
        for start in range(0, len(keys), BATCH):
            chunk = keys[start:start + BATCH]
            batch = pa.record_batch({"_row": pa.array(range(len(chunk)), pa.int64()), "_key": chunk})
            batch_band_hashes(config, bands, rows, batch)


CONTRASTIVE_ANSWERS = ("报告无错别字。", "报告中有一处错别字，已在下文标出。", "该描述符合正常表现。", "该描述提示异常，建议复查。")


def sft_pairs(count: int, seed: int) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """SFT rows whose prompts repeat: `real` near-duplicates of an earlier row (both sides varied),
    `contrastive` rows (an earlier row's long prompt, punctuation changed, with a different short answer:
    a different example) and originals. Every earlier row is reused at most once. Returns the rows,
    each row's kind and the row it was made from (-1 for originals)."""
    rng = random.Random(seed)
    docs = generate(count, seed).texts
    turns: list[list[dict[str, str]]] = []
    kinds: list[str] = []
    bases: list[int] = []
    used: set[int] = set()
    while len(turns) < count:
        roll = rng.random()
        base = rng.randrange(len(turns)) if turns else -1
        if base >= 0 and roll < 0.15 and base not in used and kinds[base] == "original":
            used.add(base)
            prompt = variant(turns[base][0]["content"], "punct_space", rng, True)
            if roll < 0.08:
                answer, kind = variant(turns[base][1]["content"], "punct_space", rng, True), "real"
            else:
                answer = rng.choice([a for a in CONTRASTIVE_ANSWERS if a != turns[base][1]["content"]])
                kind = "contrastive"
        else:
            prompt = rng.choice(docs)
            answer, kind, base = rng.choice(CONTRASTIVE_ANSWERS) if roll < 0.3 else rng.choice(docs), "original", -1
        turns.append([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}])
        kinds.append(kind)
        bases.append(base)
    n = len(turns)
    turn = pa.struct([("role", pa.string()), ("content", pa.string())])
    table = pa.table({
        "messages": pa.array(turns, pa.list_(turn)), "id": [f"s/{i:07d}" for i in range(n)], "source": ["s"] * n,
        "split": ["train"] * n, "lang": ["und"] * n, "lang_score": pa.array([0.0] * n, pa.float32()),
        "license": ["mit"] * n, "dup_count": pa.array([1] * n, pa.int32()), "meta": ["{}"] * n,
        "_row": pa.array(range(n), pa.int64()), "_priority": pa.array([50] * n, pa.int32())})
    return table, np.array(kinds), np.array(bases)


def run_split_fields(work: Path, report: Report, workers: int, count: int = 20_000, seed: int = 11) -> dict[str, Any]:
    """near_dedup on SFT rows with `fields: split` (default) and `fields: whole`: contrastive rows merged
    (should be 0) and real near-duplicates caught, on the build's executor."""
    table, kinds, bases = sft_pairs(count, seed)
    work.mkdir(parents=True, exist_ok=True)
    path = work / "sft_pairs.parquet"
    pq.write_table(table, path)
    results: dict[str, Any] = {}
    for fields in ("split", "whole"):
        config = MinHashConfig(fields=fields)
        near = NearDedup(config, 0, "sft")
        with report.phase(f"sft near_dedup, fields: {fields} (normalise + near, executor)", count):
            run_chain("sft", [Normalise("sft"), near], path, work / fields, workers, None, count)
        cluster = np.arange(count)
        cluster[near.resolution.drop] = near.resolution.absorbed_by
        planted = bases >= 0
        merged = np.zeros(count, dtype=bool)
        merged[planted] = cluster[planted] == cluster[bases[planted]]
        results[fields] = {"contrastive_merged": int((merged & (kinds == "contrastive")).sum()),
                           "contrastive": int((kinds == "contrastive").sum()),
                           "real_caught": int((merged & (kinds == "real")).sum()), "real": int((kinds == "real").sum()),
                           "rejected_by_side": near.figures.get("rejected_by_side", 0)}
    return results


def run_datasketch(keys: list[str], truth: np.ndarray, kinds: np.ndarray, config: MinHashConfig,
                   report: Report) -> dict[str, Any]:
    """datasketch's documented use: one MinHash per document over its n-gram set, MinHashLSH, and
    every LSH candidate treated as a duplicate."""
    from datasketch import MinHash, MinHashLSH

    n = len(keys)
    sigs = []
    with report.phase("datasketch: signatures", n):
        for key in keys:
            grams = {key[i:i + config.ngram] for i in range(max(1, len(key) - config.ngram + 1))} if key else set()
            mh = MinHash(num_perm=config.num_perm, seed=config.seed)
            mh.update_batch([g.encode() for g in grams])
            sigs.append(mh)
    parent = np.arange(n)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    with report.phase("datasketch: MinHashLSH insert + query", n):
        lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm)
        for i, mh in enumerate(sigs):
            if keys[i]:
                lsh.insert(i, mh)
        for i, mh in enumerate(sigs):
            if not keys[i]:
                continue
            for j in lsh.query(mh):
                a, b = find(i), find(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    roots = np.array([find(i) for i in range(n)])
    drop = np.flatnonzero(roots != np.arange(n))
    return {"quality": quality(truth, kinds, drop, roots[drop]),
            "whole_seconds": sum(p.seconds for p in report.phases[-2:])}


def run_signature_choices(keys: list[str], config: MinHashConfig, report: Report) -> None:
    """The MinHash implementations on the same keys: rensa per document, rensa over our flat
    n-gram hashes, and ours (NumPy one-permutation hashing)."""
    from rensa import RMinHash

    n = len(keys)
    with report.phase("rensa RMinHash per document (n-gram strings)", n):
        for key in keys:
            mh = RMinHash(num_perm=config.num_perm, seed=config.seed)
            mh.update([key[i:i + config.ngram] for i in range(max(1, len(key) - config.ngram + 1))])
            mh.digest()
    with report.phase("rensa flat matrix over NumPy n-gram hashes", n):
        for start in range(0, n, BATCH):
            hashes, offsets = shingle_hashes(keys[start:start + BATCH], config.ngram)
            matrix = RMinHash.digest_matrix_from_flat_token_hashes(hashes, offsets, config.num_perm, config.seed)
            np.array(matrix.to_rows(), dtype=np.uint32)
    with report.phase("ours: NumPy n-gram hashes + one-permutation MinHash + bands", n):
        for start in range(0, n, BATCH):
            hashes, offsets = shingle_hashes(keys[start:start + BATCH], config.ngram)
            band_hashes(signatures(hashes, offsets, config.num_perm, config.seed), 14, 9)


def run_opencc(texts: list[str], report: Report) -> float:
    """OpenCC phrase conversion vs the character table inside match_keys; returns key agreement."""
    import opencc

    converter = opencc.OpenCC("t2s")
    with report.phase("OpenCC t2s convert (Python reimplementation)", len(texts)):
        converted = [converter.convert(t) for t in texts]
    with report.phase("match_keys (NFKC + case + T→S table + punctuation), polars", len(texts)):
        keys = match_keys(texts).to_list()
    agree = match_keys(converted).to_list()
    return sum(a == b for a, b in zip(keys, agree, strict=True)) / len(texts)


def run_langid(report: Report, langdetect_limit: int) -> dict[str, Any]:
    from langdetect import DetectorFactory, detect
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    items = labelled_set()
    texts = [t for t, _, _ in items]
    labels = [label for _, label, _ in items]
    groups = [g for _, _, g in items]
    results: dict[str, Any] = {"size": len(items), "groups": dict(Counter(groups))}

    def score(name: str, predicted: list[str], subset: int) -> None:
        wrong = Counter(g for g, p, y in zip(groups[:subset], predicted, labels[:subset], strict=True) if p != y)
        per_group = {g: 1 - wrong[g] / c for g, c in Counter(groups[:subset]).items()}
        right = sum(p == y for p, y in zip(predicted, labels[:subset], strict=True))
        results[name] = {"accuracy": right / subset, "per_group": per_group, "docs": subset,
                         "examples": [(t, p) for t, p, y in zip(texts, predicted, labels, strict=False) if p != y][:8]}

    tagger = LanguageTagger(LangIdConfig().langs)
    tagger.tag(texts[:10])                   # build lingua's models outside the timing
    with report.phase("langid: ours (script counts + lingua zh/en for mixed)", len(texts)) as phase:
        ours, _ = tagger.tag(texts)
    score("ours", ours, len(texts))
    results["ours"]["rate"] = phase.rate
    again, _ = tagger.tag(texts)
    results["ours"]["deterministic"] = again == ours
    lingua = LanguageDetectorBuilder.from_iso_codes_639_1(IsoCode639_1.ZH, IsoCode639_1.EN).build()
    with report.phase("langid: lingua zh+en only (parallel)", len(texts)) as phase:
        found = lingua.detect_languages_in_parallel_of(texts)
    score("lingua", [lang.iso_code_639_1.name.lower() if lang else "und" for lang in found], len(texts))
    results["lingua"]["rate"] = phase.rate
    # langdetect on a stratified sample (it runs ~0.5k docs/s), seeded so the figure is repeatable.
    rng = random.Random(1)
    sample = sorted(rng.sample(range(len(texts)), min(langdetect_limit, len(texts))))
    DetectorFactory.seed = 0
    predicted = []
    with report.phase("langdetect (seeded)", len(sample)) as phase:
        for i in sample:
            try:
                code = detect(texts[i])
            except Exception:        # langdetect raises on texts without features ("123")
                code = "und"
            predicted.append("zh" if code.startswith("zh") else code)
    texts_s, labels_s, groups_s = ([seq[i] for i in sample] for seq in (texts, labels, groups))
    wrong = Counter(g for g, p, y in zip(groups_s, predicted, labels_s, strict=True) if p != y)
    results["langdetect"] = {
        "accuracy": sum(p == y for p, y in zip(predicted, labels_s, strict=True)) / len(sample),
        "per_group": {g: 1 - wrong[g] / c for g, c in Counter(groups_s).items()}, "docs": len(sample),
        "rate": phase.rate,
        "examples": [(t, p) for t, p, y in zip(texts_s, predicted, labels_s, strict=True) if p != y][:8]}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="MedCorpus dedup / decontamination / langid benchmark")
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--million", action="store_true", help="1,000,000 documents")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--ngram", type=int, default=MinHashConfig().ngram)
    parser.add_argument("--threshold", type=float, default=MinHashConfig().threshold)
    parser.add_argument("--baseline-docs", type=int, default=200_000, help="datasketch runs on this many documents")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--workers", type=int, default=2, help="engine workers, as `make demo` (default 2)")
    parser.add_argument("--records", type=int, default=1_000_000,
                        help="end-to-end build benchmark size (default 1M; 5000000 / 10000000 to scale; 0 skips it)")
    parser.add_argument("--out", default="bench/RESULTS.md")
    args = parser.parse_args()
    docs = 1_000_000 if args.million else args.docs
    config = MinHashConfig(ngram=args.ngram, threshold=args.threshold)
    report = Report()
    work = Path(tempfile.mkdtemp(prefix="medcorpus-bench-"))
    try:
        corpus = work / "corpus.parquet"
        print(f"generating {docs:,} documents", flush=True)
        with report.phase("generate corpus (separate process)", docs):
            _generate(docs, args.seed, corpus)
        ours = run_ours(corpus, config, work / "ours", report, args.workers)
        corpus_keys = match_keys(pq.read_table(corpus, columns=["text"]).column("text")).to_list()
        run_signature_kernel(corpus_keys[:200_000], config, report)
        base_n = min(args.baseline_docs, docs)
        baseline = None
        if not args.skip_baseline:
            if base_n == docs:
                keys = corpus_keys
                truth, kinds = ours["truth"], ours["kinds"]
            else:
                small = work / "baseline.parquet"
                _generate(base_n, args.seed, small)
                table = pq.read_table(small)
                keys = match_keys(table.column("text").to_pylist()).to_list()
                truth = table.column("_truth_cluster").to_numpy()
                kinds = np.array(table.column("_truth_kind").to_pylist())
            baseline = run_datasketch(keys, truth, kinds, config, report)
            del keys
        choice_keys = corpus_keys[:50_000]
        del corpus_keys
        run_signature_choices(choice_keys, config, report)
        split = run_split_fields(work / "split", report, args.workers)
        sample = generate(20_000, args.seed + 1)
        traditional = [t for t, k in zip(sample.texts, sample.kinds, strict=True) if k == "traditional"]
        agreement = run_opencc(traditional, report)
        langid = run_langid(report, langdetect_limit=5_000)
        e2e = run_e2e(args.records, args.workers) if args.records else None
        write_results(Path(args.out), docs, base_n, config, ours, baseline, agreement, langid, report, split, e2e)
        redact_quality.main(["--out", args.out])      # its own section of the same file
        convert_bench.write_section(Path(args.out))  # the `## Conversion` section (bench/convert_bench.py)
        ray_bench.append_to(Path(args.out), min(docs, 100_000), args.seed)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_e2e(records: int, workers: int) -> dict[str, Any]:
    """bench/e2e.py in a child process (its own memory, as a user's build has)."""
    done = subprocess.run([sys.executable, "-m", "bench.e2e", "--records", str(records), "--workers", str(workers)],
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _generate(docs: int, seed: int, path: Path) -> None:
    """Generate in a child process so that the corpus's Python objects never count in our RSS."""
    subprocess.run([sys.executable, "-m", "bench.generate", "--docs", str(docs), "--seed", str(seed),
                    "--out", str(path)], check=True)


CONVERSION_PHASES = ("fetch", "convert")   # the conversion side of issue 14 (etl/conversion.py, convert/, rows.py)


def e2e_targets(e2e: dict[str, Any]) -> list[tuple[str, str, bool]]:
    build, floor = e2e["build"], e2e["floor"]
    rate = e2e["records"] / build["wall"]
    ratio = build["wall"] / floor["seconds"]
    return [
        (f"end to end ≥ 10k records/s ({e2e['records']:,} records, {e2e['workers']} workers)",
         f"{rate:,.0f} records/s ({build['wall']:.0f} s)", rate >= 10_000),
        ("end to end within 5× the I/O floor (same run)", f"{ratio:.1f}× ({floor['seconds']:.1f} s floor)", ratio <= 5),
        ("scratch ≤ 1× input", f"{build['peak_scratch'] / 2**20:,.0f} MiB stage scratch at peak vs "
         f"{e2e['input_bytes'] / 2**20:,.0f} MiB input", build["peak_scratch"] <= e2e["input_bytes"]),
        ("peak RSS ≤ 2 GB (all processes)", f"{build['peak_rss'] / 2**20:,.0f} MiB at {e2e['records']:,} records "
         f"(driver {build.get('peak_rss_driver', 0) / 2**20:,.0f} MiB)",
         build["peak_rss"] <= 2 * 2**30),
    ]


def e2e_lines(e2e: dict[str, Any]) -> list[str]:
    build, floor = e2e["build"], e2e["floor"]
    mb = e2e["input_bytes"] / 1e6
    lines = ["", f"## End to end: `medcorpus build` of a scaled mirror, {e2e['records']:,} records", "",
             f"bench/e2e.py: the demo mirror with eight sources scaled to {e2e['records']:,} records "
             f"({e2e['scaled_bytes'] / 1e6:,.0f} MB; JSONL SFT, Huatuo JSONL, query/response JSONL, alpaca JSON "
             f"array, GBK CSV, text JSONL, text lines, preference JSONL), built with `--workers {e2e['workers']}` "
             f"on the {e2e['engine']} engine; {build['read']:,} records read, {build['written']:,} rows written. "
             f"I/O floor (polars reading the scaled files, writing zstd Parquet, same run): "
             f"{floor['seconds']:.1f} s for {floor['rows']:,} rows. Conversion cache left in .work: "
             f"{build['convert_cache'] / 2**20:,.0f} MiB (kept on purpose: refresh re-converts only changed sources).",
             "", f"Wall {build['wall']:.1f} s = {e2e['records'] / build['wall']:,.0f} records/s, "
             f"{mb / build['wall']:.2f} MB/s; {build['wall'] / floor['seconds']:.1f}× the floor.", "",
             "| phase | seconds | share | records/s | MB/s | peak RSS (MiB, all processes) | driver RSS (MiB) "
             "| peak scratch (MiB) | owner |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in build["phases"]:
        secs = row["seconds"]
        owner = "conversion" if row["phase"].startswith(CONVERSION_PHASES) else "stages/build"
        lines.append(f"| {row['phase']} | {secs:.1f} | {secs / build['wall']:.0%} | "
                     f"{e2e['records'] / secs if secs else 0:,.0f} | {mb / secs if secs else 0:,.1f} | "
                     f"{row['peak_rss'] / 2**20:,.0f} | {row.get('peak_rss_driver', 0) / 2**20:,.0f} | "
                     f"{row['peak_scratch'] / 2**20:,.0f} | {owner} |")
    return lines


def _fmt_phase(p: Phase) -> str:
    return f"| {p.name} | {p.docs:,} | {p.seconds:.2f} | {p.rate:,.0f} | {p.peak_mib:,.0f} |"


def write_results(path: Path, docs: int, base_n: int, config: MinHashConfig, ours: dict[str, Any],
                  baseline: dict[str, Any] | None, agreement: float, langid: dict[str, Any], report: Report,
                  split: dict[str, Any], e2e: dict[str, Any] | None) -> None:
    q = ours["quality"]
    find: Callable[[str], Phase] = lambda prefix: next(p for p in report.phases if p.name.startswith(prefix))  # noqa: E731
    sig = find("near: signatures")
    lines = [
        f"# Benchmark results: {docs:,} documents",
        "",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}. Generated by `make bench` "
        f"(`python -m bench.run{' --million' if docs == 1_000_000 else ''}`); seeded corpus from bench/generate.py "
        "(80% Chinese, 20% English medical text, planted near-duplicates and hard negatives). "
        "The machine varies ±15–30% between identical runs: compare figures within one run.",
        "",
        f"Parameters: character {config.ngram}-grams of the matching key, {config.num_perm} permutations, "
        f"Jaccard threshold {config.threshold}, {ours['bands']} bands × {ours['rows']} rows (derived), "
        "numbers must match.",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    targets: list[tuple[str, str, bool]] = [
        ("duplicate recall ≥ 0.95", f"{q['recall']:.4f}", q["recall"] >= 0.95),
        ("precision ≥ 0.99", f"{q['precision']:.4f}", q["precision"] >= 0.99),
        ("no hard negative merged", f"{q['hard_negatives_merged']} of {q['hard_negatives']} merged",
         q["hard_negatives_merged"] == 0),
    ]
    ds_sig = next((p for p in report.phases if p.name == "datasketch: signatures"), None)
    if ds_sig:
        ratio = sig.rate / ds_sig.rate
        targets.append(("signatures ≥ 10× datasketch docs/s", f"{sig.rate:,.0f} vs {ds_sig.rate:,.0f} docs/s = {ratio:.1f}×",
                        ratio >= 10))
    targets.append((f"whole dedup stage ≥ 20k docs/s ({ours['workers']} workers)", f"{ours['whole_rate']:,.0f} docs/s "
                    f"(normalise + exact + near, {ours['whole_seconds']:.1f} s)", ours["whole_rate"] >= 20_000))
    targets.append(("peak RSS ≤ 2 GB (1M docs)", f"{ours['whole_peak']:,.0f} MiB at {docs:,} docs",
                    ours["whole_peak"] <= 2048))
    lo = langid["ours"]
    targets.append(("language tagging ≥ 99.5% accurate", f"{lo['accuracy']:.4%}", lo["accuracy"] >= 0.995))
    targets.append(("language tagging ≥ 20k docs/s", f"{lo['rate']:,.0f} docs/s", lo["rate"] >= 20_000))
    sp, wh = split["split"], split["whole"]
    targets.append(("near_dedup keeps contrastive SFT pairs (fields: split)",
                    f"{sp['contrastive_merged']} of {sp['contrastive']} merged (whole rows: {wh['contrastive_merged']})",
                    sp["contrastive_merged"] == 0))
    if e2e:
        targets += e2e_targets(e2e)
    for name, value, met in targets:
        lines.append(f"| {name} | {value} | {'yes' if met else '**no**'} |")
    if e2e:
        lines += e2e_lines(e2e)
    lines += ["", "## Dedup quality (ours)", "",
              f"Removed {q['removed']:,} rows (exact {ours['exact_removed']:,}, near {ours['near_removed']:,}) of "
              f"{q['expected']:,} planted duplicates; {ours['candidate_pairs']:,} candidate pairs, "
              f"{ours['verified']:,} verified (pairs already in one cluster are not re-checked).", "",
              "| variant kind | caught |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in q["by_kind"].items()]
    if baseline:
        b = baseline["quality"]
        lines += ["", f"## Baseline: datasketch MinHashLSH on {base_n:,} documents (same keys, same n-grams)", "",
                  "Every LSH candidate treated as a duplicate (no verification, no number check), as datasketch is "
                  "usually used.", "",
                  "| | recall | precision | hard negatives merged | time (s) |", "|---|---|---|---|---|",
                  f"| datasketch | {b['recall']:.4f} | {b['precision']:.4f} | {b['hard_negatives_merged']} of "
                  f"{b['hard_negatives']} | {baseline['whole_seconds']:.1f} |",
                  f"| ours | {q['recall']:.4f} | {q['precision']:.4f} | {q['hard_negatives_merged']} of "
                  f"{q['hard_negatives']} | {ours['whole_seconds']:.1f} |"]
        lines += ["", "| variant kind | datasketch caught |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in b["by_kind"].items()]
    lines += ["", "## Phases", "", "docs/s is documents over wall time; peak RSS is the process high-water mark "
              "during the phase.", "", "| phase | docs | seconds | docs/s | peak RSS (MiB) |", "|---|---|---|---|---|"]
    lines += [_fmt_phase(p) for p in report.phases]
    lines += ["", "## Near-dedup of SFT rows: prompt and response separately (`minhash.fields`)", "",
              f"{split['split']['contrastive'] + split['split']['real']:,} planted rows among 20,000 SFT rows: "
              "`contrastive` rows repeat a long prompt (punctuation changed) with a different short answer — two "
              "different examples; `real` rows repeat both sides.", "",
              "| fields | contrastive merged | real near-duplicates caught | pairs refused by a side |",
              "|---|---|---|---|"]
    for fields in ("split", "whole"):
        r = split[fields]
        lines.append(f"| {fields} | {r['contrastive_merged']} of {r['contrastive']} | {r['real_caught']} of "
                     f"{r['real']} | {r['rejected_by_side']} |")
    lines += ["", f"OpenCC phrase conversion and our character table give the same matching key for "
              f"{agreement:.2%} of the Traditional-Chinese variants.", "", "## Language tagging", "",
              f"Labelled set: {langid['size']:,} texts ({', '.join(f'{g} {c:,}' for g, c in langid['groups'].items())}).",
              "", "| tagger | docs | accuracy | docs/s | " + " | ".join(langid["groups"]) + " |",
              "|---|---|---|---|" + "---|" * len(langid["groups"])]
    for name in ("ours", "lingua", "langdetect"):
        r = langid[name]
        cells = " | ".join(f"{r['per_group'].get(g, float('nan')):.3f}" for g in langid["groups"])
        lines.append(f"| {name} | {r['docs']:,} | {r['accuracy']:.4f} | {r['rate']:,.0f} | {cells} |")
    lines += ["", f"Ours is deterministic across runs: {langid['ours']['deterministic']}.", ""]
    for name in ("ours", "lingua", "langdetect"):
        if langid[name]["examples"]:
            lines.append(f"Mistakes of {name} (first few): " + "; ".join(
                f"`{t[:40]}` → {p}" for t, p in langid[name]["examples"]))
            lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
