"""End-to-end benchmark: `medcorpus build` over a scaled mirror, phase by phase, beside an I/O floor.

    .venv/bin/python -m bench.e2e --records 1000000 --workers 2     # what `make bench` runs
    .venv/bin/python -m bench.e2e --records 5000000                 # 5M / 10M: pass --records

The mirror (bench/generate.py `scaled_mirror`) is written once per size and seed under bench/data/.
The build runs in this process exactly as the CLI runs it (run_build), with the phases timed from
the outside: fetch, convert, and per task every stage's apply segment and global pass, then rejects,
manifest/card/commit. A sampler thread reads the resident memory of this process and all its
workers, and the size of the stage scratch, every 0.5 s (it shares this process with the build, so
it samples sparingly); each phase's peak is the highest sample inside it. The I/O floor is polars reading the same scaled files and writing them as zstd Parquet,
in the same run, so that the ratio between the two is what the machine's load does not change. The mirror is
written and the floor measured in a child process of their own: polars reading gigabytes leaves
hundreds of MiB of freed pages in its process (400 MiB at 5M), which the build's driver would
otherwise carry, and a user's build starts without them.
Prints one JSON document (the last line) for bench/run.py.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import psutil

from bench.generate import SCALED, scaled_mirror

ROOT = Path(__file__).resolve().parent.parent


class Sampler(threading.Thread):
    """Samples (time, RSS of this process tree, RSS of this process alone, bytes under `scratch`) until
    stopped."""

    def __init__(self, scratch: Path, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.scratch, self.every = scratch, every
        self.samples: list[tuple[float, int, int, int]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self.halt.is_set():
            rss = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    rss += proc.memory_info().rss
                except psutil.Error:
                    continue
            driver = me.memory_info().rss
            self.samples.append((time.perf_counter(), rss, driver, _tree_bytes(self.scratch)))
            self.halt.wait(self.every)

    def peak(self, start: float, end: float) -> tuple[int, int, int]:
        """Highest (all processes, driver, scratch) inside [start, end]."""
        inside = [sample[1:] for sample in self.samples if start <= sample[0] <= end] or [(0, 0, 0)]
        return max(r for r, _, _ in inside), max(m for _, m, _ in inside), max(d for _, _, d in inside)


def _tree_bytes(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                continue
    return total


class Phases:
    def __init__(self) -> None:
        self.spans: list[tuple[str, float, float]] = []

    @contextmanager
    def span(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.spans.append((name, start, time.perf_counter()))


def _timed(phases: Phases, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with phases.span(name):
            return fn(*args, **kwargs)
    return wrapper


def run_build(mirror: Path, out: Path, workers: int, engine: str) -> dict[str, Any]:
    """`medcorpus build --mirror MIRROR --out OUT --workers N`, phase by phase."""
    import etl.build as build
    from etl.cli import open_catalog
    from etl.ui import Reporter

    phases = Phases()
    runs: list[Any] = []
    task_run = build.TaskRun

    class RecordedRun(task_run):  # type: ignore[misc, valid-type]
        def __init__(self, task: str, *args: Any, **kwargs: Any) -> None:
            super().__init__(task, *args, **kwargs)
            runs.append(self)

    make_fetcher = build._fetcher

    def fetcher(*args: Any) -> Any:
        inner = make_fetcher(*args)
        inner.fetch_many = _timed(phases, "fetch (mirror: list + checksum)", inner.fetch_many)
        return inner

    patches = {"TaskRun": RecordedRun, "_fetcher": fetcher,
               "fetch_and_convert": _timed(phases, "fetch + convert", build.fetch_and_convert),
               "write_rejects": _timed(phases, "rejects", build.write_rejects),
               "_write_card": _timed(phases, "card + chart", build._write_card),
               "commit_output": _timed(phases, "commit", build.commit_output)}
    saved = {name: getattr(build, name) for name in patches}
    for name, value in patches.items():
        setattr(build, name, value)
    shutil.rmtree(out, ignore_errors=True)
    sampler = Sampler(out / ".work")
    sampler.start()
    try:
        catalog = open_catalog(str(ROOT / "sources.yaml"))
        options = build.BuildOptions(out=out, mirror=mirror, workers=workers, engine=engine,
                                     cache_dir=out / ".cache")
        start = time.perf_counter()
        with Reporter(interactive=False) as reporter:
            result = build.run_build(catalog, options, reporter)
        wall = time.perf_counter() - start
    finally:
        sampler.halt.set()
        sampler.join()
        for name, value in saved.items():
            setattr(build, name, value)
    spans = list(phases.spans)
    fetch = next(s for s in spans if s[0].startswith("fetch ("))
    both = next(s for s in spans if s[0] == "fetch + convert")
    spans = [s for s in spans if s[0] != "fetch + convert"] + [("convert", fetch[2], both[2])]
    for run in runs:
        spans += [(f"{run.task}: {name}", a, b) for name, a, b in run.phases]
    spans.sort(key=lambda s: s[1])
    rows = []
    for name, a, b in spans:
        rss, driver, scratch = sampler.peak(a, b)
        rows.append({"phase": name, "seconds": b - a, "peak_rss": rss, "peak_rss_driver": driver,
                     "peak_scratch": scratch})
    covered = sum(r["seconds"] for r in rows)
    rows.append({"phase": "other (catalogue, manifest, between phases)", "seconds": max(0.0, wall - covered),
                 "peak_rss": 0, "peak_rss_driver": 0, "peak_scratch": 0})
    totals = result.manifest["totals"]
    return {"wall": wall, "phases": rows, "peak_rss": max(s[1] for s in sampler.samples),
            "peak_rss_driver": max(s[2] for s in sampler.samples), "peak_scratch": max(s[3] for s in sampler.samples), "convert_cache": _tree_bytes(out / ".work" / "convert"),
            "read": totals.get("read", 0), "written": totals.get("written", 0),
            "failed": [o.source.id for o in result.failed]}


def io_floor(mirror: Path, target: Path) -> dict[str, Any]:
    """polars reading the scaled files and writing each as zstd Parquet: the cost of touching the bytes."""
    target.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows = 0
    for source_id, _, relpath, kind in SCALED:
        path = mirror / source_id / relpath
        if kind == "alpaca_json_array":
            frame = pl.read_json(path)
        elif kind == "toyhom_csv_gbk":
            frame = pl.read_csv(path.read_bytes().decode("gb18030").encode())
        elif kind == "text_lines":
            frame = pl.DataFrame({"text": path.read_text(encoding="utf-8").splitlines()})
        else:
            frame = pl.read_ndjson(path)
        frame.write_parquet(target / f"{source_id}.parquet", compression="zstd")
        rows += frame.height
    seconds = time.perf_counter() - start
    shutil.rmtree(target, ignore_errors=True)
    return {"seconds": seconds, "rows": rows}


def mirror_for(records: int, seed: int) -> tuple[Path, int]:
    mirror = ROOT / "bench" / "data" / f"mirror-{records}"
    marker = mirror / ".complete"
    if not marker.exists() or marker.read_text() != str(seed):
        print(f"writing a scaled mirror of {records:,} records to {mirror}", flush=True)
        scaled_mirror(mirror, records, seed, ROOT / "examples" / "mirror")
        marker.write_text(str(seed))
    return mirror, _tree_bytes(mirror)


def in_child(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` in a fresh process, so that what it leaves in memory is not counted as the build's."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="1M by default; 5000000 or 10000000 to scale")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--engine", default="local")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "data" / "e2e-out")
    args = parser.parse_args()
    mirror, input_bytes = in_child(mirror_for, args.records, args.seed)
    scaled_bytes = sum((mirror / s / p).stat().st_size for s, _, p, _ in SCALED)
    floor = in_child(io_floor, mirror, args.work / "floor")
    print(f"I/O floor: {floor['rows']:,} rows in {floor['seconds']:.1f} s", flush=True)
    build = run_build(mirror, args.work / "out", args.workers, args.engine)
    shutil.rmtree(args.work, ignore_errors=True)
    print(json.dumps({"records": args.records, "workers": args.workers, "engine": args.engine,
                      "input_bytes": input_bytes, "scaled_bytes": scaled_bytes, "floor": floor, "build": build}))


if __name__ == "__main__":
    main()
