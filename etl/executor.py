"""The local executor: streams one task's rows through the cross-source stage chain.

A stage with a global pass (`prepare`) starts a new segment: the rows reaching it are first
materialised to the work folder, so its `prepare` and then its `apply` see exactly the same rows
without holding them in memory. Rows in and out of every stage are counted per source.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from etl.faults import checkpoint
from etl.stages.base import DROP, Scan, Stage, StageContext, Tally, check_chain, settle

BATCH_ROWS = 10_000


def _has_global_pass(stage: Stage) -> bool:
    return type(stage).prepare is not Stage.prepare


def _by_source(batch: pa.RecordBatch) -> Counter[str]:
    counts: Counter[str] = Counter()
    if batch.num_rows:
        for item in pc.value_counts(batch.column("source")).to_pylist():
            counts[item["values"]] += item["counts"]
    return counts


def scan_parquet(paths: list[Path], columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    for path in paths:
        parquet = pq.ParquetFile(path)
        yield from parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns)


class TaskRun:
    """Runs `stages` over `source()` (a fresh stream of the task's batches on each call)."""

    def __init__(self, task: str, stages: list[Stage], work_dir: Path, report_dir: Path,
                 scan_eval: Scan, workers: int = 1,
                 on_stage: Callable[[str], None] | None = None) -> None:
        self.task, self.stages = task, stages
        self.work_dir, self.report_dir = work_dir, report_dir
        self.scan_eval, self.workers = scan_eval, workers
        self.on_stage = on_stage or (lambda name: None)
        self.removed: dict[str, Counter[str]] = {s.name: Counter() for s in stages}
        # a stage's own counters (base.settle): stage -> source -> key -> n; and sample dropped rows
        self.counts: dict[str, dict[str, Counter[str]]] = {s.name: {} for s in stages}
        self.dropped: dict[str, list[pa.RecordBatch]] = {s.name: [] for s in stages}

    def run(self, source: Callable[[list[str] | None], Iterator[pa.RecordBatch]],
            columns: set[str]) -> Iterator[pa.RecordBatch]:
        check_chain(self.stages, columns)
        current = source
        segment: list[Stage] = []
        for index, stage in enumerate(self.stages):
            if _has_global_pass(stage) and segment:
                current = self._materialise(current, segment, index)
                segment = []
            if _has_global_pass(stage):
                self.on_stage(stage.name)
                ctx = StageContext(self.task, self.work_dir / stage.name, self.report_dir, self.scan_eval, self.workers)
                ctx.work_dir.mkdir(parents=True, exist_ok=True)
                stage.prepare(lambda cols, src=current: src(cols), ctx)
                checkpoint(f"stage:{stage.name}")
            segment.append(stage)
        yield from self._apply(current, segment)

    def _apply(self, source: Callable[[list[str] | None], Iterator[pa.RecordBatch]],
               segment: list[Stage]) -> Iterator[pa.RecordBatch]:
        for batch in source(None):
            before = _by_source(batch)
            for stage in segment:
                batch, tally = settle(stage.apply(batch))
                self._merge(stage, tally)
                after = _by_source(batch)  # a stage's output counts are the next stage's input counts
                self.removed[stage.name].update({k: n - after[k] for k, n in before.items() if n > after[k]})
                before = after
            yield batch

    def _merge(self, stage: Stage, tally: Tally) -> None:
        """Add one batch's stage counters; keep the first `stage.drop_samples` dropped rows per reason."""
        for source, counts in tally.counts.items():
            self.counts[stage.name].setdefault(source, Counter()).update(counts)
        if tally.dropped is None or not stage.drop_samples:
            return
        kept: Counter[str] = Counter()
        for sample in self.dropped[stage.name]:
            kept.update(sample.column(DROP).to_pylist())
        for reason in sorted(set(tally.dropped.column(DROP).to_pylist())):
            room = stage.drop_samples - kept[reason]
            if room > 0:
                rows = tally.dropped.filter(pc.equal(tally.dropped.column(DROP), reason))
                self.dropped[stage.name].append(rows.slice(0, room))

    def _materialise(self, source: Callable[[list[str] | None], Iterator[pa.RecordBatch]],
                     segment: list[Stage], index: int) -> Callable[[list[str] | None], Iterator[pa.RecordBatch]]:
        folder = self.work_dir / f"segment-{index:02d}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        path = folder / "rows.parquet"
        writer: pq.ParquetWriter | None = None
        for batch in self._apply(source, segment):
            if writer is None:
                writer = pq.ParquetWriter(path, batch.schema, compression="zstd")
            if batch.num_rows:
                writer.write_batch(batch)
        if writer is None:
            return lambda cols: iter(())
        writer.close()
        return lambda cols: scan_parquet([path], cols)
