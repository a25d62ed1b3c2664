"""A reference runner that holds one task's rows in memory: for tests, the benchmark and small data.

It follows the executor contract of base.py: `prepare(scan, ctx)` sees the rows as they reach the
stage, then `apply` maps every batch (its report columns settled, base.settle); rows in and out are
counted per source and stage.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from etl.stages.base import Stage, StageContext, check_chain, settle


def _batches(table: pa.Table, columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
    yield from table.select(columns).to_batches(max_chunksize=batch_rows)


def run_in_memory(task: str, table: pa.Table, stages: list[Stage], work_dir: Path, report_dir: Path,
                  eval_table: pa.Table | None = None, batch_rows: int = 10_000,
                  ) -> tuple[pa.Table, dict[str, Counter[str]]]:
    """Run `stages` over `table`; returns the output and, per stage, rows removed per source.
    `eval_table` holds the eval rows of every task (a `task` column plus the task columns)."""
    check_chain(stages, set(table.column_names))
    removed: dict[str, Counter[str]] = {}

    def scan_eval(columns: list[str]) -> Iterator[pa.RecordBatch]:
        if eval_table is None:
            return iter(())
        present = [c for c in columns if c in eval_table.column_names]
        return _batches(eval_table, present, batch_rows)

    for stage in stages:
        current = table
        ctx = StageContext(task=task, work_dir=Path(work_dir) / task / stage.name, report_dir=Path(report_dir),
                           scan_eval=scan_eval)
        ctx.work_dir.mkdir(parents=True, exist_ok=True)
        stage.prepare(lambda columns, t=current: _batches(t, columns, batch_rows), ctx)
        out = [settle(stage.apply(batch))[0] for batch in current.to_batches(max_chunksize=batch_rows)]
        before = Counter(current.column("source").to_pylist())
        table = pa.Table.from_batches(out) if out else current.slice(0, 0)
        removed[stage.name] = before - Counter(table.column("source").to_pylist())
    return table, removed
