"""The executor seam: how a build's work is spread over workers, behind one interface.

The build never starts processes itself. It hands the engine three kinds of work:

- **conversion units** (`map_units`): one call of `fn(*unit)` per source (or source chunk); each
  result comes back in unit order as a thunk that returns the value or raises that unit's error, so
  one broken source is reported while the others go on;
- **batch maps** (`map`): a module-level function (or a `functools.partial` of one) over a stream of Arrow record batches, results in
  input order. The stage executor (etl/executor.py) uses it for a segment of apply-only stages over
  a task's batches, and stages use it inside their global pass through `StageContext.map_rows` (key
  and band hashes, eval n-gram probes, picking rows) and `StageContext.map` — so every stage uses
  every worker. Where the rows are in Parquet files, the items are pieces of those files (an aligned
  run of row groups, by absolute path) that the worker reads itself;
- **global passes** (`prepare`): `stage.prepare(scan, ctx)`, by default run in the driver; the pass
  itself is written as `ctx.map_rows` and `ctx.map` calls, which is what an engine distributes.

What an engine must implement: `map` and `map_units` (and `close`). Order is part of the contract:
results come back in input order whatever the worker count or timing, which is what keeps the output
byte-identical across workers and engines. A function given to `map` may be large (a dedup
resolution, an eval index): an engine should ship it to each worker once per call (Ray through its
object store; the local engine with the first items, until every worker has it). Stages never learn which engine
runs them: Arrow batch in, Arrow batch out, plus `prepare`.

A new engine is one module in etl/engines/ with a subclass of `Engine` and an entry in `make_engine`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

R = TypeVar("R")


class Engine(ABC):
    """Base class of the build's engines (local process pool, Ray)."""

    name = "engine"

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, workers)

    @abstractmethod
    def map(self, fn: Callable[[Any], R], items: Iterable[Any]) -> Iterator[R]:
        """`fn(item)` for every item, yielded in input order; the first error is raised. `fn` is
        shipped to each worker once; items are consumed lazily with bounded read-ahead."""

    @abstractmethod
    def map_units(self, fn: Callable[..., R], units: Sequence[tuple[Any, ...]]) -> Iterator[Callable[[], R]]:
        """`fn(*unit)` for every unit; yields, in unit order, a thunk returning the unit's result or
        raising the unit's own error."""

    @abstractmethod
    def close(self) -> None:
        """Release the workers (the build calls it once, at the end)."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


ENGINES = ("local", "ray")


def make_engine(name: str = "local", workers: int = 1, address: str | None = None) -> Engine:
    """The engine a build runs on (`medcorpus build --engine local|ray [--ray-address ADDR]`)."""
    if name == "local":
        if address:
            raise ValueError("--ray-address needs --engine ray")
        from etl.engines.local import LocalEngine

        return LocalEngine(workers)
    if name == "ray":
        try:
            from etl.engines.ray import RayEngine  # type: ignore[import-not-found]
        except ImportError as exc:
            raise RuntimeError(f"the Ray engine is not available ({exc}); it needs the optional extra "
                               "`pip install 'medcorpus[ray]'`") from exc
        return RayEngine(workers, address)  # type: ignore[no-any-return]
    raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
