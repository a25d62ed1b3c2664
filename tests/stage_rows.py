"""Small tables in the shape the cross-source stages receive, for the stage tests."""

from __future__ import annotations

import pyarrow as pa

TURN = pa.struct([("role", pa.string()), ("content", pa.string())])


def common(ids: list[str], sources: list[str], priorities: list[int]) -> dict[str, pa.Array]:
    n = len(ids)
    return {
        "id": pa.array(ids), "source": pa.array(sources), "split": pa.array(["train"] * n),
        "lang": pa.array(["und"] * n), "lang_score": pa.array([0.0] * n, type=pa.float32()),
        "license": pa.array(["mit"] * n), "dup_count": pa.array([1] * n, type=pa.int32()),
        "meta": pa.array(["{}"] * n), "_row": pa.array(range(n), type=pa.int64()),
        "_priority": pa.array(priorities, type=pa.int32()),
    }


def pretrain(texts: list[str], sources: list[str] | None = None, priorities: list[int] | None = None,
             ids: list[str] | None = None) -> pa.Table:
    n = len(texts)
    sources = sources or ["src"] * n
    ids = ids or [f"{s}/{i:04d}" for i, s in enumerate(sources)]
    return pa.table({"text": pa.array(texts), **common(ids, sources, priorities or [50] * n)})


def sft(conversations: list[list[tuple[str, str]]], sources: list[str] | None = None) -> pa.Table:
    n = len(conversations)
    sources = sources or ["src"] * n
    messages = pa.array([[{"role": r, "content": c} for r, c in conv] for conv in conversations],
                        type=pa.list_(TURN))
    return pa.table({"messages": messages, **common([f"{s}/{i}" for i, s in enumerate(sources)], sources, [50] * n)})
