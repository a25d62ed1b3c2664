"""The local engine: one process pool on this machine, shared by conversion and the stages.

With one worker everything runs in the calling process, lazily, in order. With more, a pool of
spawned processes (not forked: forked workers deadlock once the parent has used polars, MEASURED.md)
is started on first use and kept for the whole build. The function given to `map` travels with each
item through the pool's own serialisation (a dedup resolution or an eval index is a few NumPy arrays).
At most `2 × workers` items are in flight, so a map over a task's batches holds a bounded number of
batches. Each worker ends itself when the build that started it is gone (killed with SIGKILL or
SIGTERM, so the pool never told it to stop): it would otherwise keep running, holding memory.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

from etl.engines.base import Engine
from etl.memory import release_memory

R = TypeVar("R")
PARENT_POLL_SECONDS = 1.0


def _end_with_parent(parent: int) -> None:
    """Pool initializer: a daemon thread that ends this worker once `parent` is no longer its parent
    (a dead parent's children are re-parented to init or a subreaper)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


class _Phases:
    """A worker's view of the build's phases: the function it is given changes when a phase ends
    (conversion, a segment's apply, a pass's band hashes...). At each change the worker gives its
    freed pages back (etl/memory.py), as the driver does at phase ends; per item it would cost CPU
    for little (measured: 3% CPU for 3% of the peak)."""

    last: str | None = None

    @classmethod
    def enter(cls, fn: Callable[..., Any]) -> None:
        target = getattr(fn, "func", fn)  # a functools.partial: its function
        kind = f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', '')}"
        if kind != cls.last:
            if cls.last is not None:
                release_memory()
            cls.last = kind


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    _Phases.enter(fn)
    return fn(item)


def _call_unit(fn: Callable[..., Any], unit: tuple[Any, ...]) -> Any:
    _Phases.enter(fn)
    return fn(*unit)


class LocalEngine(Engine):
    name = "local"

    def __init__(self, workers: int = 1) -> None:
        super().__init__(workers)
        self._pool: ProcessPoolExecutor | None = None

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context,
                                             initializer=_end_with_parent, initargs=(os.getpid(),))
        return self._pool

    def _ordered(self, submit: Callable[[Any], Future[Any]], items: Iterable[Any]) -> Iterator[Future[Any]]:
        pending: deque[Future[Any]] = deque()
        for item in items:
            pending.append(submit(item))
            if len(pending) >= 2 * self.workers:
                yield pending.popleft()
        while pending:
            yield pending.popleft()

    def map(self, fn: Callable[[Any], R], items: Iterable[Any]) -> Iterator[R]:
        if self.workers == 1:
            yield from (fn(item) for item in items)
            return
        pool = self._ensure_pool()
        futures = self._ordered(lambda item: pool.submit(_call, fn, item), items)
        try:
            for future in futures:
                yield future.result()
        finally:
            futures.close()

    def map_units(self, fn: Callable[..., R], units: Sequence[tuple[Any, ...]]) -> Iterator[Callable[[], R]]:
        if self.workers == 1 or len(units) <= 1:
            for unit in units:
                yield lambda unit=unit: fn(*unit)
            return
        pool = self._ensure_pool()
        futures = [pool.submit(_call_unit, fn, unit) for unit in units]
        for future in futures:
            yield future.result

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

