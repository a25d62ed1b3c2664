"""etl.memory.release_memory: the free pages a phase leaves behind go back to the system."""

from __future__ import annotations

import resource

import pyarrow as pa

from etl.memory import release_memory


def _resident_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def test_freed_arrow_buffers_are_returned() -> None:
    # Many medium buffers, as a phase's batches leave them; one is kept so the pool stays in use.
    buffers = [pa.allocate_buffer(96 << 10) for _ in range(2_500)]     # ~234 MiB
    for buffer in buffers:
        memoryview(buffer).cast("B")[::4096] = b"\x01" * len(range(0, 96 << 10, 4096))  # touch every page
    kept = buffers.pop()
    buffers.clear()
    before = _resident_bytes()
    release_memory()
    after = _resident_bytes()
    assert kept.size == 96 << 10
    assert before - after > 100 << 20
