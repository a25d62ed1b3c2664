"""What every network host shares: pick the revision, use the cache, download what is missing, verify.

A host subclass says how to resolve a branch to a commit (`resolve`), which remote files the catalogue's
`files` select (`plan`) and how to bring one of them to a temporary path (`download`). `HostFetcher.fetch`
does the rest: a source whose revision is known offline and whose files are all in the cache with their
recorded (and locked) checksums makes no request at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from etl.catalog import Source
from etl.fetch.base import FetchedFile, FetchedSource, FetchError, local_patterns, verify_declared
from etl.fetch.cache import SourceCache
from etl.fetch.lock import LockEntry
from etl.fetch.net import RetryPolicy, record_url
from etl.fetch.progress import FileProgress, LogReporter, Reporter

COMMIT = re.compile(r"[0-9a-f]{40}")
SHORT_COMMIT = re.compile(r"[0-9a-f]{7,39}")
DEFAULT_REF = "HEAD"  # the refs key of a source without `revision` (the repo's default branch)


@dataclass(frozen=True)
class Planned:
    """One remote file to bring: where it goes, where it comes from, what it must be (when known)."""

    relpath: str
    url: str
    sha256: str | None = None
    size: int | None = None


@lru_cache(maxsize=256)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob as `Path.glob` reads it: `*`, `?` and `[..]` stay within one path part, `**/` spans parts."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (end := pattern.find("]", i + 1)) > i:
            body = pattern[i + 1:end]
            out.append("[^" + re.escape(body[1:]) + "]" if body.startswith("!") else "[" + re.escape(body) + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def select(source_id: str, patterns: list[str], names: list[str]) -> list[str]:
    """Remote file names matched by `patterns`, in the order `expand` gives locally (catalogue order, sorted
    within a glob). A pattern that matches nothing is an error naming it."""
    chosen: list[str] = []
    for pattern in patterns:
        matches = sorted(n for n in names if glob_regex(pattern).match(n))
        if not matches:
            raise FetchError(source_id, f"no file matches {pattern!r} upstream")
        chosen.extend(m for m in matches if m not in chosen)
    return chosen


class HostFetcher:
    """Base of the network hosts. Subclasses set `host` and implement `plan` and `download`."""

    host = ""
    versioned = False  # True when `revision` names a commit that a branch must be resolved to

    def __init__(self, cache_root: Path, *, retry: RetryPolicy | None = None,
                 reporter: Reporter | None = None) -> None:
        self.cache_root = Path(cache_root)
        self.retry = retry or RetryPolicy()
        self.reporter: Reporter = reporter or LogReporter()

    # ---- host hooks ----------------------------------------------------------------------------------
    def resolve(self, source: Source) -> str:
        """The commit a branch or tag points to now (versioned hosts only)."""
        raise NotImplementedError

    def plan(self, source: Source, revision: str | None, patterns: list[str]) -> list[Planned]:
        raise NotImplementedError

    def download(self, source: Source, revision: str | None, item: Planned, tmp: Path,
                 progress: FileProgress) -> None:
        raise NotImplementedError

    # ---- the shared flow -----------------------------------------------------------------------------
    def offline_revision(self, source: Source, locked: LockEntry | None) -> tuple[bool, str | None]:
        """(known, revision): the revision to use when it needs no network (a commit, a locked branch, or
        an unversioned host)."""
        if not self.versioned:
            return True, source.revision
        if source.revision and COMMIT.fullmatch(source.revision):
            return True, source.revision
        if locked and locked.resolved and locked.revision == source.revision:
            return True, locked.resolved
        return False, None

    def from_cache(self, source: Source, cache: SourceCache, patterns: list[str],
                   locked: LockEntry | None) -> FetchedSource | None:
        names = cache.complete(patterns)
        if names is None:
            return None
        files: list[FetchedFile] = []
        for name in names:
            expected = self.expected_sha256(source, name, locked)
            hit = cache.cached(name, expected)
            if hit is None:
                return None
            files.append(hit)
        return FetchedSource(source.id, cache.folder, cache.revision, tuple(files))

    @staticmethod
    def expected_sha256(source: Source, relpath: str, locked: LockEntry | None) -> str | None:
        if locked and relpath in locked.files:
            return locked.files[relpath].sha256
        return source.sha256.get(relpath)

    def fetch(self, source: Source, *, force: bool = False, locked: LockEntry | None = None) -> FetchedSource:
        patterns = local_patterns(source)
        known, revision = self.offline_revision(source, locked)
        if known and not force:
            hit = self.from_cache(source, SourceCache(self.cache_root, source.id, revision), patterns, locked)
            if hit is not None:
                verify_declared(source, list(hit.files))
                return hit
        if not known:
            revision = self.resolve(source)
            if source.revision and SHORT_COMMIT.fullmatch(source.revision) and not revision.startswith(source.revision):
                raise FetchError(source.id, f"revision {source.revision!r} resolved to {revision}, which is not "
                                            f"that abbreviated commit: write the full commit in the catalogue")
            SourceCache(self.cache_root, source.id, revision).remember_ref(source.revision or DEFAULT_REF, revision)
        cache = SourceCache(self.cache_root, source.id, revision)
        if not known and not force and (hit := self.from_cache(source, cache, patterns, locked)) is not None:
            verify_declared(source, list(hit.files))
            return hit
        files = [self.bring(source, revision, cache, item, force, locked)
                 for item in self.plan(source, revision, patterns)]
        cache.mark_complete(patterns, [f.relpath for f in files])
        verify_declared(source, files)
        return FetchedSource(source.id, cache.folder, revision, tuple(files))

    def bring(self, source: Source, revision: str | None, cache: SourceCache, item: Planned, force: bool,
              locked: LockEntry | None) -> FetchedFile:
        """One file: from the cache when it is there and right, else downloaded, verified and recorded."""
        expected = item.sha256 or self.expected_sha256(source, item.relpath, locked)
        if not force and (hit := cache.cached(item.relpath, expected)) is not None:
            return hit
        tmp = cache.partial_path(item.relpath)
        if force:
            tmp.unlink(missing_ok=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        with self.reporter.file(source.id, item.relpath, item.size) as progress:
            self.download(source, revision, item, tmp, progress)
        return cache.commit(item.relpath, tmp, record_url(item.url), expected_sha256=expected,
                            expected_size=item.size)
