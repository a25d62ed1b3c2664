"""The stage executor: streams one task's rows through the cross-source stage chain on an engine.

The chain is cut into segments at every stage with a global pass (`prepare`). A segment of
apply-only stages is mapped over the task's batches on the engine's workers (Engine.map, in order);
when the rows come from Parquet files (the conversion cache, the scratch: `ParquetStream`), the
workers are given pieces of the files and read the rows themselves.
Before a global pass, the rows reaching it must be re-readable: the executor writes them to scratch
once, unless every stage since the last copy is replayable (`Stage.replay_reads`: it only drops rows
or rewrites a few columns, cheaply), in which case a later pass re-reads the last copy with just the
columns it needs and replays those stages on the narrow batches. With the default chain that is one
scratch copy per task (after normalise), removed when the task is done. Rows in and out of every stage
are counted per source.
"""

from __future__ import annotations

import functools
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from etl.engines.base import Engine
from etl.engines.local import LocalEngine
from etl.faults import checkpoint
from etl.memory import release_memory
from etl.stages.base import DROP, Scan, Stage, StageContext, Tally, check_chain, map_rows, settle
from etl.write import RowGroupWriter

BATCH_ROWS = 10_000
R = TypeVar("R")
Stream = Callable[[list[str] | None], Iterator[pa.RecordBatch]]
Finish = Callable[[pa.RecordBatch], pa.RecordBatch]


def _has_global_pass(stage: Stage) -> bool:
    return type(stage).prepare is not Stage.prepare


def _by_source(batch: pa.RecordBatch) -> Counter[str]:
    counts: Counter[str] = Counter()
    if batch.num_rows:
        for item in pc.value_counts(batch.column("source")).to_pylist():
            counts[item["values"]] += item["counts"]
    return counts


def aligned_runs(parquet: pq.ParquetFile) -> Iterator[list[int]]:
    """The file's row groups in runs of consecutive groups, each ending where the rows so far are a
    multiple of BATCH_ROWS (the last run: at the end)."""
    run: list[int] = []
    rows = 0
    for index in range(parquet.metadata.num_row_groups):
        run.append(index)
        rows += parquet.metadata.row_group(index).num_rows
        if rows % BATCH_ROWS == 0:
            yield run
            run = []
    if run:
        yield run


