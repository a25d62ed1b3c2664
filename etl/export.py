"""Trainer-ready exports of an output folder. One format so far: LLaMA-Factory.

`export_llamafactory(out, dest)` writes JSON Lines files under `dest/<prefix>/` and registers them in
`dest/dataset_info.json` (merged into an existing one, so `dest` may be LLaMA-Factory's own `data/`
folder). Per LLaMA-Factory's documented dataset formats (data/README.md of hiyouga/LLaMA-Factory):

- pretrain -> alpaca-style `{"text"}` with `columns: {prompt: text}` (plain text, no response);
- sft, single turn (optional system, one user, one assistant) -> alpaca `instruction/input/output/system`;
- sft, multi turn or with tools -> sharegpt `conversations` of `{from, value}` with explicit role tags, a
  `system` and a `tools` column: an assistant turn with tool calls becomes a `function_call` turn (value: the
  call `{"name", "arguments"}` as JSON, a JSON list for parallel calls), tool results an `observation` turn
  (adjacent results joined by a newline: LLaMA-Factory alternates strictly), `tools` the JSON list of
  schemas ("" for a plain row);
- reward -> sharegpt with `ranking: true`: `conversations` (the prompt, ending with a user or observation
  turn) plus `chosen` / `rejected` as one `{from: gpt | function_call, value}` message each.

Each split of the corpus gets its own entry: `<prefix>_sft_alpaca` is train, `<prefix>_sft_alpaca_validation`
the validation split (for `eval_dataset`). The `eval` config (benchmarks) is exported too, by each row's
task: `<prefix>_eval_sft_alpaca`, `<prefix>_eval_reward`, …. Every record keeps the corpus `id`;
LLaMA-Factory ignores it.
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
             "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}
SHAREGPT_ROLE = {"user": ROLE_TAGS["user_tag"], "assistant": ROLE_TAGS["assistant_tag"],
                 "tool": ROLE_TAGS["observation_tag"]}

# The dataset_info.json description of each kind of file (LLaMA-Factory's `DatasetAttr` fields).
ENTRY_SPECS: dict[str, dict[str, Any]] = {
    "pretrain": {"columns": {"prompt": "text"}},
    "sft_alpaca": {"formatting": "alpaca",
                   "columns": {"prompt": "instruction", "query": "input", "response": "output", "system": "system"}},
    "sft_sharegpt": {"formatting": "sharegpt",
                     "columns": {"messages": "conversations", "system": "system", "tools": "tools"},
                     "tags": ROLE_TAGS},
    "reward": {"formatting": "sharegpt", "ranking": True,
               "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected",
                           "system": "system", "tools": "tools"},
               "tags": ROLE_TAGS},
}
EVAL_PREFIX = "eval_"   # kinds of the `eval` config: eval_sft_alpaca, eval_reward, ... (same specs)


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


def _call_value(turn: dict[str, Any]) -> str:
    """A tool-calling turn as LLaMA-Factory's function_call value: `{"name", "arguments"}`, a list when
    several calls are made at once; arguments decoded back to an object."""
    calls = [{"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"] or "{}")}
             for c in turn["tool_calls"]]
    return json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)


def _sharegpt_turn(turn: dict[str, Any], row_id: str) -> dict[str, str]:
    if turn.get("tool_calls"):
        if turn["content"].strip():
            raise ExportError(f"{row_id}: an assistant turn holds both text and tool calls; LLaMA-Factory's "
                              "sharegpt has no such turn")
        return {"from": ROLE_TAGS["function_tag"], "value": _call_value(turn)}
    try:
        return {"from": SHAREGPT_ROLE[turn["role"]], "value": turn["content"]}
    except KeyError as exc:
        raise ExportError(f"{row_id}: role {exc.args[0]!r} has no LLaMA-Factory tag (expected user/assistant/tool "
                          "after an optional leading system turn)") from None


def _sharegpt(turns: list[dict[str, Any]], row_id: str) -> list[dict[str, str]]:
    result: list[dict[str, str]] = []
    for turn in turns:
        converted = _sharegpt_turn(turn, row_id)
        if result and converted["from"] == ROLE_TAGS["observation_tag"] == result[-1]["from"]:
            result[-1] = {**result[-1], "value": f"{result[-1]['value']}\n{converted['value']}"}
        else:
            result.append(converted)
    return result


def _is_plain_pair(turns: list[dict[str, Any]]) -> bool:
    return [t["role"] for t in turns] == ["user", "assistant"] and not turns[1].get("tool_calls")


def to_llamafactory(task: str, row: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(entry kind, LLaMA-Factory record) of one corpus row; rows of the `eval` config by their `task`."""
    if task == "eval":
        kind, record = to_llamafactory(row["task"], row)
        return f"{EVAL_PREFIX}{kind}", record
    if task == "pretrain":
        return "pretrain", {"text": row["text"], "id": row["id"]}
    if task == "sft":
        system, turns = split_system(row["messages"])
        if _is_plain_pair(turns) and not row.get("tools"):
            return "sft_alpaca", {"instruction": turns[0]["content"], "input": "", "output": turns[1]["content"],
                                  "system": system, "id": row["id"]}
        return "sft_sharegpt", {"conversations": _sharegpt(turns, row["id"]), "system": system,
                                "tools": row.get("tools") or "", "id": row["id"]}
    if task == "reward":
        system, turns = split_system(row["prompt"])
        return "reward", {"conversations": _sharegpt(turns, row["id"]),
                          "chosen": _sharegpt_turn(row["chosen"][0], row["id"]),
                          "rejected": _sharegpt_turn(row["rejected"][0], row["id"]),
                          "system": system, "tools": row.get("tools") or "", "id": row["id"]}
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
    configs = (*TASKS, "eval")
    shards = sorted((s for s in manifest["shards"] if s["task"] in configs),
                    key=lambda s: (configs.index(s["task"]), SPLITS.index(s["split"]), s["path"]))
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
    kinds = [*ENTRY_SPECS, *(f"{EVAL_PREFIX}{k}" for k in ENTRY_SPECS)]
    entries = [ExportEntry(entry_name(prefix, kind, split), kind, split,
                           f"{prefix}/{entry_name(prefix, kind, split)}.jsonl", sinks[kind, split].rows)
               for kind, split in sorted(sinks, key=lambda k: (kinds.index(k[0]), SPLITS.index(k[1])))]
    info_path = dest / "dataset_info.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
    info = {k: v for k, v in info.items() if not k.startswith(f"{prefix}_")}
    for entry in entries:
        info[entry.name] = {"file_name": entry.file_name, **ENTRY_SPECS[entry.kind.removeprefix(EVAL_PREFIX)]}
    tmp = info_path.with_name(f".{info_path.name}.tmp")
    tmp.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, info_path)
    return entries


def training_snippet(dataset_dir: str, entries: list[ExportEntry]) -> str:
    """The dataset lines of a LLaMA-Factory training config, one block per stage the export feeds. The
    `eval_dataset` is the held-out split (validation, else test) of the same kinds; the benchmarks of the
    `eval` config are listed as a comment, to evaluate on separately."""
    blocks = []
    for stage, kinds in (("pt", ("pretrain",)), ("sft", ("sft_alpaca", "sft_sharegpt")), ("dpo", ("reward",))):
        train = [e.name for e in entries if e.kind in kinds and e.split == "train"]
        if not train:
            continue
        lines = [f"# stage {stage}", f"stage: {stage}", f"dataset_dir: {dataset_dir}", f"dataset: {','.join(train)}"]
        for split in ("validation", "test"):
            held_out = [e.name for e in entries if e.kind in kinds and e.split == split]
            if held_out:
                lines.append(f"eval_dataset: {','.join(held_out)}  # the {split} split")
                break
        benchmarks = [e.name for e in entries if e.kind.removeprefix(EVAL_PREFIX) in kinds
                      and e.kind.startswith(EVAL_PREFIX)]
        if benchmarks:
            lines.append(f"# benchmarks (the eval config, never trained on): {','.join(benchmarks)}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
