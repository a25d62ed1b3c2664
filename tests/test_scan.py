"""Scratch and cache files are read back in the batches one reader of the whole file would give,
by a fresh reader per aligned run of row groups, so the reading process does not accumulate memory."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl import executor
from etl.engines.local import LocalEngine
from etl.executor import ParquetStream, TaskRun, aligned_runs, scan_parquet
from etl.stages.base import Stage, StageContext
from etl.write import RowGroupWriter


def _batch(start: int, rows: int) -> pa.RecordBatch:
    rng = np.random.default_rng(start)
    texts = ["".join(chr(0x4E00 + int(c)) for c in rng.integers(0, 2000, 120)) for _ in range(rows)]
    return pa.record_batch({"n": pa.array(np.arange(start, start + rows), pa.int64()), "text": pa.array(texts, pa.string()),
                            "meta": pa.array([None if (start + i) % 3 else "{}" for i in range(rows)], pa.string())})


def _write(path, sizes: list[int]) -> None:
    start = 0
    with pq.ParquetWriter(path, _batch(0, 1).schema, compression="zstd") as writer:
        for size in sizes:
            writer.write_batch(_batch(start, size))
            start += size


@pytest.mark.parametrize("sizes", [[5, 5, 5, 5, 3], [7, 3, 4, 9, 2], [10, 10], [3], [12, 1]])
def test_batches_are_the_single_readers_batches(tmp_path, monkeypatch, sizes):
    monkeypatch.setattr(executor, "BATCH_ROWS", 10)
    path = tmp_path / "rows.parquet"
    _write(path, sizes)
    expected = list(pq.ParquetFile(path).iter_batches(batch_size=10))
    got = list(scan_parquet([path]))
    assert [b.num_rows for b in got] == [b.num_rows for b in expected]
    assert all(a.equals(b) for a, b in zip(got, expected, strict=True))
    assert [b.nbytes for b in got] == [b.nbytes for b in expected]   # shard cuts are made by nbytes
    narrow = list(scan_parquet([path], ["n"]))
    assert pa.Table.from_batches(narrow).column("n").to_pylist() == list(range(sum(sizes)))


def test_runs_end_on_batch_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr(executor, "BATCH_ROWS", 10)
    path = tmp_path / "rows.parquet"
    _write(path, [5, 5, 7, 3, 4, 9, 2, 10])
    assert list(aligned_runs(pq.ParquetFile(path))) == [[0, 1], [2, 3], [4, 5, 6, 7]]


def test_the_row_group_writer_cuts_row_groups_of_exactly_the_given_rows(tmp_path):
    path = tmp_path / "scratch.parquet"
    pieces = [_batch(0, 7), _batch(7, 0), _batch(7, 8), _batch(15, 14), _batch(29, 3)]
    writer = RowGroupWriter(path, pieces[0].schema, 10)
    for piece in pieces:
        writer.add_table(pa.Table.from_batches([piece]))
    writer.close()
    metadata = pq.ParquetFile(path).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [10, 10, 10, 2]
    assert pq.read_table(path).equals(pa.Table.from_batches(pieces))


def test_a_segment_with_no_batch_leaves_no_scratch(tmp_path):
    run = TaskRun("pretrain", [], tmp_path / "work", tmp_path / "reports", lambda columns: iter(()))
    stream = run._materialise(lambda columns: iter(()), [], 0)
    assert list(stream(None)) == []
    assert not (tmp_path / "work" / "segment-00" / "rows.parquet").exists()


def test_reading_many_row_groups_does_not_accumulate_memory(tmp_path):
    """One reader over 40 row groups held ≈ 25 MiB of Arrow memory by the end of this file (pyarrow
    26); a reader per run holds about one batch."""
    path = tmp_path / "rows.parquet"
    _write(path, [executor.BATCH_ROWS // 5] * 40)
    one_batch = next(scan_parquet([path])).nbytes
    baseline = pa.total_allocated_bytes()
    peak = 0
    for _ in scan_parquet([path]):
        peak = max(peak, pa.total_allocated_bytes() - baseline)
    assert peak < 4 * one_batch


def _numbered(paths_and_priorities) -> list[tuple[int, int, int]]:
    """(n, _row, _priority) of every row as the task stream must number them: in file order."""
    rows, ordinal = [], 0
    for path, priority in paths_and_priorities:
        for n in pq.read_table(path).column("n").to_pylist():
            rows.append((n, ordinal, priority))
            ordinal += 1
    return rows


def test_a_parquet_stream_numbers_rows_across_files(tmp_path, monkeypatch):
    monkeypatch.setattr(executor, "BATCH_ROWS", 10)
    files = [(tmp_path / "a.parquet", 2), (tmp_path / "b.parquet", 0), (tmp_path / "c.parquet", 5)]
    for (path, _), sizes in zip(files, [[5, 5, 7, 3, 4], [3], [10, 12, 1]], strict=True):
        _write(path, sizes)
    stream = ParquetStream(files)
    got = pa.Table.from_batches(list(stream(None)))
    assert list(zip(*(got.column(c).to_pylist() for c in ("n", "_row", "_priority")), strict=True)) == _numbered(files)
    assert got.schema.names == ["n", "text", "meta", "_row", "_priority"]
    assert [b.num_rows for b in stream(["_row"])] == [10, 10, 4, 3, 10, 10, 3]   # aligned runs, per file
    assert pa.Table.from_batches(list(stream(["_row", "n"]))).schema.names == ["_row", "n"]
    plain = ParquetStream([(path, None) for path, _ in files])
    assert [b.schema.names for b in plain(["n"])][0] == ["n"]
    assert pa.Table.from_batches(list(plain(None))).equals(pa.concat_tables(pq.read_table(p) for p, _ in files))


def _worker_pid(batch: pa.RecordBatch) -> pa.RecordBatch:
    return batch.append_column("pid", pa.repeat(pa.scalar(os.getpid(), pa.int64()), batch.num_rows))


def test_workers_read_the_pieces_themselves(tmp_path, monkeypatch):
    """On a pool, the driver hands out pieces of the files, not rows: reading a piece in the driver
    fails here, and the rows come back from the workers, numbered as the task stream numbers them."""
    files = [(tmp_path / "a.parquet", 1), (tmp_path / "b.parquet", 3)]
    start = 0
    for (path, _), sizes in zip(files, [[5_000] * 5, [4_000, 3_000]], strict=True):
        with pq.ParquetWriter(path, pa.schema({"n": pa.int64(), "source": pa.string()})) as writer:
            for size in sizes:
                writer.write_batch(pa.record_batch({"n": pa.array(range(start, start + size), pa.int64()),
                                                    "source": pa.array([path.stem] * size)}))
                start += size
    monkeypatch.setattr(executor, "read_piece", lambda *args: pytest.fail("the driver read a piece"))
    with LocalEngine(2) as engine:
        run = TaskRun("pretrain", [], tmp_path / "work", tmp_path / "reports", lambda columns: iter(()),
                      engine, finish=_worker_pid)
        got = pa.Table.from_batches(list(run._apply(ParquetStream(files), [], _worker_pid)))
    assert list(zip(*(got.column(c).to_pylist() for c in ("n", "_row", "_priority")), strict=True)) == _numbered(files)
    assert os.getpid() not in set(got.column("pid").to_pylist())


class _DropThirds(Stage):
    """A replayable stage (it only drops rows, deciding from `_row`)."""

    name = "drop_thirds"
    replay_reads = ("_row",)

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch.filter(pa.array(batch.column("_row").to_numpy() % 3 != 0))


def _seen(batch: pa.RecordBatch) -> tuple[int, list[str], list[int]]:
    return os.getpid(), batch.schema.names, batch.column("n").to_pylist()


def test_a_global_pass_reads_its_rows_on_the_workers(tmp_path, monkeypatch):
    """`StageContext.map_rows` over a replayed copy: each worker reads its pieces, replays the
    segment and gives the pass's function the batches the driver's scan would give, in order."""
    files = [(tmp_path / "a.parquet", 1), (tmp_path / "b.parquet", 3)]
    start = 0
    for (path, _), sizes in zip(files, [[5_000] * 5, [4_000, 3_000]], strict=True):
        with pq.ParquetWriter(path, pa.schema({"n": pa.int64()})) as writer:
            for size in sizes:
                writer.write_batch(pa.record_batch({"n": pa.array(range(start, start + size), pa.int64())}))
                start += size
    scan = executor.Replay(ParquetStream(files), [_DropThirds()])
    in_driver = [(names, n) for _, names, n in map(_seen, scan(["n"]))]
    assert [n for _, part in in_driver for n in part] == [n for n in range(start) if n % 3]
    assert {tuple(names) for names, _ in in_driver} == {("n",)}   # `_row` read for the replay only
    monkeypatch.setattr(executor, "read_piece", lambda *args: pytest.fail("the driver read a piece"))
    with LocalEngine(2) as engine:
        ctx = StageContext("pretrain", tmp_path / "work", tmp_path / "reports", lambda columns: iter(()), 2,
                           engine=engine)
        got = list(ctx.map_rows(_seen, scan, ["n"]))
    assert [(names, n) for _, names, n in got] == in_driver
    assert os.getpid() not in {pid for pid, _, _ in got}


def test_a_scan_the_workers_cannot_read_is_mapped_from_the_driver(tmp_path):
    batches = [pa.record_batch({"n": pa.array(range(i, i + 3), pa.int64())}) for i in (0, 3)]
    scan = executor.Replay(lambda columns: iter(batches), [])
    assert scan.on_workers(_seen, ["n"]) is None
    with LocalEngine(2) as engine:
        ctx = StageContext("pretrain", tmp_path / "work", tmp_path / "reports", lambda columns: iter(()), 2,
                           engine=engine)
        assert [n for _, _, n in ctx.map_rows(_seen, scan, ["n"])] == [[0, 1, 2], [3, 4, 5]]
