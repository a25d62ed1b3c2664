"""What a cross-source stage is: a step over Arrow record batches that declares its columns.

A stage may need one pass over the whole task first (`prepare`, e.g. dedup finds clusters from the
key column only), then it maps each batch (`apply`), keeping, dropping or adding columns and rows.
The executor checks the chain before running anything, streams batches through `apply`, and counts
rows in and out per source for every stage, so a stage never needs its own bookkeeping for that.

Columns starting with `_` are internal (`_row`: global ordinal in canonical order, `_priority`,
`_key`, ...) and are never written to the output.

A stage reports its own per-source counters through the batch it returns, so that they can be
gathered wherever `apply` ran (another process, a Ray worker) and merged by summing:
- `_drop` (string): a row with a reason here is removed right after the stage and counted under
  that reason (`settle`); null keeps the row;
- `_n_<key>` (integer): a per-row count (e.g. `_n_PHONE`: phone numbers replaced in this row),
  summed per source and removed right after the stage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
import pyarrow as pa

from etl.engines.base import Engine

R = TypeVar("R")
Scan = Callable[[list[str] | None], Iterator[pa.RecordBatch]]


@dataclass
class StageContext:
    task: str
    work_dir: Path                       # scratch space of this stage for this task (spills, indexes)
    report_dir: Path                     # human-readable reports (e.g. dup clusters, decontam hits)
    # Every eval-role row of all tasks, for decontamination: any task column (null where the row's
    # task has none), plus `task` and `text` (the row's whole matching text, etl.stages.text.row_texts).
    scan_eval: Scan
    workers: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    engine: Engine | None = None         # the build's engine; None runs everything in this process

    def map(self, fn: Callable[[Any], R], items: Iterable[Any]) -> Iterator[R]:
        """`fn` over `items` on the build's workers, results in input order (Engine.map): the
        per-batch part of a global pass. `fn` must cross a process boundary (a module-level function or a
        `functools.partial` of one)."""
        if self.engine is None:
            return (fn(item) for item in items)
        return self.engine.map(fn, items)

    def map_rows(self, fn: Callable[[pa.RecordBatch], R], scan: Scan, columns: list[str]) -> Iterator[R]:
        """`fn` over every batch of `scan(columns)`, results in order (`map_rows` below)."""
        return map_rows(self.engine, fn, scan, columns)


def map_rows(engine: Engine | None, fn: Callable[[pa.RecordBatch], R], scan: Scan,
             columns: list[str] | None) -> Iterator[R]:
    """`fn` over every batch of `scan(columns)` on the `engine`, results in order. Where the rows are
    in files the workers can read (a scan with `on_workers`, etl/executor.py `Replay`), each worker
    reads its share itself and the driver neither decodes nor sends them (the same batches, so the
    same results); otherwise the driver reads them and `Engine.map` sends them."""
    if engine is None:
        return (fn(batch) for batch in scan(columns))
    split = getattr(scan, "on_workers", None)
    shared = split(fn, columns) if split is not None else None
    if shared is None:
        return engine.map(fn, scan(columns))
    per_piece, pieces = shared
    return (result for results in engine.map(per_piece, pieces) for result in results)


class Stage:
    """Base class. Subclasses set `name`, `reads`, `writes` and override `apply` (and `prepare` if global)."""

    name: str = "stage"
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    # Set when `apply` only drops rows (deciding from these columns) and rewrites its `writes`: the
    # executor then re-runs it over a narrow re-scan for a later global pass instead of writing a
    # full copy of its output to scratch. On a re-scan `apply` rewrites only the `writes` columns the
    # re-scan asked for (the ones present in the batch).
    replay_reads: tuple[str, ...] | None = None

    def prepare(self, scan: Scan, ctx: StageContext) -> None:
        """Optional global pass: `scan(columns)` streams the task's rows as they reach this stage."""

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        raise NotImplementedError

    def summary(self) -> dict[str, Any]:
        """Stage-level figures for the manifest (parameters, totals); per-source counts are automatic."""
        return {}

    drop_samples: int = 0                 # dropped rows per reason the executor keeps for the report

    def removed_reason(self) -> str:
        """The manifest counter that rows this stage drops are counted under."""
        return self.name


def check_chain(stages: list[Stage], available: set[str]) -> None:
    """Fail before running anything if a stage reads a column no earlier step provides."""
    columns = set(available)
    for stage in stages:
        missing = [c for c in stage.reads if c not in columns]
        if missing:
            raise ValueError(f"stage {stage.name!r} reads {missing}, which no earlier step writes")
        columns.update(stage.writes)


DROP = "_drop"
COUNT_PREFIX = "_n_"


@dataclass
class Tally:
    """What `settle` took out of one batch: counts per source by key, and the dropped rows."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    dropped: pa.RecordBatch | None = None


def settle(batch: pa.RecordBatch) -> tuple[pa.RecordBatch, Tally]:
    """Take a stage's report columns (`_drop`, `_n_*`) out of its output batch: sums per source,
    the rows marked for dropping removed (and returned in the tally, reason in `_drop`)."""
    names = batch.schema.names
    counted = [n for n in names if n.startswith(COUNT_PREFIX)]
    tally = Tally()
    if not counted and DROP not in names:
        return batch, tally
    frame = pl.from_arrow(pa.Table.from_batches([batch.select(["source", *counted, *([DROP] if DROP in names else [])])]))
    assert isinstance(frame, pl.DataFrame)
    parts = []
    if counted:
        sums = frame.group_by("source").agg([pl.col(c).sum() for c in counted])
        parts.append(sums.unpivot(index="source", variable_name="key", value_name="n")
                     .with_columns(pl.col("key").str.slice(len(COUNT_PREFIX))))
    if DROP in names:
        parts.append(frame.filter(pl.col(DROP).is_not_null()).group_by("source", DROP).len()
                     .select("source", pl.col(DROP).alias("key"), pl.col("len").alias("n")))
    for part in parts:
        for source, key, n in part.filter(pl.col("n") > 0).sort("source", "key").iter_rows():
            per_source = tally.counts.setdefault(source, {})
            per_source[key] = per_source.get(key, 0) + int(n)
    batch = batch.drop_columns(counted)
    if DROP in names:
        marked = batch.column(DROP)
        if marked.null_count < batch.num_rows:
            tally.dropped = batch.filter(marked.is_valid())
            batch = batch.filter(marked.is_null())
        batch = batch.drop_columns([DROP])
    return batch, tally
