"""What a reader is: a registered generator from a source's files to raw records.

Readers sniff content, not extensions, and stream: they never hold a whole file's records in memory.
A record that cannot be parsed becomes a `ReadError` (written to rejects, the build goes on); a file
that cannot be read at all raises `SourceFileError` (the source fails and is reported, others go on).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RAW_LIMIT = 4096  # characters of the original text kept with a reject


@dataclass(frozen=True)
class SourceFile:
    path: Path     # absolute path on disk
    relpath: str   # path relative to the source folder, as named in the catalogue (posix separators)


@dataclass(frozen=True)
class RawRecord:
    file: str          # relpath of the file (for archives: `archive.zip!member.csv`)
    location: str      # human-readable position: `line 12`, `element 3`, `row 7`, `key 21645374`
    value: Any         # the parsed record (dict, list, str, ...)


@dataclass(frozen=True)
class ReadError:
    file: str
    location: str
    reason: str        # short code: bad_json, bad_encoding, bad_csv_row, ...
    message: str
    raw: str           # original text, cut to RAW_LIMIT characters


class SourceFileError(Exception):
    """A file that cannot be read at all (not found, truncated archive, HTML page instead of data...)."""

    def __init__(self, file: str, reason: str, message: str) -> None:
        super().__init__(f"{file}: {reason}: {message}")
        self.file = file
        self.reason = reason
        self.message = message

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:  # rebuilt from its own arguments in a parent process
        return type(self), (self.file, self.reason, self.message)


ReadItem = RawRecord | ReadError
ReaderFn = Callable[[list[SourceFile], dict[str, Any]], Iterator[ReadItem]]

_READERS: dict[str, ReaderFn] = {}


def reader(name: str) -> Callable[[ReaderFn], ReaderFn]:
    """Register a reader under `name`. It receives all of a source's files (in catalogue order) and
    the source's `options`, and yields RawRecord / ReadError items in a deterministic order."""

    def register(fn: ReaderFn) -> ReaderFn:
        if name in _READERS:
            raise RuntimeError(f"reader {name!r} registered twice")
        _READERS[name] = fn
        return fn

    return register


def get_reader(name: str) -> ReaderFn:
    from etl import convert, read  # noqa: F401  (converter modules may register their own readers)

    if name not in _READERS:
        raise KeyError(f"unknown reader {name!r} (known: {', '.join(sorted(_READERS))})")
    return _READERS[name]


def reader_names() -> list[str]:
    from etl import convert, read  # noqa: F401

    return sorted(_READERS)


def cut(text: str | bytes) -> str:
    """Original text for a reject row, at most RAW_LIMIT characters."""
    if isinstance(text, bytes):
        text = text[: RAW_LIMIT * 4].decode("utf-8", errors="replace")
    return text[:RAW_LIMIT]
