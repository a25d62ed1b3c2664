"""Trainer-ready exports of an output folder. One format so far: LLaMA-Factory.

`export_llamafactory(out, dest)` writes JSON Lines files under `dest/<prefix>/` and registers them in
`dest/dataset_info.json` (merged into an existing one, so `dest` may be LLaMA-Factory's own `data/`
folder). Per LLaMA-Factory's documented dataset formats (data/README.md of hiyouga/LLaMA-Factory):

- pretrain -> alpaca-style `{"text"}` with `columns: {prompt: text}` (plain text, no response);
- sft, single turn (optional system, one user, one assistant) -> alpaca `instruction/input/output/system`;
- sft, multi turn -> sharegpt `conversations` of `{from, value}` with explicit role tags and a `system`
  column;
- reward -> sharegpt with `ranking: true`: `conversations` (the prompt, ending with a user turn) plus
  `chosen` / `rejected` as `{from: gpt, value}`.

Each split of the corpus gets its own entry: `<prefix>_sft_alpaca` is train, `<prefix>_sft_alpaca_validation`
the validation split (for `eval_dataset`). Every record keeps the corpus `id`; LLaMA-Factory ignores it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyarrow.parquet as pq

from etl.card import SPLITS, TASKS

ROLE_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
             "system_tag": "system"}
SHAREGPT_ROLE = {"user": ROLE_TAGS["user_tag"], "assistant": ROLE_TAGS["assistant_tag"]}

# The dataset_info.json description of each kind of file (LLaMA-Factory's `DatasetAttr` fields).
ENTRY_SPECS: dict[str, dict[str, Any]] = {
    "pretrain": {"columns": {"prompt": "text"}},
    "sft_alpaca": {"formatting": "alpaca",
                   "columns": {"prompt": "instruction", "query": "input", "response": "output", "system": "system"}},
    "sft_sharegpt": {"formatting": "sharegpt", "columns": {"messages": "conversations", "system": "system"},
                     "tags": ROLE_TAGS},
    "reward": {"formatting": "sharegpt", "ranking": True,
               "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected",
                           "system": "system"},
               "tags": ROLE_TAGS},
}


class ExportError(RuntimeError):
    """The output cannot be exported; the message says why."""


@dataclass
class _Sink:
    """One JSON Lines file being written (to a temp name until the export finishes)."""

    path: Path
    handle: IO[str] | None = None
    rows: int = 0
    tmp: Path = field(init=False)

    def __post_init__(self) -> None:
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")

    def write(self, record: dict[str, Any]) -> None:
        if self.handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.handle = open(self.tmp, "w", encoding="utf-8", newline="\n")  # noqa: SIM115 - closed in finish()
        self.handle.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        self.rows += 1

    def finish(self) -> None:
        if self.handle is not None:
            self.handle.close()
            os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.tmp.unlink(missing_ok=True)


def split_system(messages: list[dict[str, str]]) -> tuple[str, list[dict[str, str]]]:
    """(leading system prompt or "", the remaining turns)."""
    if messages and messages[0]["role"] == "system":
        return messages[0]["content"], messages[1:]
    return "", messages


def _sharegpt(turns: list[dict[str, str]], row_id: str) -> list[dict[str, str]]:
    try:
        return [{"from": SHAREGPT_ROLE[t["role"]], "value": t["content"]} for t in turns]
    except KeyError as exc:
        raise ExportError(f"{row_id}: role {exc.args[0]!r} has no LLaMA-Factory tag (expected user/assistant "
                          "after an optional leading system turn)") from None


def to_llamafactory(task: str, row: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(entry kind, LLaMA-Factory record) of one corpus row."""
    if task == "pretrain":
        return "pretrain", {"text": row["text"], "id": row["id"]}
    if task == "sft":
        system, turns = split_system(row["messages"])
        if [t["role"] for t in turns] == ["user", "assistant"]:
            return "sft_alpaca", {"instruction": turns[0]["content"], "input": "", "output": turns[1]["content"],
                                  "system": system, "id": row["id"]}
        return "sft_sharegpt", {"conversations": _sharegpt(turns, row["id"]), "system": system, "id": row["id"]}
    if task == "reward":
        system, turns = split_system(row["prompt"])
        return "reward", {"conversations": _sharegpt(turns, row["id"]),
                          "chosen": {"from": ROLE_TAGS["assistant_tag"], "value": row["chosen"]},
                          "rejected": {"from": ROLE_TAGS["assistant_tag"], "value": row["rejected"]},
                          "system": system, "id": row["id"]}
    raise ExportError(f"unknown task {task!r}")


