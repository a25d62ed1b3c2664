"""`medcorpus build`: fetch → convert (per source, cached) → cross-source stages (per task) → write.

The finished output replaces the previous one only at the end: shards, rejects, card and chart are
written into `OUT/.staging/`, moved into place, and `manifest.json` is written last. A reader that
finds a manifest finds exactly the shards it lists (with their sha256); `medcorpus validate` checks.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from etl import __version__
from etl.catalog import TASKS, Catalog, Source
from etl.conversion import Converted, Unit, UnitResult, convert_unit, merge_units, plan_units
from etl.engines import Engine, make_engine
from etl.executor import ParquetStream, TaskRun, scan_parquet
from etl.faults import checkpoint
from etl.fetch.base import FetchedSource, FetchError
from etl.memory import release_memory
from etl.read.base import SourceFileError
from etl.schemas import REJECTS_SCHEMA, arrow_schema
from etl.stages.pipeline import default_stages
from etl.stages.text import row_texts
from etl.tokens import TokenTally, load_counter
from etl.ui import Reporter
from etl.write import Shard, ShardedWriter, file_sha256

log = logging.getLogger("medcorpus")

SPLITS = ("train", "validation", "test")
OUTPUT_ENTRIES = (*TASKS, "eval", "rejects", "stats", "README.md")
STAGE_COUNTER = {"exact_dedup": "exact_dup", "near_dedup": "near_dup", "decontaminate": "decontaminated",
                 "quality": "low_quality"}
# A stage's own per-source counters (etl.stages.base.settle) land in the manifest under these keys.
STAGE_TALLY = {"redact": "redacted", "quality": "low_quality_by_reason"}
FAILED_BUILD = ".failed-build"     # where a build whose sources failed leaves its result (OUT is kept)
COMMIT_MARKER = ".medcorpus-commit"  # the entries of OUT being swapped, while manifest.json is absent


def default_workers() -> int:
    """The one `--workers` default of every command: the number of cores."""
    return os.cpu_count() or 1


class BuildLockedError(RuntimeError):
    """Another build holds the output folder."""


class OutputRefusedError(RuntimeError):
    """The output folder holds something a build must not replace (files MedCorpus did not write, or a
    corpus built from the real datasets that an offline build would replace with samples)."""


@dataclass
class BuildOptions:
    out: Path
    source_ids: list[str] | None = None
    tasks: list[str] | None = None
    mirror: Path | None = None
    cache_dir: Path | None = None
    workers: int = 1
    keep_going: bool = False
    force_fetch: bool = False
    license_allow: tuple[str, ...] = ()     # licence categories a training source may have (see licence_categories)
    license_deny: tuple[str, ...] = ()      # licence categories that exclude a training source
    fallback_mirror: Path | None = None     # offline: sources not in the download cache come from this mirror
    allow_sample_over_real: bool = False    # let sample-mirror sources replace an output built from real data
    license_profile: str = "all"            # a key of LICENCE_PROFILES: categories it denies besides license_deny
    tokenizer: str | None = None            # HF tokenizer (name in the local cache, or a folder) for token counts
    engine: str = "local"                   # local | ray (etl/engines/)
    ray_address: str | None = None          # an existing Ray cluster; None starts a local one


# `publishable`: only what may be redistributed (what `medcorpus publish` accepts without --allow-license).
LICENCE_PROFILES: dict[str, tuple[str, ...]] = {"all": (), "publishable": ("no-redistribution", "copyrighted")}


def denied_categories(options: BuildOptions) -> set[str]:
    return set(options.license_deny) | set(LICENCE_PROFILES[options.license_profile])


def licence_categories(source: Source) -> set[str]:
    """A source's licence categories: its `license_terms`, or `permissive` when it states none."""
    return set(source.license_terms) or {"permissive"}


def licence_exclusion(source: Source, options: BuildOptions) -> str | None:
    """Why `--license-allow/--license-deny` leave this source out, or None. The gate applies to eval sources
    too: an excluded one is still read to decontaminate the training data (nothing of it is output) but
    withheld from the `eval` config (see run_build)."""
    categories = licence_categories(source)
    denied = sorted(categories & denied_categories(options))
    if denied:
        how = "--license-deny" if set(denied) & set(options.license_deny) else f"--license-profile {options.license_profile}"
        return f"licence category {', '.join(denied)} is denied ({how})"
    if options.license_allow and not categories <= set(options.license_allow):
        missing = sorted(categories - set(options.license_allow))
        return f"licence category {', '.join(missing)} is not allowed (--license-allow)"
    return None


