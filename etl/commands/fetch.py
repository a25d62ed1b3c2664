"""`medcorpus fetch [ID…]` and `medcorpus lock [ID…]`, and the per-source fetch state `sources list` shows."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from etl.catalog import Catalog, Source, load_catalog
from etl.fetch import make_fetcher
from etl.fetch.base import FetchedSource, FetchError, local_patterns
from etl.fetch.cache import SourceCache, cached_size, default_cache_dir, known_ref
from etl.fetch.common import COMMIT, DEFAULT_REF
from etl.fetch.lock import LockFile, default_lock_path

log = logging.getLogger("etl.fetch")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ids", nargs="*", metavar="ID", help="sources (default: every enabled source)")
    parser.add_argument("--catalog", default="sources.yaml", help="catalogue file (default: ./sources.yaml)")
    parser.add_argument("--cache", type=Path, help="download cache (default: $MEDCORPUS_CACHE or ~/.cache/medcorpus)")
    from etl.cli import add_workers_arg

    add_workers_arg(parser, "sources downloaded at once")


def register(subparsers: argparse._SubParsersAction) -> None:
    fetch = subparsers.add_parser("fetch", help="download sources into the cache, verified against sources.lock")
    _common(fetch)
    fetch.add_argument("--force", action="store_true", help="download again even when the cache has the files")
    fetch.set_defaults(func=run_fetch)
    lock = subparsers.add_parser("lock", help="resolve revisions and record every file's size and sha256 "
                                              "in sources.lock (next to the catalogue)")
    _common(lock)
    lock.set_defaults(func=run_lock)


def _report(results: dict[str, FetchedSource | FetchError]) -> int:
    failed = 0
    for sid, result in results.items():
        if isinstance(result, FetchError):
            failed += 1
            print(f"{sid}: FAILED: {result.message}", file=sys.stderr)
            continue
        size = sum(f.size for f in result.files)
        revision = f" at {result.revision[:12]}" if result.revision else ""
        print(f"{sid}: {len(result.files)} file(s), {size / 1e6:.1f} MB{revision} in {result.root}")
    if failed:
        print(f"{failed} of {len(results)} source(s) failed", file=sys.stderr)
    return 1 if failed else 0


def _selected(args: argparse.Namespace) -> tuple[Catalog, list[Source]]:
    catalog = load_catalog(args.catalog)
    return catalog, catalog.select(args.ids or None)


def run_fetch(args: argparse.Namespace) -> int:
    catalog, sources = _selected(args)
    fetcher = make_fetcher(cache_dir=args.cache, lock_path=default_lock_path(catalog.path))
    return _report(fetcher.fetch_many(sources, force=args.force, workers=args.workers))


def run_lock(args: argparse.Namespace) -> int:
    catalog, sources = _selected(args)
    lock_path = default_lock_path(catalog.path)
    fetcher = make_fetcher(cache_dir=args.cache, lock_path=lock_path)
    status = _report(fetcher.lock(sources, workers=args.workers))
    print(f"wrote {lock_path}")
    return status


def _cached_revision(source: Source, root: Path, lock: LockFile) -> tuple[bool, str | None]:
    """(known, revision) of the source's cache folder, without network."""
    if source.host not in ("hf", "github"):
        return True, source.revision
    if source.revision and COMMIT.fullmatch(source.revision):
        return True, source.revision
    entry = lock.get(source.id)
    if entry and entry.resolved and entry.revision == source.revision:
        return True, entry.resolved
    ref = known_ref(root, source.id, source.revision or DEFAULT_REF)
    return ref is not None, ref


def source_states(catalog: Catalog, cache_dir: Path | None) -> dict[str, dict]:
    """Per source: host, pinned revision (and what it resolved to), fetched or not, cached bytes, lock
    status (`locked`, `not locked`, `stale`: the catalogue's revision changed, `mismatch`: the cache differs)."""
    root = default_cache_dir(cache_dir)
    lock = LockFile.load(default_lock_path(catalog.path))
    states: dict[str, dict] = {}
    for source in catalog.sources:
        state: dict = {"host": source.host, "revision": source.revision, "resolved": None, "fetched": False,
                       "cached_size": 0, "lock": "not locked"}
        if source.host == "builtin":
            state.update(fetched=True, lock="not needed")
            states[source.id] = state
            continue
        known, revision = _cached_revision(source, root, lock)
        entry = lock.get(source.id)
        records: dict = {}
        if known:
            cache = SourceCache(root, source.id, revision)
            records = cache.records()
            state.update(resolved=revision, fetched=cache.complete(local_patterns(source)) is not None,
                         cached_size=cached_size(root, source.id, revision))
        if entry is not None:
            if entry.revision != source.revision:
                state["lock"] = "stale"
            elif any(name in records and records[name].sha256 != f.sha256 for name, f in entry.files.items()):
                state["lock"] = "mismatch"
            else:
                state["lock"] = "locked"
        states[source.id] = state
    return states
