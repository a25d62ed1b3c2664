"""Ray engine vs local engine on the stage chain: the same generated corpus through the build's own
executor (etl/executor.py, `default_stages("pretrain")`: normalise → exact dedup → near dedup →
decontaminate → langid) on local 1 and 2 workers and Ray 1 and 2 workers, in one run, with the ratios
and a check that all four give the same bytes. The corpus is laid out as the build's conversion cache
is (row groups of 5,000 rows, `CACHE_ROWS`), so that the workers read their pieces of it themselves, as
in a build. Writes (or replaces) its section of bench/RESULTS.md.

`make bench` runs it after the main benchmark (bench/run.py); alone: `python -m bench.ray_bench`.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from etl.catalog import TASKS, BuildConfig
from etl.conversion import BATCH_ROWS as CACHE_ROWS  # the conversion cache's row groups
from etl.engines.base import Engine
from etl.engines.local import LocalEngine
from etl.executor import ParquetStream, TaskRun
from etl.schemas import arrow_schema
from etl.stages.pipeline import default_stages
from etl.write import RowGroupWriter

HEADING = "## Ray engine vs local engine (stage chain)"
EVAL_ROWS = 500
CONFIGS = (("local", 1), ("local", 2), ("ray", 1), ("ray", 2))


@dataclass
class Run:
    engine: str
    workers: int
    start_seconds: float      # starting the engine (a local Ray), not counted in the rate
    seconds: float
    rows_out: int
    digest: str


def _eval_table(corpus: Path) -> pa.Table:
    """The first `EVAL_ROWS` rows of the corpus as eval rows, shaped like the build's eval scan."""
    sample = pq.ParquetFile(corpus).read_row_group(0, columns=["id", "source", "text"]).slice(0, EVAL_ROWS)
    n = sample.num_rows
    types = {f.name: f.type for task in TASKS for f in arrow_schema(task)}
    columns = {name: sample.column(name) if name in sample.column_names else pa.nulls(n, kind)
               for name, kind in types.items()}
    return pa.table({**columns, "task": pa.array(["pretrain"] * n)})


def _engine(name: str, workers: int) -> Engine:
    if name == "local":
        return LocalEngine(workers)
    from etl.engines.ray import RayEngine

    return RayEngine(workers)


def as_cache(corpus: Path, cache: Path) -> None:
    """The generated corpus without its truth columns, in row groups of CACHE_ROWS rows."""
    parquet = pq.ParquetFile(corpus)
    schema = pa.schema([field for field in parquet.schema_arrow if not field.name.startswith("_truth")])
    writer = RowGroupWriter(cache, schema, CACHE_ROWS)
    for batch in parquet.iter_batches(batch_size=CACHE_ROWS, columns=schema.names):
        writer.add_table(pa.Table.from_batches([batch]))
    writer.close()


def run_one(name: str, workers: int, corpus: Path, evals: pa.Table, work: Path) -> Run:
    """`corpus`: as `as_cache` writes it (the rows keep the generator's `_row` and `_priority`)."""
    source = ParquetStream([(corpus, None)])

    def scan_eval(columns: list[str]) -> Iterator[pa.RecordBatch]:
        return iter(evals.select(columns).to_batches())

    folder = work / f"{name}-{workers}"
    started = time.perf_counter()
    with _engine(name, workers) as engine:
        start_seconds = time.perf_counter() - started
        begin = time.perf_counter()
        run = TaskRun("pretrain", default_stages("pretrain", BuildConfig()), folder / "scratch", folder / "reports",
                      scan_eval, engine)
        writer: pq.ParquetWriter | None = None
        rows = 0
        for batch in run.run(source, set(pq.ParquetFile(corpus).schema_arrow.names)):
            if writer is None:
                writer = pq.ParquetWriter(folder / "out.parquet", batch.schema, compression="zstd")
            writer.write_batch(batch)
            rows += batch.num_rows
        assert writer is not None
        writer.close()
        seconds = time.perf_counter() - begin
    digest = hashlib.sha256((folder / "out.parquet").read_bytes()).hexdigest()
    print(f"  {name} × {workers}: {seconds:.1f} s (+{start_seconds:.1f} s start), {rows:,} rows out", flush=True)
    return Run(name, workers, start_seconds, seconds, rows, digest)


def section(docs: int, runs: list[Run]) -> str:
    base = {r.workers: r for r in runs if r.engine == "local"}
    lines = [HEADING, "",
             f"{docs:,} generated documents (bench/generate.py, pretrain rows) through the build's executor and "
             f"`default_stages(\"pretrain\")` with {EVAL_ROWS} of them as eval rows, read by the workers in pieces "
             f"of a Parquet file laid out as the conversion cache ({CACHE_ROWS:,}-row row groups); each engine in "
             "turn, in one run "
             "(ratios are comparable, absolute figures move with the shared machine's load). Engine start "
             "(a local Ray: `ray.init`) is listed apart and not counted in docs/s; local × 2 starts its process pool "
             "inside the timed part (about 1–2 s), as it does in a build.", "",
             "| engine | workers | seconds | docs/s | vs local × 1 | vs local, same workers | engine start (s) | rows out |",
             "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        same = base.get(r.workers)
        lines.append(f"| {r.engine} | {r.workers} | {r.seconds:.2f} | {docs / r.seconds:,.0f} | "
                     f"{base[1].seconds / r.seconds:.2f}× | {same.seconds / r.seconds if same else float('nan'):.2f}× | "
                     f"{r.start_seconds:.1f} | {r.rows_out:,} |")
    identical = len({r.digest for r in runs}) == 1
    lines += ["", f"Output Parquet byte-identical across all four runs: **{'yes' if identical else 'NO'}** "
              f"(sha256 {runs[0].digest[:16]}…).", ""]
    return "\n".join(lines)


def write_section(path: Path, text: str) -> None:
    """Replace this benchmark's section of `path` (or add it at the end)."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    head, found, rest = old.partition(HEADING)
    tail = rest[rest.find("\n## "):] if found and "\n## " in rest else ""
    body = head.rstrip("\n") + "\n\n" + text + tail
    path.write_text(body.lstrip("\n"), encoding="utf-8")


def append_to(path: Path, docs: int = 100_000, seed: int = 7) -> None:
    """The hook bench/run.py calls: run the comparison and write its section into `path`."""
    try:
        import ray  # noqa: F401
    except ImportError:
        print("Ray benchmark skipped: the optional extra `.[ray]` is not installed", flush=True)
        return
    work = Path(tempfile.mkdtemp(prefix="medcorpus-ray-bench-"))
    try:
        corpus = work / "corpus.parquet"
        print(f"Ray vs local on the stage chain: generating {docs:,} documents", flush=True)
        subprocess.run([sys.executable, "-m", "bench.generate", "--docs", str(docs), "--seed", str(seed),
                        "--out", str(corpus)], check=True)
        evals = _eval_table(corpus)
        cache = work / "cache.parquet"
        as_cache(corpus, cache)
        runs = [run_one(name, workers, cache, evals, work) for name, workers in CONFIGS]
        write_section(path, section(docs, runs))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Ray vs local engine on the stage chain")
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="bench/RESULTS.md")
    args = parser.parse_args()
    append_to(Path(args.out), args.docs, args.seed)


if __name__ == "__main__":
    main()