@dataclass
class SourceOutcome:
    source: Source
    status: str = "ok"                     # ok | failed | skipped
    error: str | None = None
    fetched: FetchedSource | None = None
    converted: Converted | None = None
    stage_removed: Counter[str] = field(default_factory=Counter)
    stage_counts: dict[str, Counter[str]] = field(default_factory=dict)
    written: int = 0
    langs: Counter[str] = field(default_factory=Counter)
    from_sample: bool = False              # read from the offline fallback mirror, not the real files
    written_by_split: Counter[str] = field(default_factory=Counter)
    eval_written: int = 0
    withheld: str | None = None            # an eval source the licence gate keeps out of the `eval` config


@dataclass
class BuildResult:
    manifest: dict[str, Any]
    outcomes: list[SourceOutcome]
    left_in: Path | None = None            # set when sources failed and OUT was kept: where the result is

    @property
    def failed(self) -> list[SourceOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


# --------------------------------------------------------------------------- lock


class OutputLock:
    """One build per output folder: an exclusive `flock` on `OUT/.medcorpus.lock`. The kernel releases it
    when the holder's file is closed, which includes any death of the process (kill -9, a zombie has
    already closed its files), so there is no stale lock to take over and no race in taking one. The file
    itself stays (deleting it would let two processes lock two different files); it holds the holder's pid
    and host for the error message only."""

    def __init__(self, out: Path, reporter: Reporter | None = None) -> None:
        self.path = out / ".medcorpus.lock"
        self.reporter = reporter
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            raise BuildLockedError(
                f"another build ({holder}) is writing to {self.path.parent}; wait for it to finish") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(), 0)
        self._fd = fd
        return self

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
            return f"pid {holder['pid']} on {holder['host']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "a process that has not written its pid yet"

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing releases the flock
            self._fd = None


# --------------------------------------------------------------------------- the output folder


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("tool") == "medcorpus" else None


def owned_entries(manifest: dict[str, Any]) -> set[str]:
    """The top-level entries of OUT a MedCorpus build wrote, from its manifest (`entries`; a manifest
    from before that field: every name a build can write)."""
    entries = manifest.get("entries")
    return set(entries) if isinstance(entries, list) else set(OUTPUT_ENTRIES)


def previous_output(out: Path) -> tuple[dict[str, Any] | None, set[str]]:
    """The manifest of the MedCorpus output in `out` (None when there is none yet) and the entries of
    `out` a MedCorpus build wrote. Refuses, with OutputRefusedError, a folder where a build would replace
    files that no MedCorpus build wrote."""
    if not out.is_dir():
        return None, set()
    previous = None
    owned: set[str] = set()
    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        previous = _read_manifest(manifest_path)
        if previous is None:
            raise OutputRefusedError(
                f"{out}: manifest.json is not the manifest of a MedCorpus build, so this folder is not a "
                "MedCorpus output; choose another --out (an empty or new folder)")
        owned = owned_entries(previous)
    else:
        # a commit that was interrupted between removing the old manifest and writing the new one
        marker = _read_manifest(out / COMMIT_MARKER)
        if marker is not None:
            owned = set(marker.get("entries", []))
    foreign = sorted(name for name in OUTPUT_ENTRIES if (out / name).exists() and name not in owned)
    if foreign:
        shown = ", ".join(f"{n}/" if (out / n).is_dir() else n for n in foreign)
        raise OutputRefusedError(
            f"{out} holds {shown}, which no MedCorpus build wrote there (no manifest.json lists them); a build "
            "would replace them. Choose another --out (an empty or new folder), or move them away")
    return previous, owned


def real_sources(manifest: dict[str, Any]) -> set[str]:
    """Sources of an output that were built from their real files (not from a sample mirror)."""
    ok = {sid: e for sid, e in manifest.get("sources", {}).items() if e.get("status") == "ok"}
    if not manifest.get("from_mirror"):
        return set(ok)
    return {sid for sid, e in ok.items() if e.get("from_mirror") is False}


# --------------------------------------------------------------------------- fetch + convert


def _fetcher(options: BuildOptions, catalog: Catalog) -> Any:
    from etl.fetch import make_fetcher
    from etl.fetch.lock import default_lock_path

    return make_fetcher(mirror=options.mirror, cache_dir=options.cache_dir, lock_path=default_lock_path(catalog.path))


