"""The unified schemas: `schemas/*.json` (JSON Schema) are the single source of truth; Arrow schemas
and the row validator derive from them."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import fastjsonschema
import pyarrow as pa

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"

# Internal columns carried between stages and never written (see etl/stages/base.py).
INTERNAL_FIELDS = [pa.field("_row", pa.int64()), pa.field("_priority", pa.int32())]

REJECTS_SCHEMA = pa.schema([
    pa.field("source", pa.string()),
    pa.field("file", pa.string()),
    pa.field("location", pa.string()),
    pa.field("reason", pa.string()),
    pa.field("message", pa.string()),
    pa.field("raw", pa.string()),
])


@cache
def json_schema(task: str) -> dict[str, Any]:
    path = SCHEMA_DIR / f"{task}.json"
    if not path.exists():
        raise ValueError(f"no schema for task {task!r} ({path.name})")
    return json.loads(path.read_text(encoding="utf-8"))


def _resolve(spec: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Follow a local `$ref` (`#/$defs/name`); the schemas use no other kind."""
    ref = spec.get("$ref")
    if ref is None:
        return spec
    target: Any = root
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return target


def _kinds(spec: dict[str, Any]) -> tuple[str | None, bool]:
    """(the JSON type, whether null is allowed): `"type": ["string", "null"]` is a nullable string."""
    kind = spec.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        if len(kinds) != 1:
            raise ValueError(f"no Arrow type for a union of {kinds}")
        return kinds[0], "null" in kind
    return kind, False


def _arrow_type(spec: dict[str, Any], root: dict[str, Any]) -> pa.DataType:
    spec = _resolve(spec, root)
    kind, _ = _kinds(spec)
    if kind == "string":
        return pa.string()
    if kind == "number":
        return {"float32": pa.float32(), "float64": pa.float64()}[spec.get("x-arrow", "float64")]
    if kind == "integer":
        return {"int32": pa.int32(), "int64": pa.int64()}[spec.get("x-arrow", "int64")]
    if kind == "boolean":
        return pa.bool_()
    if kind == "array":
        return pa.list_(_arrow_type(spec["items"], root))
    if kind == "object":
        return pa.struct(_arrow_fields(spec, root))
    raise ValueError(f"no Arrow type for JSON Schema {spec!r}")


def _arrow_fields(spec: dict[str, Any], root: dict[str, Any]) -> list[pa.Field]:
    """An object's properties as Arrow fields, in property order. A field is nullable when the JSON Schema
    allows null or does not require it (e.g. a turn's `tool_calls`), so rows without it still load."""
    required = set(spec.get("required", ()))
    fields = []
    for name, sub in spec["properties"].items():
        _, nullable = _kinds(_resolve(sub, root))
        fields.append(pa.field(name, _arrow_type(sub, root), nullable=nullable or name not in required))
    return fields


TASK_COLUMNS = {"pretrain": ("text",), "sft": ("messages", "tools"), "reward": ("prompt", "chosen", "rejected", "tools")}


@cache
def arrow_schema(task: str) -> pa.Schema:
    """Columns in the JSON Schema's property order; only columns whose type allows null (`tools`) are
    nullable. `eval` is derived from the three task schemas (see eval_schema)."""
    if task == "eval":
        return eval_schema()
    schema = json_schema(task)
    return pa.schema(_arrow_fields(schema, schema))


def eval_schema() -> pa.Schema:
    """The `eval` config: eval-role rows of every task in one table. The common columns, `task` (which
    task's columns a row fills), then every task column, nullable (null where the row's task has none)."""
    common = [f for f in arrow_schema("pretrain") if f.name != "text"]
    task_fields: dict[str, pa.Field] = {}
    for task, columns in TASK_COLUMNS.items():
        for name in columns:
            task_fields.setdefault(name, arrow_schema(task).field(name).with_nullable(True))
    head = [f for f in common if f.name in ("id", "source", "split")]
    tail = [f for f in common if f.name not in ("id", "source", "split")]
    return pa.schema([*head, pa.field("task", pa.string(), nullable=False), *task_fields.values(), *tail])


def work_schema(task: str) -> pa.Schema:
    """The output schema plus the internal columns the cross-source stages use."""
    schema = arrow_schema(task)
    for field in INTERNAL_FIELDS:
        schema = schema.append(field)
    return schema


def _inline(spec: Any, root: dict[str, Any]) -> Any:
    """`spec` with every local `$ref` replaced by its target, so the validator never resolves a reference
    itself (fastjsonschema would try to fetch one it cannot place, over the network)."""
    if isinstance(spec, dict):
        return {key: _inline(value, root) for key, value in _resolve(spec, root).items() if key != "$defs"}
    if isinstance(spec, list):
        return [_inline(item, root) for item in spec]
    return spec


@cache
def _compiled(task: str) -> Any:
    schema = json_schema(task)
    return fastjsonschema.compile(_inline(schema, schema))


def schema_problem(task: str, row: dict[str, Any]) -> str | None:
    """The first structural problem of `row` against its task's JSON Schema, or None."""
    try:
        _compiled(task)(row)
    except fastjsonschema.JsonSchemaValueException as exc:
        return exc.message
    return None
