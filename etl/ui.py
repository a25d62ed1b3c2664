"""Progress and messages: a rich display on a terminal, plain log lines otherwise (CI, pipes)."""

from __future__ import annotations

import logging
import sys
from contextlib import AbstractContextManager
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

log = logging.getLogger("medcorpus")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(levelname)s %(message)s", stream=sys.stderr)


class Reporter(AbstractContextManager["Reporter"]):
    """One progress line per phase (fetch, convert, each task's stages, write)."""

    def __init__(self, interactive: bool | None = None) -> None:
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self.console = Console(stderr=True)
        self._progress: Progress | None = None
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> Reporter:
        if self.interactive:
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=self.console, transient=False)
            self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()

    def phase(self, name: str, total: int | None) -> None:
        if self._progress is not None:
            self._tasks[name] = self._progress.add_task(name, total=total)
        else:
            log.info("%s%s", name, f" ({total})" if total else "")

    def advance(self, name: str, detail: str = "") -> None:
        if self._progress is not None and name in self._tasks:
            self._progress.advance(self._tasks[name])
        elif detail:
            log.info("%s: %s", name, detail)

    def info(self, message: str) -> None:
        if self._progress is not None:
            self._progress.console.print(message, markup=False, highlight=False)
        else:
            log.info("%s", message)

    def warn(self, message: str) -> None:
        if self._progress is not None:
            self._progress.console.print(f"warning: {message}", style="yellow", markup=False, highlight=False)
        else:
            log.warning("%s", message)