def entry_name(prefix: str, kind: str, split: str) -> str:
    return f"{prefix}_{kind}" if split == "train" else f"{prefix}_{kind}_{split}"


@dataclass(frozen=True)
class ExportEntry:
    """One dataset_info.json entry written by an export."""

    name: str
    kind: str        # a key of ENTRY_SPECS
    split: str
    file_name: str   # relative to the export folder (LLaMA-Factory's dataset_dir)
    rows: int


def export_llamafactory(out_dir: Path, dest: Path, prefix: str = "medcorpus") -> list[ExportEntry]:
    """Export `out_dir` to `dest`; return the entries written (only kinds and splits that have rows)."""
    from etl.validate import validate_output

    out_dir, dest = Path(out_dir), Path(dest)
    problems = validate_output(out_dir, check_rows=False)
    if problems:
        raise ExportError(f"{out_dir} is not a valid output:\n" + "\n".join(f"  - {p}" for p in problems))
    manifest = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
    sinks: dict[tuple[str, str], _Sink] = {}
    shards = sorted((s for s in manifest["shards"] if s["task"] in TASKS),
                    key=lambda s: (TASKS.index(s["task"]), SPLITS.index(s["split"]), s["path"]))
    try:
        for shard in shards:
            for batch in pq.ParquetFile(out_dir / shard["path"]).iter_batches(batch_size=10_000):
                for row in batch.to_pylist():
                    kind, record = to_llamafactory(shard["task"], row)
                    key = (kind, shard["split"])
                    if key not in sinks:
                        sinks[key] = _Sink(dest / prefix / f"{entry_name(prefix, *key)}.jsonl")
                    sinks[key].write(record)
    except BaseException:
        for sink in sinks.values():
            sink.abort()
        raise
    for sink in sinks.values():
        sink.finish()
    kinds = list(ENTRY_SPECS)
    entries = [ExportEntry(entry_name(prefix, kind, split), kind, split,
                           f"{prefix}/{entry_name(prefix, kind, split)}.jsonl", sinks[kind, split].rows)
               for kind, split in sorted(sinks, key=lambda k: (kinds.index(k[0]), SPLITS.index(k[1])))]
    info_path = dest / "dataset_info.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
    info = {k: v for k, v in info.items() if not k.startswith(f"{prefix}_")}
    for entry in entries:
        info[entry.name] = {"file_name": entry.file_name, **ENTRY_SPECS[entry.kind]}
    tmp = info_path.with_name(f".{info_path.name}.tmp")
    tmp.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, info_path)
    return entries


def training_snippet(dataset_dir: str, entries: list[ExportEntry]) -> str:
    """The dataset lines of a LLaMA-Factory training config, one block per stage the export feeds."""
    blocks = []
    for stage, kinds in (("pt", ("pretrain",)), ("sft", ("sft_alpaca", "sft_sharegpt")), ("dpo", ("reward",))):
        train = [e.name for e in entries if e.kind in kinds and e.split == "train"]
        if not train:
            continue
        evals = [e.name for e in entries if e.kind in kinds and e.split == "validation"]
        lines = [f"# stage {stage}", f"stage: {stage}", f"dataset_dir: {dataset_dir}", f"dataset: {','.join(train)}"]
        if evals:
            lines.append(f"eval_dataset: {','.join(evals)}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
