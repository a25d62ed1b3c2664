"""Give memory a build's processes have freed back to the system between the phases of a build
(the driver at phase ends, etl/build.py and etl/executor.py; a pool worker when the function it is
given changes, etl/engines/local.py).

Arrow's default allocator (mimalloc) and glibc's malloc keep the pages of freed buffers for reuse.
After a global pass the driver holds hundreds of MiB of such pages (measured on the 1M benchmark
mirror: 778 MiB after SFT near_dedup.prepare, 389 MiB once released), and the next phase, whose
buffers come from other threads' heaps, does not reuse all of them, so the driver's resident memory
climbed from phase to phase at 5M records. Released at phase ends only: a handful of calls per build.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

import pyarrow as pa


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return getattr(ctypes.CDLL("libc.so.6"), "malloc_trim", None)
    except OSError:
        return None


def release_memory() -> None:
    """Return the free pages of Arrow's memory pool and of glibc's heap (where there is one) to the system."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
