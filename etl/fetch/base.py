"""The fetch interface: bring a source's files to a local folder and say exactly which files they are.

Every host implements `Fetcher.fetch`. The build only ever sees a `FetchedSource`: a folder and the
ordered list of files in it, with their checksums; it never talks to the network itself.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from etl.catalog import Source
from etl.read.base import SourceFile


class FetchError(Exception):
    """A source that could not be fetched. The message says what to do (token, terms, --mirror...)."""

    def __init__(self, source_id: str, message: str) -> None:
        super().__init__(f"{source_id}: {message}")
        self.source_id = source_id
        self.message = message

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # rebuilt from its own arguments in a parent process
        return type(self), (self.source_id, self.message)


@dataclass(frozen=True)
class FetchedFile:
    relpath: str
    path: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class FetchedSource:
    source_id: str
    root: Path
    revision: str | None
    files: tuple[FetchedFile, ...] = field(default_factory=tuple)

    def source_files(self) -> list[SourceFile]:
        return [SourceFile(f.path, f.relpath) for f in self.files]


class Fetcher(Protocol):
    def fetch(self, source: Source, *, force: bool = False) -> FetchedSource: ...


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def local_patterns(source: Source) -> list[str]:
    """The file names or globs a fetch of `source` leaves in its folder (the layout of a mirror)."""
    if source.files:
        return list(source.files)
    if source.host == "gdrive" and source.filename:
        return [source.filename]
    if source.url:
        return [source.options.get("filename") or posixpath.basename(urlparse(source.url).path) or "index.html"]
    if source.urls:
        return ["pages/*.html"]
    return ["*"]


_GLOB = re.compile(r"[*?\[]")


def _checked(root: Path, base: Path, path: Path, literal: bool, source_id: str) -> bool:
    """Whether `path` (found under `root`, whose resolved form is `base`) is a file to read: True for a regular
    file inside the source folder, False for a folder matched by a glob; anything else is a `FetchError`
    naming the file and the reason."""
    rel = path.relative_to(root).as_posix()
    real = path.resolve()
    if not real.is_relative_to(base):
        raise FetchError(source_id, f"{rel}: outside_source_folder: a symbolic link to {'a folder' if real.is_dir() else 'a file'} "
                                    f"outside the source folder {root.name}/; refusing to read it")
    try:
        mode = real.stat().st_mode
    except OSError as exc:
        raise FetchError(source_id, f"{rel}: unreadable_file: {exc.strerror or exc} (a broken symbolic link?)") from None
    if stat.S_ISDIR(mode):
        if literal:
            raise FetchError(source_id, f"{rel}: not_a_file: a folder where the catalogue names a file")
        return False
    if not stat.S_ISREG(mode):
        raise FetchError(source_id, f"{rel}: not_a_file: a FIFO, socket or device, not a regular file; "
                                    f"refusing to read it")
    return True


def expand(root: Path, patterns: list[str], source_id: str) -> list[Path]:
    """Expand globs under `root` in catalogue order (sorted within a glob). A pattern matching nothing
    is an error that names it, so a missing file never passes silently. Every match must be a regular file
    that resolves inside `root` (a symbolic link out of the folder, a FIFO or a device is an error)."""
    base = root.resolve()
    found: list[Path] = []
    seen: set[Path] = set()
    for pattern in patterns:
        literal = not _GLOB.search(pattern)
        matches = sorted(p for p in root.glob(pattern) if not p.name.startswith(".medcorpus")
                         and _checked(root, base, p, literal, source_id))
        if not matches:
            raise FetchError(source_id, f"no file matches {pattern!r} in {root.name}/")
        for match in matches:
            if match not in seen:
                seen.add(match)
                found.append(match)
    return found


def verify_declared(source: Source, files: list[FetchedFile]) -> None:
    """Check the catalogue's optional `sha256:` pins."""
    by_name = {f.relpath: f for f in files}
    for name, expected in source.sha256.items():
        got = by_name.get(name)
        if got is None:
            raise FetchError(source.id, f"sha256 is pinned for {name!r} but no such file was fetched")
        if got.sha256 != expected.lower():
            raise FetchError(source.id, f"checksum mismatch for {name}: expected sha256 {expected}, got {got.sha256}")


def fetch_folder(source: Source, folder: Path) -> FetchedSource:
    """A source whose files already sit in `folder` (a mirror, the package's own data): list and hash
    them in catalogue order and check the catalogue's sha256 pins."""
    files = [FetchedFile(p.relative_to(folder).as_posix(), p.resolve(), p.stat().st_size, sha256_file(p))
             for p in expand(folder, local_patterns(source), source.id)]
    verify_declared(source, files)
    return FetchedSource(source.id, folder, source.revision, tuple(files))
