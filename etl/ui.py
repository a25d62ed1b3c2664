"""Progress and messages: a rich display on a terminal, plain log lines otherwise (CI, pipes)."""

from __future__ import annotations

import logging
import sys
from contextlib import AbstractContextManager
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from etl.secrets import redact

log = logging.getLogger("medcorpus")


class RedactSecrets(logging.Filter):
    """Replace the values of token variables in every record, whichever library logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def setup_logging(verbose: bool = False) -> None:
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        root.addHandler(handler)
    # on every handler, not the logger: a logger's filters do not see records from other libraries' loggers
    for handler in root.handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())
    # -v is for MedCorpus' own debugging: HTTP libraries would print raw headers at DEBUG.
    for name in ("httpcore", "httpx", "urllib3", "huggingface_hub", "filelock", "fsspec"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)


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
