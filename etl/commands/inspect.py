"""`medcorpus inspect PATH`: sniff a new file, folder or archive and print its catalogue entry."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect", help="sniff a new file/folder/archive and propose its catalogue entry",
        description="Read PATH with the build's own readers (container, encoding, record shape), try every "
                    "registered converter on a sample, and print a ready `sources.yaml` entry for the best "
                    "one, with the counts of records and rejects a build would see. Files of different "
                    "shapes get one entry each. Fill in the host coordinates, licence and language.")
    parser.add_argument("path", type=Path, help="a data file, an archive, or a folder of them")
    parser.add_argument("--candidates", action="store_true", help="also list the runner-up converters")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from etl.inspect import inspect_path

    if not args.path.exists():
        print(f"error: {args.path} does not exist", file=sys.stderr)
        return 2
    proposals = inspect_path(args.path)
    if not proposals:
        print(f"error: no data files under {args.path}", file=sys.stderr)
        return 1
    failed = 0
    for proposal in proposals:
        for sniff in proposal.files:
            print(f"# {sniff.relpath}: container {sniff.container}, encoding {sniff.encoding}, "
                  f"layout {sniff.layout}, records {sniff.shape}")
        best = proposal.best
        if best is None:
            failed += 1
            print("# no registered converter reads these records; a new converter module is needed\n")
            continue
        rejected = ", ".join(f"{k} {v}" for k, v in sorted(best.rejected.items())) or "none"
        filtered = ", ".join(f"{k} {v}" for k, v in sorted(best.filtered.items())) or "none"
        print(f"# {best.format} (reader {best.reader}): {best.read} records read, {best.converted} converted "
              f"into {best.rows} rows; rejected: {rejected}; filtered: {filtered}")
        if best.first_reject:
            print(f"# first reject: {best.first_reject}")
        if args.candidates:
            for other in proposal.candidates[1:]:
                print(f"#   also: {other.format} (reader {other.reader}) on the sample: {other.converted} converted, "
                      f"{sum(other.rejected.values())} rejected")
        print("# set host and its keys (hf/github: repo, revision; gdrive: file_id, filename; http: url),")
        print("# license, license_source and lang, then review and add to sources.yaml:")
        print(yaml.safe_dump([proposal.entry], sort_keys=False, allow_unicode=True, width=100))
    return 1 if failed == len(proposals) else 0
