"""The local engine: one process pool on this machine, shared by conversion and the stages.

With one worker everything runs in the calling process, lazily, in order. With more, a pool of
spawned processes (not forked: forked workers deadlock once the parent has used polars, MEASURED.md)
is started on first use and kept for the whole build. A function given to `map` is pickled once to a
file that each worker loads the first time it sees it, so a large stage (a dedup resolution, an eval
index) crosses the process boundary once per worker, not once per batch. At most `2 × workers`
items are in flight, so a map over a task's batches holds a bounded number of batches.
"""

from __future__ import annotations

import itertools
import multiprocessing
import pickle
import shutil
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from etl.engines.base import Engine

R = TypeVar("R")

_loaded: dict[str, Callable[[Any], Any]] = {}   # per worker process: the function of the current map


def _call_shipped(path: str, item: Any) -> Any:
    fn = _loaded.get(path)
    if fn is None:
        _loaded.clear()                          # one map at a time: drop the previous map's function
        with open(path, "rb") as handle:
            fn = _loaded[path] = pickle.load(handle)
    return fn(item)


def _call_unit(fn: Callable[..., Any], unit: tuple[Any, ...]) -> Any:
    return fn(*unit)


class LocalEngine(Engine):
    name = "local"

    def __init__(self, workers: int = 1) -> None:
        super().__init__(workers)
        self._pool: ProcessPoolExecutor | None = None
        self._folder: Path | None = None
        self._maps = itertools.count()

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._folder = Path(tempfile.mkdtemp(prefix="medcorpus-engine-"))
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
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
        assert self._folder is not None
        path = self._folder / f"map-{next(self._maps):05d}.pickle"
        with open(path, "wb") as handle:
            pickle.dump(fn, handle, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            futures = self._ordered(lambda item: pool.submit(_call_shipped, str(path), item), items)
            try:
                for future in futures:
                    yield future.result()
            finally:
                futures.close()
        finally:
            path.unlink(missing_ok=True)

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
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

