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


def validate_output(out: Path, check_rows: bool = True) -> list[str]:
    """Every problem found, as a sentence; an empty list means the output is valid."""
    out = Path(out)
    manifest_path = out / "manifest.json"
    if not manifest_path.exists():
        return [f"{out}: no manifest.json (the build did not finish, or this is not an output folder)"]
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        return [f"manifest.json is not valid JSON: {exc}"]
    problems: list[str] = []
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
