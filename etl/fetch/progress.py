"""Download progress: a rich progress bar (bytes and rate) on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

log = logging.getLogger("etl.fetch")


class FileProgress(Protocol):
    def __call__(self, n: int) -> None: ...


class Reporter(Protocol):
    """Receives one `file` context per download; the yielded callable is told every chunk's size."""

    def file(self, source_id: str, relpath: str, total: int | None) -> AbstractContextManager[FileProgress]: ...


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


class LogReporter:
    """One log line per finished file: size, time and rate."""

    @contextmanager
    def file(self, source_id: str, relpath: str, total: int | None) -> Iterator[FileProgress]:
        done = 0
        start = time.monotonic()

        def advance(n: int) -> None:
            nonlocal done
            done += n

        log.info("%s: downloading %s%s", source_id, relpath, f" ({_human(total)})" if total else "")
        yield advance
        took = max(time.monotonic() - start, 1e-6)
        log.info("%s: %s done, %s in %.1fs (%s/s)", source_id, relpath, _human(done), took, _human(done / took))


class RichReporter:
    """A live rich progress display shared by all concurrent downloads."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                  TransferSpeedColumn(), TimeRemainingColumn(), transient=False)
        self._lock = threading.Lock()

    def __enter__(self) -> RichReporter:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    @contextmanager
    def file(self, source_id: str, relpath: str, total: int | None) -> Iterator[FileProgress]:
        with self._lock:
            task = self._progress.add_task(f"{source_id}: {relpath}", total=total)

        def advance(n: int) -> None:
            self._progress.advance(task, n)

        try:
            yield advance
        finally:
            with self._lock:
                done = self._progress.tasks[self._progress.task_ids.index(task)].completed
                self._progress.update(task, total=done, completed=done)


@contextmanager
def reporter_for_terminal() -> Iterator[Reporter]:
    """A `RichReporter` when stderr is a terminal, else a `LogReporter`."""
    if sys.stderr.isatty():
        with RichReporter() as rich:
            yield rich
    else:
        yield LogReporter()
