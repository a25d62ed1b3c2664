"""`medcorpus build`: fetch → convert (per source, cached) → cross-source stages (per task) → write.

The finished output replaces the previous one only at the end: shards, rejects, card and chart are
written into `OUT/.staging/`, moved into place, and `manifest.json` is written last. A reader that
finds a manifest finds exactly the shards it lists (with their sha256); `medcorpus validate` checks.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from etl import __version__
from etl.catalog import TASKS, Catalog, Source
from etl.conversion import Converted, convert_source
from etl.engines import Engine, make_engine
from etl.executor import TaskRun, scan_parquet
from etl.faults import checkpoint
from etl.fetch.base import FetchedSource, FetchError
from etl.read.base import SourceFileError
from etl.schemas import REJECTS_SCHEMA, arrow_schema
from etl.stages.pipeline import default_stages
from etl.stages.text import row_texts
from etl.ui import Reporter
from etl.write import Shard, ShardedWriter

SPLITS = ("train", "validation", "test")
OUTPUT_ENTRIES = (*TASKS, "rejects", "stats", "README.md")
STAGE_COUNTER = {"exact_dedup": "exact_dup", "near_dedup": "near_dup", "decontaminate": "decontaminated"}


class BuildLockedError(RuntimeError):
    pass


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
    engine: str = "local"                   # local | ray (etl/engines/)
    ray_address: str | None = None          # an existing Ray cluster; None starts a local one


def licence_categories(source: Source) -> set[str]:
    """A source's licence categories: its `license_terms`, or `permissive` when it states none."""
    return set(source.license_terms) or {"permissive"}


def licence_exclusion(source: Source, options: BuildOptions) -> str | None:
    """Why `--license-allow/--license-deny` leave this source out, or None. Eval sources are never
    left out: they are not redistributed, only used to find benchmark items in training data."""
    if source.role == "eval":
        return None
    categories = licence_categories(source)
    denied = sorted(categories & set(options.license_deny))
    if denied:
        return f"licence category {', '.join(denied)} is denied (--license-deny)"
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
    written: int = 0
    langs: Counter[str] = field(default_factory=Counter)


