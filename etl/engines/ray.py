"""The Ray engine (`--engine ray`): the build's work as Ray tasks, on a local Ray or an existing cluster.

Why Ray tasks and not Ray Data's `map_batches`: the seam hands the engine a lazy, driver-side
iterator of arbitrary items (a task's record batches with their `_row` ordinals, or the pieces of a
stage's global pass), and wants the results back in input order with bounded read-ahead. A Ray
Dataset would first need the whole input as a dataset (`from_arrow` over every batch holds the task in
the driver) and its ordering is a dataset option, not a per-call guarantee. Ray tasks with a window of
at most `2 × workers` in flight, collected oldest first, give exactly the local engine's contract:
input order, lazy input, bounded memory in the driver and in the object store.

- `map(fn, items)`: `fn` is put in the object store once per call (`ray.put`); each task gets the
  reference (wrapped, so Ray does not resolve it per task) and a worker process loads it on its first
  item of that call, so a large function (a dedup resolution, an eval index) crosses to each worker
  once, not once per batch.
- `map_units(fn, units)`: one Ray task per conversion unit, all submitted at once; each unit's result
  comes back in unit order as a thunk that returns the value or raises the unit's own exception, of
  its own type, with its own attributes (an exception that cannot be rebuilt from its arguments alone,
  e.g. one whose `__init__` takes other arguments, is rebuilt from its class, arguments and attributes).
- Ray itself: with no address, a local Ray with `num_cpus=workers`, no dashboard and quiet logs,
  stopped by `close`; with an address (`ray://head:10001`, `auto`), `ray.init(address=...)`, and
  `close` only disconnects. A Ray already initialised in this process (e.g. by a test fixture or a
  notebook) is used as is and left running.

Workers import the build's code from the installed `medcorpus` package: on a cluster it must be
installed on every node (README "Running on a Ray cluster").
"""

from __future__ import annotations

import copy
import logging
import os
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import ray

from etl.engines.base import Engine

R = TypeVar("R")

# Per Ray worker process: the functions of the latest maps, oldest first. Two maps can be under way at
# once (a pass whose items come from another map over the task's rows: near dedup's text blocks).
_loaded: dict[str, Callable[[Any], Any]] = {}
_KEPT_FUNCTIONS = 2


class _Raised:
    """An exception raised on a worker, carried back as a value so that it keeps its own type."""

    def __init__(self, exc: BaseException) -> None:
        exc.add_note(f"(raised on a Ray worker)\n{''.join(traceback.format_exception(exc)).rstrip()}")
        self.exc: BaseException | None = exc
        self.parts: tuple[type[BaseException], tuple[Any, ...], dict[str, Any]] | None = None
        try:
            copy.copy(exc)          # rebuilt the way Ray will rebuild it on the driver: cls(*args) + state
        except Exception:  # noqa: BLE001 - e.g. an __init__ with other arguments: ship class, args, attributes
            self.exc, self.parts = None, (type(exc), exc.args, dict(vars(exc)))

    def rebuild(self) -> BaseException:
        if self.parts is None:
            assert self.exc is not None
            return self.exc
        cls, args, attributes = self.parts
        exc = cls.__new__(cls, *args)
        vars(exc).update(attributes)
        return exc


def _call_shipped(shipped: list[ray.ObjectRef], item: Any) -> Any:
    ref = shipped[0]
    fn = _loaded.get(ref.hex())
    if fn is None:
        while len(_loaded) >= _KEPT_FUNCTIONS:   # drop the oldest map's function
            del _loaded[next(iter(_loaded))]
        fn = _loaded[ref.hex()] = ray.get(ref)
    try:
        return fn(item)
    except Exception as exc:  # noqa: BLE001 - carried back to the driver, which raises it
        return _Raised(exc)


def _call_unit(fn: Callable[..., Any], unit: tuple[Any, ...]) -> Any:
    try:
        return fn(*unit)
    except Exception as exc:  # noqa: BLE001 - the unit's own error, raised by its thunk
        return _Raised(exc)


_remote_shipped = ray.remote(num_cpus=1)(_call_shipped)
_remote_unit = ray.remote(num_cpus=1)(_call_unit)


def _value(ref: ray.ObjectRef) -> Any:
    result = ray.get(ref)
    if isinstance(result, _Raised):
        raise result.rebuild()
    return result


class RayEngine(Engine):
    name = "ray"

    def __init__(self, workers: int = 1, address: str | None = None) -> None:
        super().__init__(workers)
        self.address = address
        self._owned = False
        if not ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")   # no usage report to the internet
            if address:
                ray.init(address=address, logging_level=logging.WARNING)
            else:
                ray.init(num_cpus=self.workers, include_dashboard=False, logging_level=logging.WARNING)
            self._owned = True

    def map(self, fn: Callable[[Any], R], items: Iterable[Any]) -> Iterator[R]:
        shipped = [ray.put(fn)]
        pending: deque[ray.ObjectRef] = deque()
        try:
            for item in items:
                pending.append(_remote_shipped.remote(shipped, item))
                if len(pending) >= 2 * self.workers:
                    yield _value(pending.popleft())
            while pending:
                yield _value(pending.popleft())
        finally:
            for ref in pending:            # stopped early (an error, or the caller closed us)
                ray.cancel(ref)

    def map_units(self, fn: Callable[..., R], units: Sequence[tuple[Any, ...]]) -> Iterator[Callable[[], R]]:
        refs = [_remote_unit.remote(fn, unit) for unit in units]
        for ref in refs:
            yield lambda ref=ref: _value(ref)

    def close(self) -> None:
        if self._owned and ray.is_initialized():
            ray.shutdown()
        self._owned = False
