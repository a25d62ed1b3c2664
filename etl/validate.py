"""`medcorpus validate OUT`: the output is exactly what its manifest says, and every row fits its schema."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from etl.catalog import TASKS
from etl.schemas import REJECTS_SCHEMA, arrow_schema, schema_problem
from etl.write import file_sha256

MAX_ROW_PROBLEMS = 20


def _card_configs(out: Path) -> list[dict]:
    card = out / "README.md"
    if not card.exists():
        return []
    text = card.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return []
    header = text.split("---", 2)[1]
    return (yaml.safe_load(header) or {}).get("configs", [])


def validate_output(out: Path, check_rows: bool = True, allow_partial: bool = False) -> list[str]:
    """Every problem found, as a sentence; an empty list means the output is valid. An output whose
    manifest records failed sources is a problem unless `allow_partial` (a `--keep-going` build)."""
    out = Path(out)
    manifest_path = out / "manifest.json"
    if not manifest_path.exists():
        return [f"{out}: no manifest.json (the build did not finish, or this is not an output folder)"]
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        return [f"manifest.json is not valid JSON: {exc}"]
    problems: list[str] = _build_problems(manifest, allow_partial)
    problems += _file_problems(out, manifest)
    listed = {shard["path"] for shard in manifest.get("shards", [])}
    on_disk = {p.relative_to(out).as_posix() for p in out.glob("*/*.parquet") if not p.parent.name.startswith(".")}
    for extra in sorted(on_disk - listed):
        problems.append(f"{extra}: a shard on disk that the manifest does not list (from another build?)")
    for shard in manifest.get("shards", []):
        path = out / shard["path"]
        if not path.exists():
            problems.append(f"{shard['path']}: listed in the manifest but missing")
            continue
        if file_sha256(path) != shard["sha256"]:
            problems.append(f"{shard['path']}: sha256 differs from the manifest (changed or half-written)")
            continue
        parquet = pq.ParquetFile(path)
        if parquet.metadata.num_rows != shard["rows"]:
            problems.append(f"{shard['path']}: {parquet.metadata.num_rows} rows, manifest says {shard['rows']}")
        task = shard["task"]
        expected = REJECTS_SCHEMA if task == "rejects" else arrow_schema(task)
        if not parquet.schema_arrow.equals(expected):
            problems.append(f"{shard['path']}: columns differ from schemas/{task}.json")
            continue
        if check_rows and task in TASKS:
            problems.extend(_check_rows(shard["path"], parquet, task))
    configs = {c.get("config_name") for c in _card_configs(out)}
    for task, splits in manifest.get("splits", {}).items():
        if any(s.get("rows") for s in splits.values()) and task not in configs:
            problems.append(f"README.md: no `configs:` entry for {task}, so load_dataset(out, {task!r}) fails")
    return problems


def _build_problems(manifest: dict, allow_partial: bool) -> list[str]:
    """A build that lost sources, or wrote nothing, is not a corpus to train on or publish."""
    problems = []
    failed = sorted(sid for sid, e in manifest.get("sources", {}).items() if e.get("status") == "failed")
    if failed and not allow_partial:
        problems.append(f"manifest.json: {len(failed)} source(s) failed in the build that wrote this output "
                        f"({', '.join(failed)}); rebuild, or pass --allow-partial to accept a partial corpus")
    rows = sum(s.get("rows", 0) for splits in manifest.get("splits", {}).values() for s in splits.values())
    if not rows:
        problems.append("manifest.json: the output has no rows (every source failed, was skipped or was empty)")
    return problems


def _file_problems(out: Path, manifest: dict) -> list[str]:
    """The card, chart and reports are exactly what the build wrote (`files` in the manifest)."""
    if "files" not in manifest:
        return ["manifest.json: no `files` checksums (written by an older MedCorpus); rebuild to cover "
                "README.md and stats/ by checksums"]
    problems = []
    for rel, digest in sorted(manifest["files"].items()):
        path = out / rel
        if not path.is_file():
            problems.append(f"{rel}: listed in the manifest but missing")
        elif file_sha256(path) != digest:
            problems.append(f"{rel}: sha256 differs from the manifest (edited after the build)")
    extra = [p.relative_to(out).as_posix() for p in sorted((out / "stats").rglob("*")) if p.is_file()]
    problems += [f"{rel}: a file the manifest does not list (added after the build)"
                 for rel in extra if rel not in manifest["files"]]
    return problems


def _check_rows(name: str, parquet: pq.ParquetFile, task: str) -> list[str]:
    problems: list[str] = []
    ids: set[str] = set()
    for batch in parquet.iter_batches(batch_size=10_000):
        for row in batch.to_pylist():
            problem = schema_problem(task, row)
            if problem is None and row["id"] in ids:
                problem = "duplicate id"
            ids.add(row["id"])
            if problem:
                problems.append(f"{name}: row {row['id']}: {problem}")
                if len(problems) >= MAX_ROW_PROBLEMS:
                    return problems
    return problems
