"""`medcorpus export --format llamafactory OUT DEST`: trainer-ready copies of an output folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="write the corpus in a trainer's own dataset format",
        description="Write data files plus LLaMA-Factory's dataset_info.json into DEST (merged with an "
                    "existing dataset_info.json, so DEST may be LLaMA-Factory's data/ folder).")
    parser.add_argument("--format", required=True, choices=["llamafactory"], help="target trainer")
    parser.add_argument("out", type=Path, help="output folder of `medcorpus build`")
    parser.add_argument("dest", type=Path, help="folder to write (LLaMA-Factory's dataset_dir)")
    parser.add_argument("--prefix", default="medcorpus",
                        help="prefix of the dataset names and of the data subfolder (default: medcorpus)")
    parser.add_argument("--catalog", default="sources.yaml", help="catalogue file (default: ./sources.yaml)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from etl.export import ExportError, export_llamafactory, training_snippet

    try:
        entries = export_llamafactory(args.out, args.dest, prefix=args.prefix)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # the existing dataset_info.json is not valid JSON (or not an object)
        print(f"error: {args.dest / 'dataset_info.json'}: cannot merge into it: {exc}; fix it, or export into "
              "another folder", file=sys.stderr)
        return 2
    width = max((len(e.name) for e in entries), default=0)
    for entry in entries:
        print(f"{entry.name:<{width}}  {entry.split:<10}  {entry.rows:>10,} rows  {entry.file_name}")
    print(f"\nwrote {args.dest / 'dataset_info.json'}; in your LLaMA-Factory training config:\n")
    print(training_snippet(str(args.dest), entries), end="")
    return 0
