"""The local engine: one process pool on this machine, shared by conversion and the stages.

With one worker everything runs in the calling process, lazily, in order. With more, a pool of
spawned processes (not forked: forked workers deadlock once the parent has used polars, MEASURED.md)
is started on first use and kept for the whole build. At most `2 × workers` items are in flight, so a
map over a task's batches holds a bounded number of batches.

The function given to `map` can be large (a dedup resolution at 5M rows is ≈ 27 MiB) and crosses to
each worker about once per call, not once per item: an item carries it until every worker has said
(in its results) that it holds it; later items carry only the call's number. Sent with every item,
the bytes through the pipes grew with rows × batches, i.e. with the square of the corpus (27 MiB ×
430 batches ≈ 11 GiB in the SFT write of a 5M-record build).

Each worker ends itself when the build that started it is gone (killed with SIGKILL or SIGTERM, so
the pool never told it to stop): it would otherwise keep running, holding memory.
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

    @staticmethod
    def kind(fn: Callable[..., Any]) -> str:
        """The function's name and, for a `functools.partial`, the names of the functions it wraps and
        is given: a piece reader wrapping a segment's apply is another phase than one wrapping band hashes."""
        target = getattr(fn, "func", fn)
        inner = [_Phases.kind(arg) for arg in getattr(fn, "args", ()) if callable(arg)]
        return "/".join([f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', '')}", *inner])

    @classmethod
    def enter(cls, fn: Callable[..., Any]) -> None:
        kind = cls.kind(fn)
        if kind != cls.last:
            if cls.last is not None:
                release_memory()
            cls.last = kind


class _Loaded:
    """A worker's functions of the maps under way, by call number (usually one)."""

    functions: dict[int, Callable[[Any], Any]] = {}


def _call(call: int, live: tuple[int, ...], fn: Callable[[Any], Any] | None, item: Any) -> tuple[int, Any]:
    """`fn(item)` for map `call`, `fn` being None when this worker already holds it; `live` are the
    maps under way (the others' functions are dropped). Returns this worker's pid with the result."""
    loaded = _Loaded.functions
    for old in [number for number in loaded if number not in live]:
        del loaded[old]
    if fn is not None:
        loaded[call] = fn
    elif call not in loaded:
        raise RuntimeError(f"map {call}: its function was never sent to worker {os.getpid()}")
    fn = loaded[call]
    _Phases.enter(fn)
    return os.getpid(), fn(item)


def _call_unit(fn: Callable[..., Any], unit: tuple[Any, ...]) -> Any:
    _Phases.enter(fn)
    return fn(*unit)


class LocalEngine(Engine):
    name = "local"

    def __init__(self, workers: int = 1) -> None:
        super().__init__(workers)
        self._pool: ProcessPoolExecutor | None = None
        self._calls = 0
        self._live: set[int] = set()

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
        self._calls += 1
        call = self._calls
        self._live.add(call)
        holding: set[int] = set()   # pids of the workers that said they hold `fn`

        def submit(item: Any) -> Future[tuple[int, Any]]:
            shipped = None if len(holding) >= self.workers else fn
            return pool.submit(_call, call, tuple(sorted(self._live)), shipped, item)

        futures = self._ordered(submit, items)
        try:
            for future in futures:
                pid, result = future.result()
                holding.add(pid)
                yield result
        finally:
            futures.close()
            self._live.discard(call)

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

