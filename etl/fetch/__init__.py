"""Fetchers, one module per host, behind the `Fetcher` interface of `etl.fetch.base`.

`make_fetcher` is the one entry point the rest of the code needs: it returns a `Fetcher` that reads every
source from a `--mirror` folder when one is given (except `builtin` sources, shipped in the package), and
otherwise downloads from the source's real host into the cache, verified against `sources.lock`.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

from etl.catalog import Source
from etl.fetch.base import FetchedSource, Fetcher, FetchError
from etl.fetch.builtin import BuiltinFetcher
from etl.fetch.cache import default_cache_dir
from etl.fetch.common import COMMIT, SHORT_COMMIT, HostFetcher
from etl.fetch.lock import LockEntry, LockFile, LockMismatch, verify_against_lock
from etl.fetch.mirror import MirrorFetcher
from etl.fetch.net import RetryPolicy, redact
from etl.fetch.progress import Reporter, reporter_for_terminal

__all__ = ["DEFAULT_WORKERS", "FetchError", "Fetcher", "SourceFetcher", "make_fetcher"]

log = logging.getLogger("etl.fetch")
DEFAULT_WORKERS = 4

# host -> "module:Class", imported on first use so `import etl.fetch` stays light
HOSTS = {
    "hf": "etl.fetch.hf:HfFetcher",
    "github": "etl.fetch.github:GithubFetcher",
    "gdrive": "etl.fetch.gdrive:GdriveFetcher",
    "tianchi": "etl.fetch.tianchi:TianchiFetcher",
    "http": "etl.fetch.http:HttpFetcher",
}


def host_class(host: str) -> type[HostFetcher]:
    module, _, name = HOSTS[host].partition(":")
    return getattr(importlib.import_module(module), name)


class SourceFetcher:
    """Dispatches by `source.host`: builtin, mirror, or the host's downloader with cache and lock."""

    def __init__(self, *, mirror: Path | None = None, cache_dir: Path | None = None,
                 lock_path: Path | None = None, retry: RetryPolicy | None = None,
                 reporter: Reporter | None = None) -> None:
        self.mirror = MirrorFetcher(Path(mirror)) if mirror is not None else None
        self.cache_dir = default_cache_dir(cache_dir)
        self.lock_path = Path(lock_path) if lock_path is not None else None
        self.retry = retry or RetryPolicy()
        self.reporter = reporter
        self.builtin = BuiltinFetcher()

    def _locked(self, source: Source) -> LockEntry | None:
        if self.lock_path is None:
            return None
        entry = LockFile.load(self.lock_path).get(source.id)
        if entry is not None and entry.revision != source.revision:
            raise LockMismatch(source.id, f"the catalogue asks for revision {source.revision!r} but sources.lock "
                                          f"has {entry.revision!r}: run `medcorpus lock {source.id}`")
        return entry

    def _download(self, source: Source, force: bool, locked: LockEntry | None,
                  reporter: Reporter | None) -> FetchedSource:
        fetcher = host_class(source.host)(self.cache_dir, retry=self.retry, reporter=reporter or self.reporter)
        fetched = fetcher.fetch(source, force=force, locked=locked)
        if fetcher.versioned and not (source.revision and COMMIT.fullmatch(source.revision)):
            state = f"sources.lock pins it to {locked.resolved}" if locked else \
                f"resolved to {fetched.revision}; run `medcorpus lock {source.id}` to pin it"
            if not source.revision:
                what = "has no revision: it follows the default branch"
            elif SHORT_COMMIT.fullmatch(source.revision):
                what = f"revision {source.revision!r} is an abbreviated commit"
            else:
                what = f"revision {source.revision!r} is a branch or tag, not a commit"
            log.warning("%s: %s (%s)", source.id, what, state)
        return fetched

    def fetch(self, source: Source, *, force: bool = False, reporter: Reporter | None = None) -> FetchedSource:
        """Bring one source's files. A mirror is used as is (no lock check); downloads are checked against
        `sources.lock` when it has an entry for the source."""
        if source.host == "builtin":
            return self.builtin.fetch(source, force=force)
        if self.mirror is not None:
            return self.mirror.fetch(source, force=force)
        locked = self._locked(source)
        fetched = self._download(source, force, locked, reporter)
        if locked is not None:
            verify_against_lock(fetched, locked)
        return fetched

    def fetch_many(self, sources: Iterable[Source], *, force: bool = False,
                   workers: int = DEFAULT_WORKERS) -> dict[str, FetchedSource | FetchError]:
        """Fetch sources concurrently (at most `workers` at once). A failure is returned, not raised, so the
        other sources go on; the result keeps the order of `sources`."""
        chosen = list(sources)
        outer = nullcontext(self.reporter) if self.reporter is not None else reporter_for_terminal()
        with outer as reporter, ThreadPoolExecutor(max_workers=max(1, min(workers, len(chosen) or 1))) as pool:
            futures = {s.id: pool.submit(self._guarded, lambda s=s: self.fetch(s, force=force, reporter=reporter),
                                         s.id) for s in chosen}
            return {sid: future.result() for sid, future in futures.items()}

    def lock(self, sources: Iterable[Source], *, workers: int = DEFAULT_WORKERS) -> dict[str, FetchedSource | FetchError]:
        """Resolve each source afresh (branches to their current commit), fetch it, and record it in
        `sources.lock`. Sources that fail keep their previous entry."""
        if self.lock_path is None:
            raise ValueError("lock needs a lock_path")
        chosen = [s for s in sources if s.host != "builtin"]
        outer = nullcontext(self.reporter) if self.reporter is not None else reporter_for_terminal()
        with outer as reporter, ThreadPoolExecutor(max_workers=max(1, min(workers, len(chosen) or 1))) as pool:
            futures = {s.id: pool.submit(self._guarded, lambda s=s: self._download(s, False, None, reporter), s.id)
                       for s in chosen}
            results = {sid: future.result() for sid, future in futures.items()}
        lock = LockFile.load(self.lock_path)
        by_id = {s.id: s for s in chosen}
        for sid, result in results.items():
            if isinstance(result, FetchedSource):
                lock.record(by_id[sid].host, by_id[sid].revision, result)
        lock.save()
        return results

    @staticmethod
    def _guarded(action: Callable[[], FetchedSource], source_id: str) -> FetchedSource | FetchError:
        try:
            return action()
        except FetchError as exc:
            return exc
        except Exception as exc:  # one source's bug must not stop the others
            log.debug("fetch of %s failed", source_id, exc_info=True)
            return FetchError(source_id, redact(f"{type(exc).__name__}: {exc}"))


def make_fetcher(*, mirror: Path | None = None, cache_dir: Path | None = None, lock_path: Path | None = None,
                 retry: RetryPolicy | None = None, reporter: Reporter | None = None) -> SourceFetcher:
    """The fetcher for a build: `mirror` reads every non-builtin source from `mirror/<id>/`; otherwise each
    host's downloader fills `cache_dir` (default `$MEDCORPUS_CACHE` or `~/.cache/medcorpus`) and checks the
    files against `lock_path` (usually `sources.lock` beside the catalogue) when given."""
    return SourceFetcher(mirror=mirror, cache_dir=cache_dir, lock_path=lock_path, retry=retry, reporter=reporter)
