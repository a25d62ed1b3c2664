"""Run a real `medcorpus build` over hand-made bad files: a tmp mirror `<mirror>/<source_id>/<file>`, a tmp
catalogue naming them, `etl.cli.main(["build", ...])`, and the outcome read back from `out/manifest.json` and
`out/rejects/*.parquet`. Every build also holds one well-formed source (`good_qa`) so a test can check that
the other sources of the same build finish.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

from etl.cli import main

GOOD_ID = "good_qa"
GOOD_FILE = "good.jsonl"
GOOD_LINES = ('{"query": "胃疼怎么办", "response": "少食多餐，按时吃饭。"}',
              '{"query": "What helps a sore throat?", "response": "Warm fluids and rest."}')
REVISION = "0" * 40


def entry(source_id: str, file: str, fmt: str, task: str = "sft", **extra: Any) -> dict[str, Any]:
    """A catalogue entry for `<mirror>/<source_id>/<file>` (a GitHub source, read from the mirror)."""
    return {"id": source_id, "name": source_id, "host": "github", "repo": "example/data", "revision": REVISION,
            "files": [file], "task": task, "format": fmt, "license": "MIT", **extra}


def good_entry() -> dict[str, Any]:
    return entry(GOOD_ID, GOOD_FILE, "query_response")


def plain_turns(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with the null `tool_calls` of plain turns left out."""
    return {key: [{k: v for k, v in turn.items() if not (k == "tool_calls" and v is None)} for turn in value]
            if key in ("messages", "prompt", "chosen", "rejected") else value for key, value in row.items()}


@dataclass
class BuildRun:
    code: int
    out: Path
    stderr: str
    manifest: dict[str, Any] | None

    def source(self, source_id: str) -> dict[str, Any]:
        assert self.manifest is not None, f"no manifest (exit {self.code}): {self.stderr}"
        return self.manifest["sources"][source_id]

    def counts(self, source_id: str) -> dict[str, Any]:
        return self.source(source_id)["counts"]

    def rejects(self, source_id: str | None = None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for path in sorted((self.out / "rejects").glob("*.parquet")):
            rows += pq.read_table(path).to_pylist()
        return [r for r in rows if source_id is None or r["source"] == source_id]

    def rows(self, task: str, source_id: str | None = None) -> list[dict[str, Any]]:
        """Output rows; turns without tool calls read back as `{role, content}` (Parquet stores a null
        `tool_calls` in them, which TRL's trainers drop the same way)."""
        rows: list[dict[str, Any]] = []
        for path in sorted((self.out / task).glob("*.parquet")):
            rows += [plain_turns(row) for row in pq.read_table(path).to_pylist()]
        return [r for r in rows if source_id is None or r["source"] == source_id]

    def assert_balanced(self, source_id: str) -> None:
        """read = converted + rejected + filtered, and every rejected record has its row in rejects/."""
        c = self.counts(source_id)
        assert c["read"] == c["converted"] + c["rejected"] + c["filtered"], c
        assert sum(c["rejected_by_reason"].values()) == c["rejected"], c
        assert sum(c["filtered_by_reason"].values()) == c["filtered"], c
        assert len(self.rejects(source_id)) == c["rejected"] + c.get("partial_rejects", 0), c

    def assert_good_source_finished(self) -> None:
        good = self.source(GOOD_ID)
        assert good["status"] == "ok" and good["error"] is None, good
        assert good["counts"]["read"] == 2 and good["counts"]["written"] == 2, good["counts"]


def write_catalog(path: Path, sources: list[dict[str, Any]], build: dict[str, Any] | None = None) -> Path:
    doc = {"build": build or {"shard_max_bytes": "256MB"}, "sources": sources}
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def run_build(root: Path, sources: list[dict[str, Any]], files: dict[str, dict[str, bytes]],
              build: dict[str, Any] | None = None, with_good: bool = True, extra_args: tuple[str, ...] = ()) -> BuildRun:
    """Write the mirror and catalogue under `root` and run `medcorpus build`; stderr is captured."""
    mirror = root / "mirror"
    all_files = dict(files)
    all_sources = list(sources)
    if with_good:
        all_files[GOOD_ID] = {GOOD_FILE: ("\n".join(GOOD_LINES) + "\n").encode()}
        all_sources.append(good_entry())
    for source_id, members in all_files.items():
        for name, data in members.items():
            path = mirror / source_id / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    catalog = write_catalog(root / "sources.yaml", all_sources, build)
    out = root / "out"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["build", "--catalog", str(catalog), "--mirror", str(mirror), "--out", str(out), *extra_args])
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.exists() else None
    return BuildRun(code, out, err.getvalue(), manifest)


def run_catalog(root: Path, text: str) -> tuple[int, str]:
    """`medcorpus build` on a catalogue given as text (for catalogue errors): exit code and stderr."""
    catalog = root / "sources.yaml"
    catalog.write_text(text, encoding="utf-8")
    (root / "mirror").mkdir(exist_ok=True)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["build", "--catalog", str(catalog), "--mirror", str(root / "mirror"), "--out", str(root / "out")])
    return code, err.getvalue()


def jsonl(*records: Any) -> bytes:
    return ("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n").encode("utf-8")


# Catalogue text for the catalogue-error cases (exit 2) of the bad-input matrices.
_GOOD = ("  - {id: good_qa, name: Good, host: github, repo: o/r, revision: main, files: [good.jsonl], "
         "task: sft, format: query_response, license: MIT}\n")
_HEAD = "build: {shard_max_bytes: 256MB}\nsources:\n" + _GOOD


def _src(source_id: str, **over: str) -> str:
    keys = {"id": source_id, "name": "X", "host": "github", "repo": "o/r", "revision": "main", "files": "[a.json]",
            "task": "sft", "format": "alpaca", "license": "MIT", **over}
    return "  - {" + ", ".join(f"{k}: {v}" for k, v in keys.items()) + "}\n"
