"""`sources.lock`: what each source resolved to, so every build reads exactly the same bytes.

The file sits next to the catalogue and is deterministic JSON (sorted keys, no timestamps), so it diffs
cleanly and can be committed. Per source: host, the requested revision, the commit it resolved to, and per
file its size and sha256. `medcorpus lock` writes it; every fetch is verified against it.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from etl.fetch.base import FetchedSource, FetchError

LOCK_NAME = "sources.lock"
LOCK_VERSION = 1


class LockMismatch(FetchError):
    """A fetched file that differs from `sources.lock`."""


def default_lock_path(catalog_path: str | Path) -> Path:
    """`sources.lock` in the catalogue's folder."""
    return Path(catalog_path).with_name(LOCK_NAME)


@dataclass(frozen=True)
class LockedFile:
    size: int
    sha256: str


@dataclass(frozen=True)
class LockEntry:
    host: str
    revision: str | None            # as written in the catalogue (a commit, tag or branch)
    resolved: str | None            # the commit it resolved to (None for hosts without revisions)
    files: dict[str, LockedFile] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"host": self.host, "revision": self.revision, "resolved": self.resolved,
                "files": {name: {"size": f.size, "sha256": f.sha256} for name, f in sorted(self.files.items())}}

    @classmethod
    def from_json(cls, data: dict) -> LockEntry:
        files = {name: LockedFile(int(item["size"]), str(item["sha256"]).lower())
                 for name, item in (data.get("files") or {}).items()}
        return cls(str(data["host"]), data.get("revision"), data.get("resolved"), files)


class LockFile:
    """The parsed lock file; `save` writes it back deterministically."""

    def __init__(self, path: Path, entries: dict[str, LockEntry] | None = None) -> None:
        self.path = Path(path)
        self.entries: dict[str, LockEntry] = dict(entries or {})

    @classmethod
    def load(cls, path: Path) -> LockFile:
        """Read `path`; a missing file is an empty lock, a damaged one an error that names it."""
        path = Path(path)
        if not path.exists():
            return cls(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            entries = {sid: LockEntry.from_json(item) for sid, item in doc.get("sources", {}).items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}: not a valid lock file ({exc}); delete it and run `medcorpus lock`") from None
        return cls(path, entries)

    def get(self, source_id: str) -> LockEntry | None:
        return self.entries.get(source_id)

    def record(self, host: str, requested: str | None, fetched: FetchedSource) -> LockEntry:
        """Replace the entry of `fetched.source_id` with what was just fetched."""
        entry = LockEntry(host, requested, fetched.revision,
                          {f.relpath: LockedFile(f.size, f.sha256) for f in fetched.files})
        self.entries[fetched.source_id] = entry
        return entry

    def dumps(self) -> str:
        doc = {"version": LOCK_VERSION,
               "sources": {sid: self.entries[sid].to_json() for sid in sorted(self.entries)}}
        return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".sources.lock-", dir=self.path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(self.dumps())
        os.replace(tmp, self.path)


def verify_against_lock(fetched: FetchedSource, entry: LockEntry) -> None:
    """Refuse a fetch that differs from the lock: a changed, missing or unexpected file, or another commit."""
    sid = fetched.source_id
    if entry.resolved and fetched.revision and entry.resolved != fetched.revision:
        raise LockMismatch(sid, f"revision differs from sources.lock: expected {entry.resolved}, "
                                f"got {fetched.revision} (run `medcorpus lock {sid}` to accept the new one)")
    got = {f.relpath: f for f in fetched.files}
    for name, locked in sorted(entry.files.items()):
        actual = got.get(name)
        if actual is None:
            raise LockMismatch(sid, f"file {name} is in sources.lock but was not fetched")
        if actual.sha256 != locked.sha256 or actual.size != locked.size:
            raise LockMismatch(sid, f"file {name} differs from sources.lock: expected sha256 {locked.sha256} "
                                    f"({locked.size} bytes), actual sha256 {actual.sha256} ({actual.size} bytes)")
    extra = sorted(set(got) - set(entry.files))
    if extra:
        raise LockMismatch(sid, f"file {extra[0]} was fetched but is not in sources.lock "
                                f"(run `medcorpus lock {sid}` to record it)")
