"""Sharded Parquet output (DESIGN §4): zstd, row groups of about `row_group_rows`, size-capped shards
named `{split}-{i:05d}-of-{n:05d}.parquet`.

Shards are written into a staging folder under temporary names; `n` is known only at the end, so they
are renamed once the split is complete. Shard boundaries depend only on the rows (their in-memory Arrow
size), never on timing, so the same rows give the same files, byte for byte.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from etl.faults import checkpoint


@dataclass(frozen=True)
class Shard:
    path: str      # relative to the output root, posix
    task: str
    split: str
    rows: int
    bytes: int
    sha256: str

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "task": self.task, "split": self.split, "rows": self.rows,
                "bytes": self.bytes, "sha256": self.sha256}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class ShardedWriter:
    """Writes one (task, split) stream into size-capped shards below `root/<task>/`."""

    def __init__(self, root: Path, task: str, split: str, schema: pa.Schema,
                 max_bytes: int, row_group_rows: int, prefix: str | None = None) -> None:
        self.root, self.task, self.split, self.schema = root, task, split, schema
        self.max_bytes, self.row_group_rows = max_bytes, row_group_rows
        self.prefix = prefix or split
        (root / task).mkdir(parents=True, exist_ok=True)
        self._parts: list[tuple[Path, int]] = []
        self._writer: pq.ParquetWriter | None = None
        self._shard_bytes = 0
        self._shard_rows = 0
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        batch = batch.select(self.schema.names).cast(self.schema)
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        while self._pending_rows >= self.row_group_rows:
            self._flush(self.row_group_rows)

    def _flush(self, rows: int) -> None:
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        head, tail = table.slice(0, rows), table.slice(rows)
        self._pending = tail.to_batches()
        self._pending_rows = tail.num_rows
        # Cut the row group so that a shard never grows past max_bytes (by Arrow size, which is
        # deterministic); a single row larger than the cap still gets a shard of its own.
        offset = 0
        while offset < head.num_rows:
            room = self.max_bytes - self._shard_bytes
            take = self._rows_within(head, offset, room)
            if take == 0:
                if self._shard_rows:
                    self._close_shard()
                    continue
                take = 1
            piece = head.slice(offset, take)
            self._ensure_writer().write_table(piece, row_group_size=self.row_group_rows)
            checkpoint(f"write:{self.task}")
            self._shard_bytes += piece.nbytes
            self._shard_rows += piece.num_rows
            offset += take
            if self._shard_bytes >= self.max_bytes:
                self._close_shard()

    @staticmethod
    def _rows_within(table: pa.Table, offset: int, room: int) -> int:
        remaining = table.num_rows - offset
        if room <= 0:
            return 0
        if table.slice(offset).nbytes <= room:
            return remaining
        low, high = 0, remaining
        while low < high:  # largest prefix whose Arrow size fits in `room`
            mid = (low + high + 1) // 2
            if table.slice(offset, mid).nbytes <= room:
                low = mid
            else:
                high = mid - 1
        return low

    def _ensure_writer(self) -> pq.ParquetWriter:
        if self._writer is None:
            path = self.root / self.task / f".{self.prefix}-part{len(self._parts):05d}.tmp"
            self._writer = pq.ParquetWriter(path, self.schema, compression="zstd", write_statistics=True)
            self._parts.append((path, 0))
        return self._writer

    def _close_shard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            path, _ = self._parts[-1]
            self._parts[-1] = (path, self._shard_rows)
            self._writer = None
        self._shard_bytes = 0
        self._shard_rows = 0

    def close(self, keep_empty: bool = False) -> list[Shard]:
        """Finish the last shard and give every shard its final name. No rows → no shard, unless
        `keep_empty` asks for one empty shard (a table whose emptiness is itself information)."""
        if self._pending_rows:
            self._flush(self._pending_rows)
        if keep_empty and not self._parts:
            self._ensure_writer()
        self._close_shard()
        total = len(self._parts)
        shards: list[Shard] = []
        for index, (tmp, rows) in enumerate(self._parts):
            name = f"{self.prefix}-{index:05d}-of-{total:05d}.parquet"
            final = tmp.with_name(name)
            os.replace(tmp, final)
            shards.append(Shard(f"{self.task}/{name}", self.task, self.split, rows,
                                final.stat().st_size, file_sha256(final)))
        return shards


class RowGroupWriter:
    """Appends rows (dicts or Arrow tables) to a zstd Parquet file in row groups of exactly `group_rows`
    rows (the last one shorter), so that the file's bytes depend only on its rows, never on how they
    came, and a reader can take it a run of row groups at a time (etl/executor.scan_parquet); the
    file is created even when no row comes."""

    def __init__(self, path: Path, schema: pa.Schema, group_rows: int) -> None:
        self.schema, self.group_rows = schema, group_rows
        self.writer = pq.ParquetWriter(path, schema, compression="zstd")
        self.rows: list[dict[str, Any]] = []
        self.tables: list[pa.Table] = []
        self.pending = 0

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.pending += 1
        if self.pending >= self.group_rows:
            self.flush()

    def add_table(self, table: pa.Table) -> None:
        self._materialise()
        self.tables.append(table)
        self.pending += table.num_rows
        if self.pending >= self.group_rows:
            self.flush()

    def _materialise(self) -> None:
        if self.rows:
            self.tables.append(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def flush(self, final: bool = False) -> None:
        self._materialise()
        if not self.tables:
            return
        table = pa.concat_tables(self.tables) if len(self.tables) > 1 else self.tables[0]
        while table.num_rows >= self.group_rows or (final and table.num_rows):
            take = min(self.group_rows, table.num_rows)
            self.writer.write_table(table.slice(0, take).combine_chunks())
            table = table.slice(take)
        self.tables = [table] if table.num_rows else []
        self.pending = table.num_rows

    def close(self) -> None:
        self.flush(final=True)
        self.writer.close()