def _with_build_settings(source: Source, catalog: Catalog) -> Source:
    """Settings a converter needs from the build section (the persona fills identity templates)."""
    if source.format == "persona":
        return source.model_copy(update={"options": {**source.options, "persona": catalog.build.persona.model_dump()}})
    return source


def _inside(exc: OSError, folder: Path) -> bool:
    paths = [p for p in (exc.filename, getattr(exc, "filename2", None)) if p]
    if not paths:
        return True  # a failing write with no path (e.g. ENOSPC on flush): treat as the build's storage
    root = folder.resolve()
    return any(Path(p).resolve().is_relative_to(root) or root.is_relative_to(Path(p).resolve()) for p in paths)


def cached_source_ids(catalog: Catalog, sources: list[Source], options: BuildOptions) -> set[str]:
    """Sources whose files are complete in the download cache (readable without network)."""
    from etl.commands.fetch import source_states

    states = source_states(catalog, options.cache_dir)
    return {s.id for s in sources if states.get(s.id, {}).get("fetched")}


def plan_samples(catalog: Catalog, outcomes: list[SourceOutcome], options: BuildOptions,
                 previous: dict[str, Any] | None) -> None:
    """Offline (`--offline-mirror`): mark the sources that are not in the download cache to be read from
    the sample mirror, and refuse to let them replace real data of the previous output without
    `--allow-sample-over-real`."""
    if options.fallback_mirror is None:
        return
    todo = [o for o in outcomes if o.status == "ok" and o.source.host != "builtin"]
    cached = cached_source_ids(catalog, [o.source for o in todo], options)
    for outcome in todo:
        outcome.from_sample = outcome.source.id not in cached
    _refuse_sample_over_real(outcomes, options, previous)


def _refuse_sample_over_real(outcomes: list[SourceOutcome], options: BuildOptions,
                             previous: dict[str, Any] | None) -> None:
    if previous is None or options.allow_sample_over_real:
        return
    clash = sorted(real_sources(previous) & {o.source.id for o in outcomes if o.from_sample})
    if clash:
        raise OutputRefusedError(
            f"{options.out} holds a corpus built from the real datasets, but offline {', '.join(clash)} would "
            f"come from the sample mirror {options.fallback_mirror} (not in the download cache). Build into "
            "another --out, fetch them when online, or pass --allow-sample-over-real to replace it anyway")


def fetch_all(catalog: Catalog, outcomes: list[SourceOutcome], options: BuildOptions,
              reporter: Reporter, previous: dict[str, Any] | None = None) -> None:
    """Fetch every source; offline, cached sources from the cache and the others from the sample mirror
    (a cached source that still cannot be read falls back to the mirror when that is allowed)."""
    real = [o for o in outcomes if not o.from_sample]
    results = _fetcher(options, catalog).fetch_many([o.source for o in real], force=options.force_fetch) if real else {}
    if options.fallback_mirror is not None:
        retry = [o for o in real if isinstance(results[o.source.id], FetchError) and o.source.host != "builtin"]
        for outcome in retry:
            reporter.warn(f"{outcome.source.id}: the cached copy cannot be used offline "
                          f"({results[outcome.source.id].message}); using the sample mirror")
            outcome.from_sample = True
        _refuse_sample_over_real(outcomes, options, previous)
        samples = [o for o in outcomes if o.from_sample]
        if samples:
            from etl.fetch import make_fetcher

            mirror = make_fetcher(mirror=options.fallback_mirror, cache_dir=options.cache_dir)
            results.update(mirror.fetch_many([o.source for o in samples]))
    for outcome in outcomes:
        result = results[outcome.source.id]
        if isinstance(result, FetchError):
            outcome.status, outcome.error = "failed", str(result)
            reporter.warn(f"{outcome.source.id}: fetch failed: {result.message}")
        else:
            outcome.fetched = result


