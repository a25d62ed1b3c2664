"""`medcorpus publish [OUT] --repo ORG/NAME`: upload the output folder to the Hugging Face Hub."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from etl.catalog import load_catalog


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "publish", help="upload the output folder to a Hugging Face dataset repo",
        description="Upload OUT (shards, manifest, card, chart) in one commit to a dataset repo, creating it "
                    "if needed. Token: HF_TOKEN or `hf auth login`; HF_ENDPOINT selects a mirror.")
    parser.add_argument("out", nargs="?", type=Path, help="output folder (default: build.out of the catalogue)")
    parser.add_argument("--repo", required=True, metavar="ORG/NAME", help="dataset repo id")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--revision", metavar="BRANCH", help="commit to this branch (created if needed)")
    parser.add_argument("--dry-run", action="store_true", help="list the files and print the card; upload nothing")
    parser.add_argument("--license-allow", nargs="+", default=[], metavar="ID|CATEGORY", dest="license_allow",
                        help="publish these sources (by id, or every source of a licence category such as "
                             "non-commercial) although their licence forbids redistribution")
    parser.add_argument("--allow-license", nargs="+", dest="license_allow", help=argparse.SUPPRESS)  # old name
    parser.add_argument("--catalog", default="sources.yaml", help="catalogue file (default: ./sources.yaml)")
    parser.set_defaults(func=run)


def repo_id_problem(repo: str) -> str | None:
    """Why `repo` is not a Hub repo id (ORG/NAME), or None."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if repo.count("/") != 1:
        return f"--repo {repo!r}: a dataset repo id is ORG/NAME (one slash), e.g. my-org/medcorpus"
    try:
        validate_repo_id(repo)
    except HFValidationError as exc:
        return f"--repo {repo!r}: not a valid repo id: {exc}"
    return None


def allowed_sources(manifest: dict, names: list[str]) -> list[str]:
    """`--license-allow` values as source ids: a licence category stands for every source that has it."""
    sources = manifest.get("sources") or {}
    ids = []
    for name in names:
        matching = sorted(sid for sid, e in sources.items() if name in (e.get("license_terms") or []))
        ids.extend(matching if matching and name not in sources else [name])
    return ids


def run(args: argparse.Namespace) -> int:
    from huggingface_hub.errors import HfHubHTTPError

    from etl.publish import (
        PublishError,
        dry_run_report,
        licence_problems,
        load_manifest,
        output_problems,
        publish,
        sample_warning,
    )

    problem = repo_id_problem(args.repo)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    out = args.out or Path(load_catalog(args.catalog).build.out)
    try:
        manifest = load_manifest(out)
        allow = allowed_sources(manifest, args.license_allow)
        if args.dry_run:
            print(dry_run_report(out, manifest))
            problems = output_problems(out) + licence_problems(manifest, allow)
            for problem in problems:
                print(f"would refuse: {problem}", file=sys.stderr)
            for line in sample_warning(manifest):
                print(line, file=sys.stderr)
            return 1 if problems else 0
        for line in sample_warning(manifest):
            print(line, file=sys.stderr)
        url = publish(out, args.repo, private=args.private, revision=args.revision, allow_license=allow)
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except HfHubHTTPError as exc:
        print(f"error: the Hub refused the upload: {exc}", file=sys.stderr)
        return 1
    print(f"published {out} to {args.repo}: {url}")
    return 0