@dataclass
class BuildResult:
    manifest: dict[str, Any]
    outcomes: list[SourceOutcome]

    @property
    def failed(self) -> list[SourceOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


# --------------------------------------------------------------------------- lock


class OutputLock:
    """One build per output folder. A lock left by a dead process is taken over with a warning."""

    def __init__(self, out: Path, reporter: Reporter) -> None:
        self.path = out / ".medcorpus.lock"
        self.reporter = reporter

    def __enter__(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and _alive(holder):
                    raise BuildLockedError(
                        f"another build (pid {holder.get('pid')}) is writing to {self.path.parent}; "
                        f"wait for it, or remove {self.path.name} if you are sure it is gone") from None
                self.reporter.warn(f"taking over a stale lock left by pid {holder.get('pid') if holder else '?'}")
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(me)
            return self
        raise BuildLockedError(f"could not take the lock {self.path}")

    def _holder(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


def _alive(holder: dict[str, Any]) -> bool:
    if holder.get("host") != socket.gethostname():
        return True  # cannot check another machine's process: assume it is running
    try:
        os.kill(int(holder["pid"]), 0)
    except (ProcessLookupError, ValueError, KeyError, TypeError):
        return False
    except PermissionError:
        return True
    return True


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


def fetch_and_convert(catalog: Catalog, outcomes: list[SourceOutcome], options: BuildOptions, work_dir: Path,
                      reporter: Reporter, engine: Engine | None = None) -> None:
    fetched = _fetcher(options, catalog).fetch_many([o.source for o in outcomes], force=options.force_fetch)
    for outcome in outcomes:
        result = fetched[outcome.source.id]
        if isinstance(result, FetchError):
            outcome.status, outcome.error = "failed", str(result)
            reporter.warn(f"{outcome.source.id}: fetch failed: {result.message}")
        else:
            outcome.fetched = result
    todo = [o for o in outcomes if o.status == "ok"]
    reporter.phase("convert", len(todo))
    with _engine(engine, options) as run:
        results = run.map_units(convert_source, [(o.source, o.fetched, work_dir) for o in todo])
        for outcome, result in zip(todo, results, strict=True):
            _settle(outcome, result, reporter, work_dir)


def _engine(engine: Engine | None, options: BuildOptions) -> Any:
    """The build's engine, or (for a caller without one) a new one closed after use."""
    return contextlib.nullcontext(engine) if engine is not None else make_engine(
        options.engine, options.workers, options.ray_address)


def _settle(outcome: SourceOutcome, run: Any, reporter: Reporter, work_dir: Path) -> None:
    try:
        outcome.converted = run()
    except SourceFileError as exc:
        outcome.status, outcome.error = "failed", str(exc)
        reporter.warn(f"{outcome.source.id}: {exc}")
    except Exception as exc:  # noqa: BLE001 - one broken converter must not stop the other sources
        # ...but the build's own storage failing (disk full, no permission) is not the source's fault:
        # stop the whole build so the previous complete output is never replaced by a partial one.
        if isinstance(exc, OSError) and _inside(exc, work_dir):
            raise
        outcome.status, outcome.error = "failed", f"{type(exc).__name__}: {exc}"
        reporter.warn(f"{outcome.source.id}: conversion failed: {outcome.error}")
    reporter.advance("convert", outcome.source.id)


# --------------------------------------------------------------------------- cross-source stages


def _task_stream(parts: list[tuple[Converted, int]]) -> Any:
    """A re-startable stream of one task's rows in canonical order, with `_row` and `_priority`."""

    def stream(columns: list[str] | None) -> Iterator[pa.RecordBatch]:
        ordinal = 0
        for converted, priority in parts:
            for batch in scan_parquet([converted.rows_path]):
                n = batch.num_rows
                batch = pa.RecordBatch.from_arrays(
                    [*batch.columns, pa.array(range(ordinal, ordinal + n), pa.int64()), pa.repeat(pa.scalar(priority, pa.int32()), n)],
                    names=[*batch.schema.names, "_row", "_priority"])
                ordinal += n
                yield batch if columns is None else batch.select(columns)

    return stream


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
              options: BuildOptions, reporter: Reporter, engine: Engine | None = None) -> list[Shard]:
    with _engine(engine, options) as run_on:
        return _run_tasks(catalog, outcomes, staging, work_dir, reporter, run_on)


def _run_tasks(catalog: Catalog, outcomes: list[SourceOutcome], staging: Path, work_dir: Path,
               reporter: Reporter, engine: Engine) -> list[Shard]:
    build = catalog.build
    shards: list[Shard] = []
    by_id = {o.source.id: o for o in outcomes}
    for task in TASKS:
        parts = [(o.converted, o.source.priority) for o in outcomes
                 if o.converted is not None and o.source.task == task]
        if not parts:
            continue
        stages = default_stages(task, build)
        reporter.phase(f"{task}: stages", len(stages))
        run = TaskRun(task, stages, work_dir / "stages" / task, staging / "stats" / "reports" / task,
                      _eval_scan(outcomes), engine,
                      on_stage=lambda name, t=task: reporter.advance(f"{t}: stages", name))
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
                writers[split].write(batch.filter(mask))
        for split in SPLITS:
            if split in writers:
                shards.extend(writers[split].close())
        for stage_name, removed in run.removed.items():
            for source_id, n in removed.items():
                by_id[source_id].stage_removed[stage_name] += n
        for stage in stages:
            summary = stage.summary()
            if summary:
                (run.report_dir / f"{stage.name}.json").write_text(
                    json.dumps(summary, sort_keys=True, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
        reporter.advance(f"{task}: stages")
    return shards


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
    counts["written"] = outcome.written
    return {
        "name": source.name, "task": source.task, "role": source.role, "host": source.host,
        "license": source.license, "license_terms": list(source.license_terms),
        "homepage": source.homepage, "citation": source.citation,
        # the commit the files were read at (a branch in the catalogue is recorded as what it resolved to)
        "revision": (outcome.fetched.revision if outcome.fetched else None) or source.revision,
        "lang": source.lang, "priority": source.priority,
        "status": outcome.status, "error": outcome.error,
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
        totals[f"sources_{outcome.status}"] += 1
    return {
        "tool": "medcorpus", "version": __version__, "config_hash": catalog.config_hash(),
        "from_mirror": options.mirror is not None,
        "build": {**catalog.build.model_dump(mode="json"), "license_allow": sorted(options.license_allow),
                  "license_deny": sorted(options.license_deny)},
        "sources": {o.source.id: source_entry(o) for o in outcomes},
        "splits": splits,
        "shards": [s.as_dict() for s in shards],
        "totals": dict(sorted(totals.items())),
    }


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def commit_output(staging: Path, out: Path, manifest: dict[str, Any]) -> None:
    """Swap the staged output in. The old manifest goes first, the new one comes last, so a reader never
    sees a manifest that does not match the shards beside it."""
    (out / "manifest.json").unlink(missing_ok=True)
    for name in OUTPUT_ENTRIES:
        old = out / name
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
        if (staging / name).exists():
            os.replace(staging / name, old)
    checkpoint("commit")
    write_json_atomic(out / "manifest.json", manifest)
    shutil.rmtree(staging, ignore_errors=True)


def _write_card(staging: Path, manifest: dict[str, Any], reporter: Reporter) -> None:
    try:
        from etl.card import write_card
    except ImportError:
        reporter.warn("no dataset card writer installed; README.md not written")
        return
    write_card(staging, manifest)


def run_build(catalog: Catalog, options: BuildOptions, reporter: Reporter) -> BuildResult:
    out = options.out
    sources = [_with_build_settings(s, catalog) for s in catalog.select(options.source_ids, options.tasks)]
    with OutputLock(out, reporter), make_engine(options.engine, options.workers, options.ray_address) as engine:
        work_dir = out / ".work"
        staging = out / ".staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        outcomes = [SourceOutcome(s) for s in sources]
        for outcome in outcomes:
            reason = licence_exclusion(outcome.source, options)
            if reason:
                outcome.status, outcome.error = "skipped", reason
                reporter.info(f"{outcome.source.id}: left out: {reason}")
        fetch_and_convert(catalog, [o for o in outcomes if o.status == "ok"], options, work_dir, reporter, engine)
        for outcome in outcomes:
            if outcome.converted and outcome.converted.counts.get("filtered_by_reason", {}).get("no_persona_configured"):
                reporter.warn(f"{outcome.source.id}: skipped: set build.persona.name and build.persona.author "
                              "in the catalogue to generate identity data")
                outcome.status = "skipped"
        shards = run_tasks(catalog, outcomes, staging, work_dir, options, reporter, engine)
        shards += write_rejects(outcomes, staging, catalog.build.shard_max_bytes)
        manifest = make_manifest(catalog, outcomes, shards, options)
        _write_card(staging, manifest, reporter)
        commit_output(staging, out, manifest)
    return BuildResult(manifest, outcomes)