@dataclass(frozen=True)
class WorkerFailure:
    """An exception raised while converting one source, as plain values: it always crosses a process
    boundary (a worker's own exception may not), so it comes back from a worker as that source's failure."""

    type_name: str
    message: str
    source_file_error: bool = False
    is_os_error: bool = False
    errno: int | None = None             # an OSError: enough to rebuild it (the build's storage failing)
    strerror: str | None = None
    filename: str | None = None
    filename2: str | None = None
    trace: str = ""

    @classmethod
    def of(cls, exc: BaseException, trace: str = "") -> WorkerFailure:
        def path(value: Any) -> str | None:
            return os.fsdecode(value) if isinstance(value, str | bytes | os.PathLike) else None

        failure = cls(type(exc).__name__, str(exc), isinstance(exc, SourceFileError), trace=trace)
        if isinstance(exc, OSError):
            failure = cls(failure.type_name, failure.message, False, True, exc.errno, exc.strerror,
                          path(exc.filename), path(getattr(exc, "filename2", None)), trace)
        return failure

    def os_error(self) -> OSError | None:
        if not self.is_os_error:
            return None
        if self.errno is None:
            return OSError(self.message)
        return OSError(self.errno, self.strerror, self.filename, None, self.filename2)

    def describe(self) -> str:
        return self.message if self.source_file_error else f"{self.type_name}: {self.message}"


def convert_unit_guarded(unit: Unit) -> UnitResult | WorkerFailure:
    """`convert_unit` that returns any exception as a WorkerFailure instead of raising it: one source's
    failure is that source's, whatever the engine."""
    try:
        return convert_unit(unit)
    except Exception as exc:  # noqa: BLE001 - one source's failure is that source's, whatever it is
        return WorkerFailure.of(exc, traceback.format_exc())


def merge_guarded(outcome: SourceOutcome, results: list[Any], work_dir: Path) -> Converted | WorkerFailure:
    """The source's converted result from its units' results, or the first failure among them."""
    for result in results:
        if isinstance(result, WorkerFailure):
            return result
    try:
        return merge_units(outcome.source, outcome.fetched, work_dir, results)
    except Exception as exc:  # noqa: BLE001 - as convert_unit_guarded
        return WorkerFailure.of(exc, traceback.format_exc())


def _bytes(outcome: SourceOutcome) -> int:
    return sum(f.size for f in outcome.fetched.files) if outcome.fetched else 0


def fetch_and_convert(catalog: Catalog, outcomes: list[SourceOutcome], options: BuildOptions, work_dir: Path,
                      reporter: Reporter, previous: dict[str, Any] | None = None,
                      engine: Engine | None = None) -> None:
    fetch_all(catalog, outcomes, options, reporter, previous)
    todo = [o for o in outcomes if o.status == "ok"]
    reporter.phase("convert", sum(_bytes(o) for o in todo), unit="bytes", items=len(todo))
    # large sources in several work units, so that one big source does not keep one worker busy
    plans = [(o, plan_units(o.source, o.fetched, work_dir, options.workers)) for o in todo]
    with _engine(engine, options) as run:
        results = run.map_units(convert_unit_guarded, [(unit,) for _, units in plans for unit in units])
        for outcome, units in plans:
            done = [_unit_result(next(results)) for _ in units]
            _settle(outcome, merge_guarded(outcome, done, work_dir), reporter, work_dir)
        release_memory()


def _engine(engine: Engine | None, options: BuildOptions) -> Any:
    """The build's engine, or (for a caller without one) a new one closed after use."""
    return contextlib.nullcontext(engine) if engine is not None else make_engine(
        options.engine, options.workers, options.ray_address)


def _unit_result(result: Any) -> Any:
    """A unit's result from the engine's thunk; a worker that died is that source's failure."""
    try:
        return result()
    except Exception as exc:  # noqa: BLE001 - the worker died (BrokenProcessPool) or its result could not be sent back
        return WorkerFailure(type(exc).__name__, f"the worker process converting this source failed: {exc}")


def _settle(outcome: SourceOutcome, result: Converted | WorkerFailure, reporter: Reporter, work_dir: Path) -> None:
    if isinstance(result, WorkerFailure):
        # the build's own storage failing (disk full, no permission) is not the source's fault: stop the
        # whole build so the previous complete output is never replaced by a partial one
        os_error = result.os_error()
        if os_error is not None and _inside(os_error, work_dir):
            raise os_error
        if result.trace:
            log.debug("%s: conversion failed:\n%s", outcome.source.id, result.trace)
        outcome.status, outcome.error = "failed", result.describe()
        reporter.warn(f"{outcome.source.id}: {outcome.error}" if result.source_file_error
                      else f"{outcome.source.id}: conversion failed: {outcome.error}")
        reporter.advance("convert", f"{outcome.source.id}: failed", amount=_bytes(outcome))
        return
    outcome.converted = result
    counts = result.counts
    reporter.advance("convert", f"{outcome.source.id}: {counts.get('read', 0):,} records read, "
                                f"{counts.get('rows', 0):,} rows, {counts.get('rejected', 0):,} rejected"
                                + (" (cached)" if result.from_cache else ""), amount=_bytes(outcome))


