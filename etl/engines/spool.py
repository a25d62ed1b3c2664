"""How the local engine's big values travel between the build and its pool workers: through files in
a spool folder instead of through the pool's pipe.

The pool pickles every work item and result. Pickled the usual way, a 10k-row SFT batch (≈ 9 MiB) is
copied into a bytes object, pushed through the pipe in pieces and copied out again: measured about
28 ms of CPU per batch and direction, ≈ 12% of a build's CPU samples spent around the pipe. Here an
Arrow record batch or table, or a NumPy array, of at least `MIN_BYTES` is pickled with protocol 5
and its buffers out of band; the buffers are written once to one file, and the receiver maps the
file and unpickles over the mapped buffers (no copy), then removes the file (the mapping stays
valid): measured about 7 ms. The objects are rebuilt by their own pickle code from the same buffers,
so they come back with the same layout (offsets, validity bitmaps) as through the pipe, and sizes
computed from them, such as the shard cuts, do not change.

A file is written only while a spool folder is set (`use`): the engine sets it in the build and in
each worker. The folder is the engine's; files of items never received (a failed build) go with it.
"""

from __future__ import annotations

import itertools
import mmap
import os
import pickle
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

MIN_BYTES = 1 << 20   # smaller values are cheaper through the pipe than as a file
_ALIGN = 64           # Arrow's buffer alignment

_folder: Path | None = None
_names = itertools.count()


def use(folder: Path | None) -> None:
    """Spool big values through `folder` from now on in this process (None: through the pipe)."""
    global _folder
    _folder = folder


def _size(value: Any) -> int:
    return int(value.nbytes)


def _reduce(value: Any) -> tuple[Any, ...]:
    if _folder is None or _size(value) < MIN_BYTES:
        return value.__reduce_ex__(pickle.DEFAULT_PROTOCOL)  # type: ignore[no-any-return]
    buffers: list[pickle.PickleBuffer] = []
    head = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    path = _folder / f"{os.getpid()}-{next(_names)}.bin"
    spans: list[tuple[int, int]] = []
    with open(path, "wb") as handle:
        handle.write(head)
        position = len(head)
        for buffer in buffers:
            raw = buffer.raw()
            padding = -position % _ALIGN
            handle.write(bytes(padding))
            position += padding
            spans.append((position, raw.nbytes))
            handle.write(raw)
            position += raw.nbytes
    return _restore, (str(path), len(head), spans)


def _restore(path: str, head_size: int, spans: list[tuple[int, int]]) -> Any:
    """The spooled value, over buffers mapped from its file (writable: a NumPy array stays writable,
    and what is written goes only to the removed file's pages)."""
    with open(path, "r+b") as handle:
        mapped = memoryview(mmap.mmap(handle.fileno(), 0))
    os.unlink(path)
    return pickle.loads(mapped[:head_size], buffers=[mapped[offset:offset + size] for offset, size in spans])


for _type in (pa.RecordBatch, pa.Table, np.ndarray):
    ForkingPickler.register(_type, _reduce)
