"""Helpers shared by the reader tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etl.read.base import RawRecord, ReadItem, SourceFile, get_reader


def run_reader(name: str, path: Path, relpath: str | None = None, **options: Any) -> list[ReadItem]:
    """Every item reader `name` yields for one file."""
    return list(get_reader(name)([SourceFile(path, relpath or path.name)], options))


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def summary(items: list[ReadItem]) -> list[tuple[str, Any]]:
    """(location, value) of records and (location, reason) of errors, in order."""
    return [(i.location, i.value if isinstance(i, RawRecord) else i.reason) for i in items]