# --------------------------------------------------------------------------- cross-source stages


def _task_stream(parts: list[tuple[Converted, int]]) -> ParquetStream:
    """A re-startable stream of one task's rows in canonical order, with `_row` and `_priority`."""
    return ParquetStream([(converted.rows_path, priority) for converted, priority in parts])


def _eval_scan(outcomes: list[SourceOutcome]) -> Any:
    """Every eval row of every task. Besides the task columns (null where a task has no such column),
    `task` names the row's task and `text` is its whole matching text (etl.stages.text.row_texts)."""
    all_types = {f.name: f.type for task in TASKS for f in arrow_schema(task)}

    def scan(columns: list[str]) -> Iterator[pa.RecordBatch]:
        for outcome in outcomes:
            if outcome.converted is None:
                continue
            task = outcome.source.task
            for batch in scan_parquet([outcome.converted.eval_path]):
                n = batch.num_rows
                arrays = []
                for name in columns:
                    if name == "task":
                        arrays.append(pa.array([task] * n, pa.string()))
                    elif name == "text" and task != "pretrain":
                        arrays.append(pa.array(row_texts(batch, task), pa.string()))
                    elif name in batch.schema.names:
                        arrays.append(batch.column(name))
                    elif name in all_types:
                        arrays.append(pa.nulls(n, all_types[name]))
                    else:
                        raise KeyError(f"eval rows have no column {name!r}")
                yield pa.RecordBatch.from_arrays(arrays, names=columns)

    return scan


def run_tasks(catalog: Catalog, outcomes: list[SourceOutcome], staging: Path, work_dir: Path,
              options: BuildOptions, reporter: Reporter, tally: TokenTally | None = None,
              engine: Engine | None = None) -> list[Shard]:
    with _engine(engine, options) as run_on:
        return _run_tasks(catalog, outcomes, staging, work_dir, reporter, run_on, tally)


