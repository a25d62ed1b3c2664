"""Sharded writer: names, size caps, row groups, byte-identical output for identical rows."""

import pyarrow as pa
import pyarrow.parquet as pq

from etl.write import ShardedWriter

SCHEMA = pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("text", pa.string(), nullable=False)])


def rows(n: int, width: int = 100) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([{"id": f"s/{i}", "text": "病" * width} for i in range(n)], schema=SCHEMA)


def write(root, batches, max_bytes=10**9, group=1000):
    writer = ShardedWriter(root, "pretrain", "train", SCHEMA, max_bytes, group)
    for batch in batches:
        writer.write(batch)
    return writer.close()


def test_size_cap_splits_into_named_shards_in_order(tmp_path):
    shards = write(tmp_path, [rows(1000)], max_bytes=100_000, group=250)
    assert len(shards) > 1
    n = len(shards)
    assert [s.path for s in shards] == [f"pretrain/train-{i:05d}-of-{n:05d}.parquet" for i in range(n)]
    assert sum(s.rows for s in shards) == 1000
    ids = [i for s in shards for i in pq.read_table(tmp_path / s.path).column("id").to_pylist()]
    assert ids == [f"s/{i}" for i in range(1000)]
    assert not list(tmp_path.rglob("*.tmp"))


def test_row_groups_are_capped(tmp_path):
    (shard,) = write(tmp_path, [rows(500), rows(500)], group=300)
    meta = pq.ParquetFile(tmp_path / shard.path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [300, 300, 300, 100]
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_same_rows_same_bytes_whatever_the_batching(tmp_path):
    a = write(tmp_path / "a", [rows(700)], max_bytes=80_000, group=100)
    b = write(tmp_path / "b", [rows(700).slice(0, 123), rows(700).slice(123)], max_bytes=80_000, group=100)
    assert [(s.path, s.sha256) for s in a] == [(s.path, s.sha256) for s in b]


def test_no_rows_no_shard(tmp_path):
    assert write(tmp_path, []) == []
