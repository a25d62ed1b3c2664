"""Publish an output folder to the Hugging Face Hub as a dataset repo.

What is uploaded is exactly what the manifest names: every shard (rejects included), `manifest.json`,
the card (`README.md`) and its chart; build scratch (`.work/`, `.staging/`, locks) never leaves the
machine. Before anything is sent the output must pass `validate_output` and its licences must allow
redistribution (policy below). The token comes from `HF_TOKEN` or the library's stored login and is
only ever handed to `huggingface_hub`; `HF_ENDPOINT` is read at call time, so mirrors work.

Licence policy: sources whose `license_terms` include `no-redistribution` or `copyrighted` (all
rights reserved: nobody granted a right to redistribute) block publishing unless `--license-allow`
names each of them. `non-commercial`, `academic-only` and `unclear` sources are published: their
licences permit sharing, and the card warns about them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etl.card import CHART_PATH, CONFIGS, included_sources, redistributed_sources, split_rows

BLOCKING_TERMS = ("no-redistribution", "copyrighted")
# Above either bound the upload goes through `upload_folder`, which the library streams and splits
# into several resumable commits; below it, one commit holds everything.
LARGE_FOLDER_BYTES = 5 * 1024**3
LARGE_FOLDER_FILES = 100


class PublishError(RuntimeError):
    """Publishing refused or impossible; the message says why and what to do."""


@dataclass(frozen=True)
class UploadFile:
    path: str      # path in the repo, POSIX
    size: int


def load_manifest(out_dir: Path) -> dict[str, Any]:
    path = Path(out_dir) / "manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PublishError(f"{out_dir}: no manifest.json; build the corpus first (medcorpus build)") from None
    except ValueError as exc:
        raise PublishError(f"{out_dir}/manifest.json is not valid JSON: {exc}") from None


def upload_plan(out_dir: Path, manifest: dict[str, Any]) -> list[UploadFile]:
    """The files to upload, in a fixed order: card, chart, manifest, then shards as the manifest lists them."""
    out_dir = Path(out_dir)
    paths = ["README.md", CHART_PATH, "manifest.json"] + [s["path"] for s in manifest.get("shards", [])]
    return [UploadFile(p, (out_dir / p).stat().st_size if (out_dir / p).exists() else 0) for p in paths]


def output_problems(out_dir: Path) -> list[str]:
    """Why the folder may not be published as it is: `validate_output` plus the card and chart exist."""
    from etl.validate import validate_output

    out_dir = Path(out_dir)
    problems = list(validate_output(out_dir))
    for rel in ("README.md", CHART_PATH):
        if not (out_dir / rel).is_file():
            problems.append(f"{rel}: missing (the build writes it; rebuild the output)")
    return problems


def licence_problems(manifest: dict[str, Any], allow: Iterable[str] = ()) -> list[str]:
    """Included sources whose terms forbid redistribution and that `allow` does not name."""
    sources = manifest.get("sources") or {}
    allowed = set(allow)
    problems = [f"--license-allow {name}: no such source in this output" for name in sorted(allowed - set(sources))]
    for sid, entry in redistributed_sources(manifest).items():   # training rows and eval-config rows alike
        blocking = [t for t in entry.get("license_terms") or [] if t in BLOCKING_TERMS]
        if blocking and sid not in allowed:
            problems.append(
                f"{sid}: licence {entry.get('license') or 'unknown'!r} is marked {', '.join(blocking)}; "
                f"publishing would redistribute it. Rebuild without it (medcorpus build --license-profile "
                f"publishable), or pass --license-allow {sid} if you hold the right to redistribute it")
    return problems


def commit_message(manifest: dict[str, Any]) -> tuple[str, str]:
    """(summary, description) of a commit, from the manifest alone (no dates: same build, same message)."""
    rows = split_rows(manifest)
    total = sum(sum(per.values()) for per in rows.values())
    included = included_sources(manifest)
    summary = (f"MedCorpus {manifest.get('version', '?')}: {total:,} rows from {len(included)} sources "
               f"(config {manifest.get('config_hash', '?')})")
    lines = [f"{task}: " + ", ".join(f"{split} {n:,}" for split, n in sorted(rows[task].items()))
             for task in CONFIGS if task in rows]
    lines.append("")
    lines += [f"- {sid} @ {(entry.get('revision') or 'unpinned')[:12]}: {int(entry['counts']['written']):,} rows, "
              f"{entry.get('license') or 'unknown'}" for sid, entry in included.items()]
    skipped = sorted(sid for sid, e in (manifest.get("sources") or {}).items() if e.get("status") != "ok")
    if skipped:
        lines += ["", "not included (failed or skipped): " + ", ".join(skipped)]
    return summary, "\n".join(lines)


def dry_run_report(out_dir: Path, manifest: dict[str, Any]) -> str:
    """What `--dry-run` prints: the files with their sizes, the commit message, then the card."""
    plan = upload_plan(out_dir, manifest)
    width = max(len(f.path) for f in plan)
    summary, description = commit_message(manifest)
    lines = sample_warning(manifest)
    lines += [f"would upload {len(plan)} files, {sum(f.size for f in plan):,} bytes:"]
    lines += [f"  {f.path:<{width}}  {f.size:>14,}" for f in plan]
    lines += ["", f"commit: {summary}", description, "", "----- README.md -----"]
    card = Path(out_dir) / "README.md"
    lines.append(card.read_text(encoding="utf-8") if card.exists() else "(missing)")
    return "\n".join(lines)


SAMPLE_BANNER = "!" * 78


def sample_warning(manifest: dict[str, Any]) -> list[str]:
    """A banner for an output built from a mirror (`make demo`'s bundled samples): not the real corpus."""
    if not manifest.get("from_mirror"):
        return []
    return [SAMPLE_BANNER, "!! SAMPLE DATA: this output was built from a local mirror (--mirror), e.g. the bundled",
            "!! samples of `make demo`, not from the full upstream datasets. Publishing it publishes the samples.",
            SAMPLE_BANNER, ""]


def resolve_token(token: str | None = None) -> str:
    """The token to use: the argument, else what the library finds (`HF_TOKEN`, then the stored login)."""
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise PublishError("no Hugging Face token: set HF_TOKEN, or run `hf auth login`, "
                           "with a token that has write access to the target namespace")
    return token


def publish(out_dir: Path, repo_id: str, *, private: bool = False, revision: str | None = None,
            allow_license: Iterable[str] = (), token: str | None = None) -> str:
    """Upload the output to the dataset repo `repo_id` (created if needed); return the commit URL.

    Raises PublishError when the output is invalid, a licence forbids it, or no token is available.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    out_dir = Path(out_dir)
    manifest = load_manifest(out_dir)
    problems = output_problems(out_dir) + licence_problems(manifest, allow_license)
    if problems:
        raise PublishError("refusing to publish " + str(out_dir) + ":\n" + "\n".join(f"  - {p}" for p in problems))
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=resolve_token(token))
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
    plan = upload_plan(out_dir, manifest)
    summary, description = commit_message(manifest)
    if sum(f.size for f in plan) > LARGE_FOLDER_BYTES or len(plan) > LARGE_FOLDER_FILES:
        result = api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=out_dir, revision=revision,
                                   allow_patterns=[f.path for f in plan], commit_message=summary,
                                   commit_description=description)
    else:
        operations = [CommitOperationAdd(path_in_repo=f.path, path_or_fileobj=str(out_dir / f.path)) for f in plan]
        result = api.create_commit(repo_id=repo_id, repo_type="dataset", operations=operations,
                                   commit_message=summary, commit_description=description, revision=revision)
    return str(result.commit_url)

