"""Progress and messages: a rich display on a terminal, plain log lines otherwise (CI, pipes)."""

from __future__ import annotations

import logging
import sys
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from etl.secrets import redact

log = logging.getLogger("medcorpus")

# Libraries whose DEBUG output is noise even with -v: raw HTTP headers, font lookups, PNG chunks.
ETA_AFTER_SECONDS = 3.0  # work shorter than this needs no estimate
QUIET_LOGGERS = ("httpcore", "httpx", "urllib3", "huggingface_hub", "filelock", "fsspec", "matplotlib", "PIL")


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
    # -v is for MedCorpus' own debugging
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def human_seconds(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class Phase:
    """One unit of work being counted: items (sources, stages) or bytes, plus the items done."""

    total: float | None
    unit: str = ""                 # "" counts items; "bytes" counts bytes (then `items` counts items too)
    items: int | None = None
    done: float = 0
    items_done: int = 0
    started: float = field(default_factory=time.monotonic)

    def eta(self) -> float | None:
        """Seconds left at the rate so far; None before any progress or when nothing is left."""
        elapsed = time.monotonic() - self.started
        if not self.total or self.done <= 0 or self.done >= self.total or elapsed < ETA_AFTER_SECONDS:
            return None
        return elapsed * (self.total - self.done) / self.done

    def describe(self) -> str:
        if self.unit == "bytes":
            text = f"{self.items_done}/{self.items} sources, {human_bytes(self.done)} of {human_bytes(self.total or 0)}"
        else:
            text = f"{self.items_done}/{self.total:.0f}" if self.total else f"{self.items_done}"
        eta = self.eta()
        return text + (f", ETA {human_seconds(eta)}" if eta is not None else "")


class Reporter(AbstractContextManager["Reporter"]):
    """One progress line per phase (convert, each task's stages). On a terminal a bar with elapsed time and
    ETA; otherwise one log line per step, with the same counts and ETA."""

    def __init__(self, interactive: bool | None = None) -> None:
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self.console = Console(stderr=True)
        self._progress: Progress | None = None
        self._tasks: dict[str, int] = {}
        self.phases: dict[str, Phase] = {}

    def __enter__(self) -> Reporter:
        if self.interactive:
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[counts]}"),
                                      TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False)
            self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()

    def phase(self, name: str, total: float | None, unit: str = "", items: int | None = None) -> None:
        """Start counting `name`: `total` items, or `total` bytes over `items` items when unit is "bytes"."""
        phase = self.phases[name] = Phase(total, unit, items)
        if self._progress is not None:
            self._tasks[name] = self._progress.add_task(name, total=total or None, counts=phase.describe())
        else:
            log.info("%s (%s)", name, phase.describe())

    def advance(self, name: str, detail: str = "", amount: float = 1) -> None:
        """One item of `name` done; `amount` is its size in the phase's unit (bytes, or 1 item)."""
        phase = self.phases.get(name)
        if phase is None:
            return
        phase.items_done += 1
        phase.done += amount if phase.unit == "bytes" else 1
        if self._progress is not None:
            self._progress.update(self._tasks[name], completed=phase.done, counts=phase.describe())
            if detail:
                self._progress.console.print(f"{name}: {detail}", markup=False, highlight=False, style="dim")
        else:
            log.info("%s: %s (%s)", name, detail or "done", phase.describe())

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
