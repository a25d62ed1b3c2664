"""The download cache: one folder per source and revision, with a fetch record per file.

Layout under the cache root (`~/.cache/medcorpus`, `$MEDCORPUS_CACHE`, or an explicit directory):

    <source_id>/<revision>/<relpath>          the files, as the catalogue names them
    <source_id>/<revision>/.medcorpus-record.json   per file: url, revision, size, sha256, time
    <source_id>/.medcorpus-refs.json          requested revision (a branch) -> resolved commit
    <source_id>/.partial/                     downloads in progress (resumable)

A file lands in `.partial/` and is renamed into place only once complete and verified, so a reader never
sees half a file. The record's `time` lives only here; build outputs never carry it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from etl.fetch.base import FetchedFile, FetchError, sha256_file

RECORD = ".medcorpus-record.json"
REFS = ".medcorpus-refs.json"
PARTIAL = ".partial"
UNVERSIONED = "unversioned"
_LOCK = threading.Lock()


def default_cache_dir(explicit: Path | None = None) -> Path:
    """An explicit directory, else `$MEDCORPUS_CACHE`, else `~/.cache/medcorpus`."""
    if explicit is not None:
        return Path(explicit).expanduser()
    env = os.environ.get("MEDCORPUS_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "medcorpus"


def revision_key(revision: str | None) -> str:
    """The folder name of a revision (a commit, a tag, or `unversioned` for hosts without revisions)."""
    if not revision:
        return UNVERSIONED
    return re.sub(r"[^A-Za-z0-9._-]", "_", revision)


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".medcorpus-", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True, ensure_ascii=False)
        handle.write("\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def check_relpath(source_id: str, relpath: str) -> str:
    """Refuse a remote file name that would land outside the source folder."""
    parts = relpath.replace("\\", "/").split("/")
    if not relpath or relpath.startswith("/") or ".." in parts or ":" in parts[0]:
        raise FetchError(source_id, f"refusing unsafe file name {relpath!r} (outside the source folder)")
    return relpath


@dataclass(frozen=True)
class FileRecord:
    relpath: str
    url: str
    revision: str | None
    size: int
    sha256: str
    time: str
    mtime_ns: int


class SourceCache:
    """The cache folder of one source at one revision."""

    def __init__(self, root: Path, source_id: str, revision: str | None) -> None:
        self.source_id = source_id
        self.revision = revision
        self.base = Path(root) / source_id
        self.folder = self.base / revision_key(revision)
        self.partial = self.base / PARTIAL

    def inside(self, path: Path) -> bool:
        """Whether `path` is no symbolic link and resolves inside the source's cache folder."""
        return not path.is_symlink() and path.resolve().is_relative_to(self.folder.resolve())

    # ---- records -------------------------------------------------------------------------------------
    def records(self) -> dict[str, FileRecord]:
        files = _read_json(self.folder / RECORD).get("files", {})
        out = {}
        for relpath, item in files.items():
            try:
                out[relpath] = FileRecord(relpath, item["url"], item.get("revision"), int(item["size"]),
                                          item["sha256"], item["time"], int(item.get("mtime_ns", 0)))
            except (KeyError, TypeError, ValueError):
                continue
        return out

    def _save_record(self, record: FileRecord) -> None:
        with _LOCK:
            doc = _read_json(self.folder / RECORD)
            files = doc.setdefault("files", {})
            files[record.relpath] = {"url": record.url, "revision": record.revision, "size": record.size,
                                     "sha256": record.sha256, "time": record.time, "mtime_ns": record.mtime_ns}
            doc["source"] = self.source_id
            doc["revision"] = self.revision
            _write_json(self.folder / RECORD, doc)

    def cached(self, relpath: str, expected_sha256: str | None = None) -> FetchedFile | None:
        """The cached file if it is present, matches its record, and (when given) has `expected_sha256`.

        Size and modification time unchanged since the record was written mean the recorded checksum holds;
        otherwise the file is hashed again."""
        record = self.records().get(relpath)
        path = self.folder / relpath
        if record is None or not self.inside(path) or not path.is_file():
            return None
        stat = path.stat()
        if stat.st_size != record.size:
            return None
        digest = record.sha256 if stat.st_mtime_ns == record.mtime_ns else sha256_file(path)
        if digest != record.sha256:
            return None
        if expected_sha256 and digest != expected_sha256.lower():
            return None
        return FetchedFile(relpath, path, record.size, digest)

    def complete(self, patterns: list[str]) -> list[str] | None:
        """The files a finished fetch with these `patterns` produced, or None if none finished."""
        done = _read_json(self.folder / RECORD).get("complete", {})
        names = done.get(json.dumps(patterns, ensure_ascii=False))
        return list(names) if isinstance(names, list) else None

    def mark_complete(self, patterns: list[str], relpaths: list[str]) -> None:
        with _LOCK:
            doc = _read_json(self.folder / RECORD)
            doc.setdefault("complete", {})[json.dumps(patterns, ensure_ascii=False)] = relpaths
            _write_json(self.folder / RECORD, doc)

    # ---- downloads -----------------------------------------------------------------------------------
    def partial_path(self, relpath: str) -> Path:
        """Where the download of `relpath` accumulates (stable, so an interrupted download resumes)."""
        name = hashlib.sha1(f"{revision_key(self.revision)}/{relpath}".encode()).hexdigest()[:16]
        return self.partial / f"{name}.part"

    def commit(self, relpath: str, tmp: Path, url: str, *, expected_sha256: str | None = None,
               expected_size: int | None = None) -> FetchedFile:
        """Verify a finished download and move it into place, then record it.

        A mismatch deletes the download (it cannot be resumed into anything useful) and raises."""
        check_relpath(self.source_id, relpath)
        size = tmp.stat().st_size
        if expected_size is not None and size != expected_size:
            tmp.unlink(missing_ok=True)
            raise FetchError(self.source_id, f"size mismatch for {relpath}: expected {expected_size} bytes, "
                                             f"got {size}")
        digest = sha256_file(tmp)
        if expected_sha256 and digest != expected_sha256.lower():
            tmp.unlink(missing_ok=True)
            raise FetchError(self.source_id, f"checksum mismatch for {relpath}: expected sha256 "
                                             f"{expected_sha256.lower()}, got {digest}")
        final = self.folder / relpath
        final.parent.mkdir(parents=True, exist_ok=True)
        if not self.inside(final.parent):
            tmp.unlink(missing_ok=True)
            raise FetchError(self.source_id, f"{relpath}: outside_source_folder: a folder of the cache is a symbolic "
                                             f"link out of {self.folder}; refusing to write through it")
        os.replace(tmp, final)
        stat = final.stat()
        now = datetime.now(UTC).replace(microsecond=0).isoformat()
        self._save_record(FileRecord(relpath, url, self.revision, size, digest, now, stat.st_mtime_ns))
        return FetchedFile(relpath, final, size, digest)

    def adopt(self, relpath: str, url: str) -> FetchedFile:
        """Record a file that was placed in the folder by hand (Tianchi's manual step)."""
        path = self.folder / relpath
        stat = path.stat()
        digest = sha256_file(path)
        now = datetime.now(UTC).replace(microsecond=0).isoformat()
        self._save_record(FileRecord(relpath, url, self.revision, stat.st_size, digest, now, stat.st_mtime_ns))
        return FetchedFile(relpath, path, stat.st_size, digest)

    # ---- refs ----------------------------------------------------------------------------------------
    def remember_ref(self, requested: str, resolved: str) -> None:
        with _LOCK:
            refs = _read_json(self.base / REFS)
            if refs.get(requested) != resolved:
                refs[requested] = resolved
                _write_json(self.base / REFS, refs)


def known_ref(root: Path, source_id: str, requested: str) -> str | None:
    """The commit a branch or tag last resolved to, from the cache's refs file."""
    value = _read_json(Path(root) / source_id / REFS).get(requested)
    return value if isinstance(value, str) else None


def cached_size(root: Path, source_id: str, revision: str | None) -> int:
    """Bytes of recorded files for one source and revision (0 when nothing is cached)."""
    cache = SourceCache(root, source_id, revision)
    return sum(r.size for r in cache.records().values() if (cache.folder / r.relpath).is_file())
