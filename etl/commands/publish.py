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
    parser.add_argument("--allow-license", nargs="+", default=[], metavar="ID",
                        help="publish these sources although their licence forbids redistribution")
    parser.add_argument("--catalog", default="sources.yaml", help="catalogue file (default: ./sources.yaml)")
    parser.set_defaults(func=run)


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

    out = args.out or Path(load_catalog(args.catalog).build.out)
    try:
        if args.dry_run:
            manifest = load_manifest(out)
            print(dry_run_report(out, manifest))
            problems = output_problems(out) + licence_problems(manifest, args.allow_license)
            for problem in problems:
                print(f"would refuse: {problem}", file=sys.stderr)
            for line in sample_warning(manifest):
                print(line, file=sys.stderr)
            return 1 if problems else 0
        for line in sample_warning(load_manifest(out)):
            print(line, file=sys.stderr)
        url = publish(out, args.repo, private=args.private, revision=args.revision,
                      allow_license=args.allow_license)
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except HfHubHTTPError as exc:
        print(f"error: the Hub refused the upload: {exc}", file=sys.stderr)
        return 1
    print(f"published {out} to {args.repo}: {url}")
    return 0
