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


def _arrow_type(spec: dict[str, Any]) -> pa.DataType:
    kind = spec.get("type")
    if kind == "string":
        return pa.string()
    if kind == "number":
        return {"float32": pa.float32(), "float64": pa.float64()}[spec.get("x-arrow", "float64")]
    if kind == "integer":
        return {"int32": pa.int32(), "int64": pa.int64()}[spec.get("x-arrow", "int64")]
    if kind == "boolean":
        return pa.bool_()
    if kind == "array":
        return pa.list_(_arrow_type(spec["items"]))
    if kind == "object":
        return pa.struct([pa.field(name, _arrow_type(sub), nullable=False) for name, sub in spec["properties"].items()])
    raise ValueError(f"no Arrow type for JSON Schema {spec!r}")


@cache
def arrow_schema(task: str) -> pa.Schema:
    """Columns in the JSON Schema's property order; every column is required, so none is nullable."""
    props = json_schema(task)["properties"]
    return pa.schema([pa.field(name, _arrow_type(spec), nullable=False) for name, spec in props.items()])


def work_schema(task: str) -> pa.Schema:
    """The output schema plus the internal columns the cross-source stages use."""
    schema = arrow_schema(task)
    for field in INTERNAL_FIELDS:
        schema = schema.append(field)
    return schema


@cache
def _compiled(task: str) -> Any:
    return fastjsonschema.compile(json_schema(task))


def schema_problem(task: str, row: dict[str, Any]) -> str | None:
    """The first structural problem of `row` against its task's JSON Schema, or None."""
    try:
        _compiled(task)(row)
    except fastjsonschema.JsonSchemaValueException as exc:
        return exc.message
    return None