def _run_tasks(catalog: Catalog, outcomes: list[SourceOutcome], staging: Path, work_dir: Path,
               reporter: Reporter, engine: Engine, tally: TokenTally | None) -> list[Shard]:
    build = catalog.build
    shards: list[Shard] = []
    by_id = {o.source.id: o for o in outcomes}
    for task in TASKS:
        parts = [(o.converted, o.source.priority) for o in outcomes
                 if o.converted is not None and o.source.task == task]
        if not parts:
            continue
        stages = default_stages(task, build, catalog.sources)
        reporter.phase(f"{task}: stages", len(stages))
        ticked: list[str] = []

        def tick(name: str, t: str = task, ticked: list[str] = ticked) -> None:
            ticked.append(name)
            reporter.advance(f"{t}: stages", name)

        run = TaskRun(task, stages, work_dir / "stages" / task, staging / "stats" / "reports" / task,
                      _eval_scan(outcomes), engine, on_stage=tick,
                      finish=tally.on_workers(task) if tally is not None else None)
        run.report_dir.mkdir(parents=True, exist_ok=True)
        columns = set(arrow_schema(task).names) | {"_row", "_priority"}
        writers: dict[str, ShardedWriter] = {}
        for batch in run.run(_task_stream(parts), columns):
            if batch.num_rows == 0:
                continue
            for item in pc.value_counts(batch.column("source")).to_pylist():
                by_id[item["values"]].written += item["counts"]
            for item in pc.value_counts(pc.binary_join_element_wise(batch.column("source"), batch.column("lang"), "\t")).to_pylist():
                source_id, lang = item["values"].split("\t")
                by_id[source_id].langs[lang] += item["counts"]
            for split in SPLITS:
                mask = pc.equal(batch.column("split"), split)
                if not pc.any(mask).as_py():
                    continue
                if split not in writers:
                    writers[split] = ShardedWriter(staging, task, split, arrow_schema(task),
                                                   build.shard_max_bytes, build.row_group_rows)
                part = batch.filter(mask)
                for item in pc.value_counts(part.column("source")).to_pylist():
                    by_id[item["values"]].written_by_split[split] += item["counts"]
                if tally is not None:
                    tally.add(task, split, part)
                writers[split].write(part)
        for split in SPLITS:
            if split in writers:
                shards.extend(writers[split].close())
        for stage_name, removed in run.removed.items():
            for source_id, n in removed.items():
                by_id[source_id].stage_removed[stage_name] += n
        _gather_stage_counts(run, by_id, task)
        release_memory()
        for stage in stages:
            summary = stage.summary()
            if summary:
                (run.report_dir / f"{stage.name}.json").write_text(
                    json.dumps(summary, sort_keys=True, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
        for stage in stages:  # the streamed stages (no global pass) finish with the write
            if stage.name not in ticked:
                reporter.advance(f"{task}: stages", f"{stage.name} (streamed)")
    return shards


def _gather_stage_counts(run: TaskRun, by_id: dict[str, SourceOutcome], task: str) -> None:
    """Stage counters per source into the outcomes; sample dropped rows into `drops-<stage>.jsonl`
    (ordered by reason, then canonical row order), which `build --explain-drops` shows."""
    for stage_name, per_source in run.counts.items():
        for source_id, counts in per_source.items():
            by_id[source_id].stage_counts.setdefault(stage_name, Counter()).update(counts)
    for stage_name, batches in run.dropped.items():
        if not batches:
            continue
        table = pa.Table.from_batches(batches).sort_by([("_drop", "ascending"), ("_row", "ascending")])
        texts = row_texts(table, task)
        lines = [json.dumps({"reason": r, "id": i, "source": s, "text": t}, ensure_ascii=False)
                 for r, i, s, t in zip(table.column("_drop").to_pylist(), table.column("id").to_pylist(),
                                       table.column("source").to_pylist(), texts, strict=True)]
        (run.report_dir / f"drops-{stage_name}.jsonl").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


EVAL_SPLIT = "test"   # the eval config has one split; each row's `split` column keeps its upstream split


def _as_eval_batch(batch: pa.RecordBatch, source: Source) -> pa.RecordBatch:
    """Converted eval rows of one source in the `eval` config's columns. Eval rows are not language
    tagged: `lang` is the catalogue's declared language (when it is a code) with `lang_score` 0."""
    schema = arrow_schema("eval")
    n = batch.num_rows
    declared = source.lang if len(source.lang) == 2 and source.lang.isalpha() else "und"
    arrays = []
    for field_ in schema:
        if field_.name == "task":
            arrays.append(pa.repeat(pa.scalar(source.task, pa.string()), n))
        elif field_.name == "lang":
            arrays.append(pa.repeat(pa.scalar(declared, pa.string()), n))
        elif field_.name in batch.schema.names:
            arrays.append(batch.column(field_.name).cast(field_.type))
        else:
            arrays.append(pa.nulls(n, field_.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def write_eval(outcomes: list[SourceOutcome], staging: Path, build: Any, tally: TokenTally | None = None) -> list[Shard]:
    """The `eval` config: every eval row (eval-role sources and the eval splits of training sources), as
    converted, in catalogue order; sources the licence gate withholds are left out."""
    writer = ShardedWriter(staging, "eval", EVAL_SPLIT, arrow_schema("eval"), build.shard_max_bytes,
                           build.row_group_rows)
    for outcome in outcomes:
        if outcome.converted is None or outcome.withheld:
            continue
        for batch in scan_parquet([outcome.converted.eval_path]):
            if batch.num_rows:
                writer.write(_as_eval_batch(batch, outcome.source))
                outcome.eval_written += batch.num_rows
                if tally is not None:
                    tally.add("eval", EVAL_SPLIT, batch, task=outcome.source.task)
    return writer.close()


def write_rejects(outcomes: list[SourceOutcome], staging: Path, build_max_bytes: int) -> list[Shard]:
    writer = ShardedWriter(staging, "rejects", "rejects", REJECTS_SCHEMA, build_max_bytes, 100_000, prefix="rejects")
    for outcome in outcomes:
        if outcome.converted is not None:
            for batch in scan_parquet([outcome.converted.rejects_path]):
                writer.write(batch)
    return writer.close(keep_empty=True)  # an empty table still says that nothing was rejected


# --------------------------------------------------------------------------- manifest + commit


def source_entry(outcome: SourceOutcome) -> dict[str, Any]:
    source = outcome.source
    counts: dict[str, Any] = {"read": 0, "converted": 0, "rejected": 0, "filtered": 0, "rows": 0, "eval_rows": 0,
                              "rejected_by_reason": {}, "filtered_by_reason": {}}
    if outcome.converted:
        counts.update(outcome.converted.counts)
    for stage_name, n in outcome.stage_removed.items():
        counts[STAGE_COUNTER.get(stage_name, f"removed_by_{stage_name}")] = n
    for name in STAGE_COUNTER.values():
        counts.setdefault(name, 0)
    for stage_name, key in STAGE_TALLY.items():
        counts[key] = dict(sorted(outcome.stage_counts.get(stage_name, Counter()).items()))
    counts["written"] = outcome.written
    counts["written_by_split"] = dict(sorted(outcome.written_by_split.items()))
    counts["eval_written"] = outcome.eval_written
    return {
        "name": source.name, "task": source.task, "role": source.role, "host": source.host,
        "license": source.license, "license_terms": list(source.license_terms),
        "homepage": source.homepage, "citation": source.citation,
        # the commit the files were read at (a branch in the catalogue is recorded as what it resolved to)
        "revision": (outcome.fetched.revision if outcome.fetched else None) or source.revision,
        "lang": source.lang, "priority": source.priority,
        "status": outcome.status, "error": outcome.error, "withheld": outcome.withheld,
        "files": [{"path": f.relpath, "size": f.size, "sha256": f.sha256} for f in outcome.fetched.files]
        if outcome.fetched else [],
        "counts": counts,
        "langs": dict(sorted(outcome.langs.items())),
    }


def make_manifest(catalog: Catalog, outcomes: list[SourceOutcome], shards: list[Shard],
                  options: BuildOptions) -> dict[str, Any]:
    splits: dict[str, dict[str, dict[str, int]]] = {}
    for shard in shards:
        if shard.task == "rejects":
            continue
        entry = splits.setdefault(shard.task, {}).setdefault(shard.split, {"rows": 0, "shards": 0})
        entry["rows"] += shard.rows
        entry["shards"] += 1
    totals: Counter[str] = Counter()
    for outcome in outcomes:
        if outcome.converted:
            for key in ("read", "converted", "rejected", "filtered", "rows", "eval_rows"):
                totals[key] += outcome.converted.counts.get(key, 0)
        for stage_name, n in outcome.stage_removed.items():
            totals[STAGE_COUNTER.get(stage_name, f"removed_by_{stage_name}")] += n
        totals["written"] += outcome.written
        totals["redacted"] += sum(outcome.stage_counts.get("redact", Counter()).values())
        totals["eval_written"] += outcome.eval_written
        totals[f"sources_{outcome.status}"] += 1
    sources = {o.source.id: source_entry(o) for o in outcomes}
    samples = sorted(o.source.id for o in outcomes if o.from_sample)
    for outcome in outcomes:  # per source: read from a mirror (--mirror, or offline samples) or the real files
        sources[outcome.source.id]["from_mirror"] = outcome.from_sample or (
            options.mirror is not None and outcome.source.host != "builtin")
    return {
        "tool": "medcorpus", "version": __version__, "config_hash": catalog.config_hash(**build_overrides(options)),
        "from_mirror": options.mirror is not None or bool(samples),
        "sample_sources": samples,
        "build": {**catalog.build.model_dump(mode="json"), "license_allow": sorted(options.license_allow),
                  "license_deny": sorted(options.license_deny), "license_profile": options.license_profile,
                  "tokenizer": options.tokenizer},
        "sources": sources,
        "splits": splits,
        "shards": [s.as_dict() for s in shards],
        "totals": dict(sorted(totals.items())),
    }


def build_overrides(options: BuildOptions) -> dict[str, Any]:
    """Command-line settings that change the output, for the config hash: two builds that differ in them
    must not share a hash. Unset ones are left out, so a plain build keeps the catalogue's hash."""
    overrides: dict[str, Any] = {}
    if options.license_allow:
        overrides["license_allow"] = sorted(options.license_allow)
    if options.license_deny:
        overrides["license_deny"] = sorted(options.license_deny)
    if options.license_profile != "all":
        overrides["license_profile"] = options.license_profile
    if options.tokenizer:
        overrides["tokenizer"] = options.tokenizer
    return overrides


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def output_files(staging: Path) -> dict[str, str]:
    """sha256 of every staged file that is not a shard (card, chart, reports), by path relative to OUT."""
    return {path.relative_to(staging).as_posix(): file_sha256(path)
            for path in sorted(staging.rglob("*")) if path.is_file() and path.suffix != ".parquet"}


def commit_output(staging: Path, out: Path, manifest: dict[str, Any], owned: set[str] = frozenset()) -> None:
    """Swap the staged output in. The old manifest goes first, the new one comes last, so a reader never
    sees a manifest that does not match the shards beside it. Only entries the previous build wrote (its
    manifest's `entries`) and the new ones are replaced; while no manifest is in place, a marker names
    them, so that a build interrupted here can still tell its own files from a user's."""
    new = set(manifest["entries"])
    replaced = sorted(new | set(owned))
    write_json_atomic(out / COMMIT_MARKER, {"tool": "medcorpus", "entries": replaced})
    (out / "manifest.json").unlink(missing_ok=True)
    for name in replaced:
        old = out / name
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        elif old.exists() or old.is_symlink():
            old.unlink()
        if name in new:
            os.replace(staging / name, old)
    checkpoint("commit")
    write_json_atomic(out / "manifest.json", manifest)
    (out / COMMIT_MARKER).unlink(missing_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(out / FAILED_BUILD, ignore_errors=True)  # an earlier failed build's result is now stale


def leave_aside(staging: Path, out: Path, manifest: dict[str, Any]) -> Path:
    """A build whose sources failed: keep OUT as it is and move the new result to OUT/.failed-build/."""
    side = out / FAILED_BUILD
    shutil.rmtree(side, ignore_errors=True)
    write_json_atomic(staging / "manifest.json", manifest)
    os.replace(staging, side)
    return side


def _write_card(staging: Path, manifest: dict[str, Any], reporter: Reporter) -> None:
    try:
        from etl.card import write_card
    except ImportError:
        reporter.warn("no dataset card writer installed; README.md not written")
        return
    write_card(staging, manifest)


def run_build(catalog: Catalog, options: BuildOptions, reporter: Reporter) -> BuildResult:
    """Build into `options.out`. When sources fail, the result replaces a previous output only with
    `keep_going`; otherwise it is left in OUT/.failed-build/ (BuildResult.left_in) and OUT stays as it was.
    With no previous output there is nothing to keep: the result (with its failures recorded) is OUT."""
    out = options.out
    sources = [_with_build_settings(s, catalog) for s in catalog.select(options.source_ids, options.tasks)]
    tally = TokenTally(load_counter(options.tokenizer))  # a tokenizer that cannot load fails before any work
    with OutputLock(out, reporter), make_engine(options.engine, options.workers, options.ray_address) as engine:
        previous, owned = previous_output(out)
        work_dir = out / ".work"
        staging = out / ".staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        outcomes = [SourceOutcome(s) for s in sources]
        for outcome in outcomes:
            reason = licence_exclusion(outcome.source, options)
            if reason and outcome.source.role == "eval":
                outcome.withheld = reason
                reporter.info(f"{outcome.source.id}: used for decontamination only, not written to `eval`: {reason}")
            elif reason:
                outcome.status, outcome.error = "skipped", reason
                reporter.info(f"{outcome.source.id}: left out: {reason}")
        plan_samples(catalog, outcomes, options, previous)
        fetch_and_convert(catalog, [o for o in outcomes if o.status == "ok"], options, work_dir, reporter, previous,
                          engine)
        for outcome in outcomes:
            if outcome.converted and outcome.converted.counts.get("filtered_by_reason", {}).get("no_persona_configured"):
                reporter.warn(f"{outcome.source.id}: skipped: set build.persona.name and build.persona.author "
                              "in the catalogue to generate identity data")
                outcome.status = "skipped"
        shards = run_tasks(catalog, outcomes, staging, work_dir, options, reporter, tally, engine)
        shards += write_eval(outcomes, staging, catalog.build, tally)
        shards += write_rejects(outcomes, staging, catalog.build.shard_max_bytes)
        manifest = make_manifest(catalog, outcomes, shards, options)
        manifest["tokens"] = tally.as_manifest()
        _write_card(staging, manifest, reporter)
        manifest["files"] = output_files(staging)
        manifest["entries"] = sorted(p.name for p in staging.iterdir())
        result = BuildResult(manifest, outcomes)
        foreign = sorted(n for n in manifest["entries"] if (out / n).exists() and n not in owned)
        if foreign:  # names no check could foresee (not in OUTPUT_ENTRIES): keep the user's, say where ours went
            side = leave_aside(staging, out, manifest)
            raise OutputRefusedError(f"{out} holds {', '.join(foreign)}, which no MedCorpus build wrote there; "
                                     f"the new output was left in {side}")
        if result.failed and previous is not None and not options.keep_going:
            result.left_in = leave_aside(staging, out, manifest)
        else:
            commit_output(staging, out, manifest, owned)
    return result