def scan_parquet(paths: list[Path], columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """Every row of the files in batches of BATCH_ROWS (cut across row groups, as one reader of the
    whole file cuts them), read by a fresh reader per aligned run of row groups: one reader kept over
    a file's many row groups holds on to memory as it goes (measured in the driver of a 1M build:
    Arrow's allocation grew by ≈ 30 MiB per 100k rows of the SFT scratch, 243 MiB by the end; known
    upstream, apache/arrow#39808). The files read here are written by `RowGroupWriter` (the scratch in
    row groups of BATCH_ROWS rows, the conversion cache in 5,000), so a run is one or two groups."""
    yield from ParquetStream([(path, None) for path in paths])(columns)


@dataclass(frozen=True)
class Piece:
    """An aligned run of one Parquet file's row groups, which a worker can read itself. With a
    `first_row`, the rows are numbered from it (`_row`) and get the `priority` (`_priority`)."""

    path: str
    groups: tuple[int, ...]
    first_row: int | None = None
    priority: int = 0


def read_piece(piece: Piece, columns: list[str] | None = None,
               parquet: pq.ParquetFile | None = None) -> Iterator[pa.RecordBatch]:
    """The piece's rows (its `columns`, or all) in batches of BATCH_ROWS, by a reader of its own over
    the piece's row groups (`parquet`: the file already open, as a scan of the whole file has it)."""
    parquet = parquet or pq.ParquetFile(piece.path)
    numbered = piece.first_row is not None
    ordinal = piece.first_row or 0
    for batch in parquet.iter_batches(batch_size=BATCH_ROWS, row_groups=list(piece.groups),
                                      columns=None if numbered else columns):
        if numbered:
            n = batch.num_rows
            batch = pa.RecordBatch.from_arrays(
                [*batch.columns, pa.array(range(ordinal, ordinal + n), pa.int64()),
                 pa.repeat(pa.scalar(piece.priority, pa.int32()), n)],
                names=[*batch.schema.names, "_row", "_priority"])
            ordinal += n
            if columns is not None:
                batch = batch.select(columns)
        yield batch


class ParquetStream:
    """A re-startable stream (`Stream`) over Parquet files, read in pieces (aligned runs of row
    groups). Given a priority per file, the rows are numbered across the files in order (`_row`,
    the task's canonical order) and carry their file's `_priority`. `TaskRun._apply` hands the pieces
    to the workers, which read them themselves: the driver then neither decodes nor sends the rows."""

    def __init__(self, files: list[tuple[Path, int | None]]) -> None:
        self.files = files

    def _runs(self) -> Iterator[tuple[pq.ParquetFile, Piece]]:
        ordinal = 0
        for path, priority in self.files:
            parquet = pq.ParquetFile(path)
            where = str(Path(path).absolute())   # the workers may not share the driver's working directory
            for groups in aligned_runs(parquet):
                yield parquet, Piece(where, tuple(groups), None if priority is None else ordinal, priority or 0)
                ordinal += sum(parquet.metadata.row_group(g).num_rows for g in groups)

    def pieces(self) -> Iterator[Piece]:
        return (piece for _, piece in self._runs())

    def __call__(self, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
        for parquet, piece in self._runs():   # each file's footer is read once, as before the pieces
            yield from read_piece(piece, columns, parquet)


def run_segment(segment: list[Stage], finish: Finish | None, batch: pa.RecordBatch
                ) -> tuple[pa.RecordBatch, dict[str, Counter[str]], dict[str, Tally]]:
    """One batch through a segment of stages (then `finish`, which only adds internal columns); also
    the rows each stage removed, per source, and each stage's own counters and dropped rows
    (base.settle). Runs on a worker: module-level so that `functools.partial(run_segment, segment,
    finish)` can be sent to one."""
    removed: dict[str, Counter[str]] = {}
    tallies: dict[str, Tally] = {}
    before = _by_source(batch)
    for stage in segment:
        batch, tally = settle(stage.apply(batch))
        if tally.counts or tally.dropped is not None:
            tallies[stage.name] = tally
        after = _by_source(batch)  # a stage's output counts are the next stage's input counts
        removed[stage.name] = Counter({k: n - after[k] for k, n in before.items() if n > after[k]})
        before = after
    return (batch if finish is None else finish(batch)), removed, tallies


def _wanted(columns: list[str] | None, segment: list[Stage] | tuple[Stage, ...]) -> list[str] | None:
    """`columns` and what the replayed `segment` reads to decide (its `replay_reads`), in that order."""
    needed = {c for stage in segment for c in stage.replay_reads or ()}
    return None if columns is None else list(dict.fromkeys([*columns, *sorted(needed - set(columns))]))


def _replayed(batches: Iterator[pa.RecordBatch], segment: list[Stage] | tuple[Stage, ...],
              columns: list[str] | None) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        for stage in segment:
            batch = stage.apply(batch)
        yield batch if columns is None else batch.select(columns)


def run_replayed(fn: Callable[[pa.RecordBatch], R], segment: tuple[Stage, ...], columns: list[str] | None,
                 piece: Piece) -> list[R]:
    """`fn` over the batches of a piece this worker reads itself, with `segment` replayed on them."""
    return [fn(batch) for batch in _replayed(read_piece(piece, _wanted(columns, segment)), segment, columns)]


class Replay:
    """A global pass's `Scan`: the rows as they reach the stage, i.e. the last copy (`source`) with the
    replayable `segment` applied on the fly, reading only the columns needed. When the copy is
    Parquet (`ParquetStream`: the scratch, the conversion cache), `on_workers` lets the pass's
    per-batch part run where the rows are read (`StageContext.map_rows`)."""

    def __init__(self, source: Stream, segment: list[Stage]) -> None:
        self.source, self.segment = source, tuple(segment)

    def __call__(self, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
        if not self.segment:
            return self.source(columns)
        return _replayed(self.source(_wanted(columns, self.segment)), self.segment, columns)

    def on_workers(self, fn: Callable[[pa.RecordBatch], R], columns: list[str] | None
                   ) -> tuple[Callable[[Piece], list[R]], Iterator[Piece]] | None:
        """(a function of one piece, the pieces) giving `fn` of every batch of `self(columns)`, in
        order, the same batches; None when the rows are not in files a worker can read."""
        if not isinstance(self.source, ParquetStream):
            return None
        return functools.partial(run_replayed, fn, self.segment, columns), self.source.pieces()


class TaskRun:
    """Runs `stages` over `source()` (a fresh stream of the task's batches on each call)."""

    def __init__(self, task: str, stages: list[Stage], work_dir: Path, report_dir: Path,
                 scan_eval: Scan, engine: Engine | None = None,
                 on_stage: Callable[[str], None] | None = None, finish: Finish | None = None) -> None:
        """`finish`: run on the workers after the last stage on every output batch (it may add `_`
        columns, e.g. token counts)."""
        self.task, self.stages = task, stages
        self.finish = finish
        self.work_dir, self.report_dir = work_dir, report_dir
        self.scan_eval = scan_eval
        self.engine = engine or LocalEngine(1)
        self.on_stage = on_stage or (lambda name: None)
        self.removed: dict[str, Counter[str]] = {s.name: Counter() for s in stages}
        # a stage's own counters (base.settle): stage -> source -> key -> n; and sample dropped rows
        self.counts: dict[str, dict[str, Counter[str]]] = {s.name: {} for s in stages}
        self.dropped: dict[str, list[pa.RecordBatch]] = {s.name: [] for s in stages}
        self.phases: list[tuple[str, float, float]] = []   # (what, start, end) on time.perf_counter()

    def run(self, source: Stream, columns: set[str]) -> Iterator[pa.RecordBatch]:
        """The task's output batches, in canonical order. Scratch is removed once they are all out."""
        check_chain(self.stages, columns)
        current = source
        segment: list[Stage] = []
        for index, stage in enumerate(self.stages):
            if _has_global_pass(stage):
                if any(s.replay_reads is None for s in segment):
                    current, segment = self._materialise(current, segment, index), []
                self.on_stage(stage.name)
                ctx = StageContext(self.task, self.work_dir / stage.name, self.report_dir, self.scan_eval,
                                   self.engine.workers, engine=self.engine)
                ctx.work_dir.mkdir(parents=True, exist_ok=True)
                start = time.perf_counter()
                stage.prepare(Replay(current, segment), ctx)
                self.phases.append((f"{stage.name}.prepare", start, time.perf_counter()))
                shutil.rmtree(ctx.work_dir, ignore_errors=True)
                release_memory()   # the pass's tables are freed; their pages go back (etl/memory.py)
                checkpoint(f"stage:{stage.name}")
            segment.append(stage)
        start = time.perf_counter()
        yield from self._apply(current, segment, self.finish)
        self.phases.append((f"apply {'+'.join(s.name for s in segment)} + write", start, time.perf_counter()))
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def _apply(self, source: Stream, segment: list[Stage], finish: Finish | None = None) -> Iterator[pa.RecordBatch]:
        if not segment and finish is None:
            yield from source(None)
            return
        by_name = {stage.name: stage for stage in segment}
        results = map_rows(self.engine, functools.partial(run_segment, segment, finish), Replay(source, []), None)
        for batch, removed, tallies in results:
            for name, counts in removed.items():
                self.removed[name].update(counts)
            for name, tally in tallies.items():
                self._merge(by_name[name], tally)
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

    def _materialise(self, source: Stream, segment: list[Stage], index: int) -> Stream:
        folder = self.work_dir / f"segment-{index:02d}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        path = folder / "rows.parquet"
        start = time.perf_counter()
        writer: RowGroupWriter | None = None
        for batch in self._apply(source, segment):
            if writer is None:
                writer = RowGroupWriter(path, batch.schema, BATCH_ROWS)
            if batch.num_rows:
                writer.add_table(pa.Table.from_batches([batch]))
        self.phases.append((f"apply {'+'.join(s.name for s in segment)} → scratch", start, time.perf_counter()))
        if writer is None:
            return lambda cols: iter(())
        writer.close()
        return ParquetStream([(path, None)])
