"""Big values between the build and its pool workers go through spool files (etl/engines/spool.py):
they come back equal, with the same buffer layout as through the pipe, and leave no file behind."""

from __future__ import annotations

import pickle
from multiprocessing.reduction import ForkingPickler

import numpy as np
import pyarrow as pa
import pytest

from etl.engines import spool
from etl.engines.local import LocalEngine


def _big_batch() -> pa.RecordBatch:
    """A sliced batch with nulls, strings and nested SFT-like messages, over 1 MiB."""
    n = 6_000
    rng = np.random.default_rng(7)
    texts = ["患者" * int(k) + "mg" for k in rng.integers(1, 60, n)]
    turns = [[{"role": "user", "content": t}, {"role": "assistant", "content": t[::-1]}] for t in texts]
    batch = pa.record_batch({
        "id": pa.array([f"s/{i}" for i in range(n)]),
        "meta": pa.array([None if i % 7 == 0 else "{}" for i in range(n)]),
        "messages": pa.array(turns),
        "_row": pa.array(np.arange(n, dtype=np.int64)),
    })
    return batch.slice(123, n - 500)


def _layout(array: pa.Array) -> list[tuple[int, int, int, list[int | None]]]:
    """Per array and child: offset, length, null count and each buffer's size (None: no buffer)."""
    out = [(array.offset, len(array), array.null_count, [b.size if b is not None else None for b in array.buffers()])]
    if isinstance(array.type, pa.ListType):
        out += _layout(array.values)
    elif isinstance(array.type, pa.StructType):
        for index in range(array.type.num_fields):
            out += _layout(array.field(index))
    return out


@pytest.fixture
def folder(tmp_path):
    spool.use(tmp_path)
    yield tmp_path
    spool.use(None)


def test_a_big_batch_goes_through_a_file_and_keeps_its_layout(folder):
    batch = _big_batch()
    assert batch.nbytes >= spool.MIN_BYTES
    data = ForkingPickler.dumps(batch)
    assert len(data) < 4096                       # the buffers are in the file, not in the pickle
    assert len(list(folder.iterdir())) == 1
    through_pipe = pickle.loads(pickle.dumps(batch, protocol=pickle.DEFAULT_PROTOCOL))
    back = pickle.loads(data)
    assert list(folder.iterdir()) == []          # the receiver removes the file once mapped
    assert back.equals(batch)
    assert back.nbytes == through_pipe.nbytes == batch.nbytes
    assert [_layout(c) for c in back.columns] == [_layout(c) for c in through_pipe.columns]
    assert back.column("messages").to_pylist()[:2] == batch.column("messages").to_pylist()[:2]


def test_tables_and_arrays_too_and_arrays_stay_writable(folder):
    table = pa.Table.from_batches([_big_batch()] * 2)
    assert pickle.loads(ForkingPickler.dumps(table)).equals(table)
    array = np.arange(300_000, dtype=np.int64)
    back = pickle.loads(ForkingPickler.dumps(array))
    assert np.array_equal(back, array)
    back[0] = -1                                  # stages may work in place on what they receive
    assert back[0] == -1 and array[0] == 0
    assert list(folder.iterdir()) == []


def test_small_values_and_no_folder_stay_in_the_pipe(folder):
    small = pa.record_batch({"a": pa.array([1, 2, 3])})
    assert pickle.loads(ForkingPickler.dumps(small)).equals(small)
    assert list(folder.iterdir()) == []
    spool.use(None)
    big = _big_batch()
    data = ForkingPickler.dumps(big)
    assert len(data) > big.nbytes // 2 and pickle.loads(data).equals(big)
    assert list(folder.iterdir()) == []


def _echo(batch: pa.RecordBatch) -> tuple[int, pa.RecordBatch]:
    return batch.nbytes, batch


def test_the_pool_passes_batches_both_ways_and_removes_its_folder(tmp_path):
    folder = tmp_path / "spool"
    batch = _big_batch()
    with LocalEngine(2, folder) as engine:
        results = list(engine.map(_echo, [batch, batch.slice(10), batch]))
        assert list(folder.iterdir()) == []
    assert not folder.exists()
    assert [n for n, _ in results] == [batch.nbytes, batch.slice(10).nbytes, batch.nbytes]
    assert all(back.equals(sent) for (_, back), sent in zip(results, [batch, batch.slice(10), batch], strict=True))
