"""The `medcorpus` command line. Subcommands in etl/commands/*.py register themselves."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

from rich.console import Console
from rich.table import Table

from etl import __version__, commands
from etl.build import (
    FAILED_BUILD,
    BuildLockedError,
    BuildOptions,
    BuildResult,
    OutputRefusedError,
    default_workers,
    run_build,
)
from etl.catalog import TASKS, Catalog, CatalogError, load_catalog
from etl.convert.base import registry
from etl.engines import ENGINES
from etl.ui import Reporter, setup_logging
from etl.validate import validate_output


def open_catalog(path: str) -> Catalog:
    return load_catalog(path, known_formats={name: c.tasks for name, c in registry().items()})


def add_catalog_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", default="sources.yaml", help="catalogue file (default: ./sources.yaml)")


# --------------------------------------------------------------------------- sources


SOURCE_COLUMNS = ("id", "task", "role", "host", "revision", "enabled", "state", "license")


def cmd_sources(args: argparse.Namespace) -> int:
    catalog = open_catalog(args.catalog)
    if args.action == "show":
        if not args.id:
            raise CatalogError("sources show needs an ID (see `medcorpus sources list`)")
        source = catalog.get(args.id)
        print(json.dumps(source.model_dump(mode="json"), ensure_ascii=False, indent=2))
        return 0
    if args.id:
        raise CatalogError(f"sources list takes no ID (did you mean `medcorpus sources show {args.id}`?)")
    if args.markdown:
        print(sources_markdown(catalog, args.manifest))
        return 0
    states = _fetch_states(catalog)
    rows = []
    for source in catalog.sources:
        if args.enabled_only and not source.enabled:
            continue
        state = states.get(source.id, {})
        rows.append({"id": source.id, "task": source.task, "role": source.role, "host": source.host,
                     "revision": source.revision or "", "enabled": source.enabled, "state": state,
                     "license": source.license})
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    cells = [[r["id"], r["task"], r["role"], r["host"], r["revision"], "yes" if r["enabled"] else "no",
              _describe_state(r["state"]), r["license"]] for r in rows]
    if not sys.stdout.isatty():  # plain tab-separated rows, nothing cut, for pipes and scripts
        for line in [list(SOURCE_COLUMNS), *cells]:
            print("\t".join(cell.replace("\t", " ") for cell in line))
        return 0
    table = Table(*SOURCE_COLUMNS)
    for cell in cells:
        cell[4] = cell[4][:12]
        table.add_row(*cell)
    Console().print(table)
    return 0


def sources_markdown(catalog: Catalog, manifest_path: Path | None) -> str:
    """The README's source table; rows come from a build's manifest (e.g. the demo's)."""
    built: dict = {}
    if manifest_path is not None:
        built = json.loads(Path(manifest_path).read_text(encoding="utf-8"))["sources"]
    lines = ["| id | dataset | host | task | role | license | enabled | rows in the demo | format |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in catalog.sources:
        counts = built.get(s.id, {}).get("counts", {})
        if not s.enabled:
            rows = "—"
        elif s.role == "eval" or (counts.get("eval_rows") and not counts.get("written")):
            rows = f"{counts.get('eval_rows', 0)} eval"
        else:
            rows = str(counts.get("written", 0))
        terms = f" ({', '.join(s.license_terms)})" if s.license_terms else ""
        enabled = "yes" if s.enabled else f"no: {s.disabled_reason}"
        verified = "verified" if s.format_verified else "format unverified"
        name = f"[{s.name}]({s.homepage})" if s.homepage else s.name
        lines.append(f"| `{s.id}` | {name} | {s.host} | {s.task} | {s.role} | {s.license}{terms} | {enabled} | {rows} | {verified} |")
    return "\n".join(lines)


def _fetch_states(catalog: Catalog) -> dict[str, dict]:
    try:
        from etl.commands.fetch import source_states
    except ImportError:
        return {}
    try:
        return source_states(catalog, None)
    except Exception:  # noqa: BLE001 - the listing must work even when the cache is unreadable
        return {}


def _describe_state(state: dict) -> str:
    if not state:
        return ""
    parts = ["fetched" if state.get("fetched") else "not fetched"]
    if state.get("cached_size"):
        parts.append(f"{state['cached_size'] / 1e6:.1f} MB")
    if state.get("lock"):
        parts.append(f"lock: {state['lock']}")
    return ", ".join(parts)


# --------------------------------------------------------------------------- build


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_workers_arg(parser: argparse.ArgumentParser, what: str) -> None:
    """`--workers`, the same rule in every command: default the number of cores."""
    parser.add_argument("--workers", type=positive_int, default=default_workers(), metavar="N",
                        help=f"{what} (default: the number of cores, {default_workers()} here)")


def add_build_args(parser: argparse.ArgumentParser) -> None:
    add_catalog_arg(parser)
    parser.add_argument("--sources", nargs="+", metavar="ID", help="only these sources (disabled ones too)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, help="only sources of these tasks")
    parser.add_argument("--mirror", type=Path, help="read every source from DIR/<source_id>/ instead of the network")
    parser.add_argument("--out", type=Path, help="output folder (default: build.out of the catalogue)")
    parser.add_argument("--cache", type=Path, help="download cache (default: $MEDCORPUS_CACHE or ~/.cache/medcorpus)")
    add_workers_arg(parser, "worker processes for conversion and the cross-source stages")
    parser.add_argument("--engine", choices=ENGINES, default="local",
                        help="where the work runs: local process pool (default) or a Ray cluster (extra .[ray])")
    parser.add_argument("--ray-address", metavar="ADDR",
                        help="with --engine ray: an existing cluster (e.g. ray://head:10001); default starts a local Ray")
    parser.add_argument("--offline-mirror", type=Path, metavar="DIR",
                        help="when no dataset host can be reached, read sources from the download cache, and "
                             "those not in it from this (sample) mirror, with a warning")
    parser.add_argument("--allow-sample-over-real", action="store_true",
                        help="with --offline-mirror: let sample-mirror sources replace an output that was built "
                             "from the real datasets (refused otherwise)")
    licence_choices = ["permissive", "non-commercial", "academic-only", "no-redistribution", "copyrighted", "unclear"]
    parser.add_argument("--license-allow", nargs="+", default=[], choices=licence_choices, metavar="CATEGORY",
                        help="keep only training sources whose licence categories are all listed "
                             "(a source with no stated restriction is `permissive`)")
    parser.add_argument("--license-deny", nargs="+", default=[], choices=licence_choices, metavar="CATEGORY",
                        help="leave out training sources with any of these licence categories")
    parser.add_argument("--license-profile", choices=["all", "publishable"], default="all",
                        help="publishable: leave out what may not be redistributed (no-redistribution, "
                             "copyrighted), so `medcorpus publish` accepts the output (default: all)")
    parser.add_argument("--tokenizer", metavar="NAME_OR_PATH",
                        help="count tokens with this Hugging Face tokenizer (a folder, or a name already in "
                             "the local cache; never downloaded); without it the counts are a character estimate")
    parser.add_argument("--explain-dups", type=int, default=0, metavar="N",
                        help="after the build, show N sample duplicate clusters per task and stage")
    parser.add_argument("--explain-drops", type=int, default=0, metavar="N",
                        help="after the build, show N sample rows per reason that the quality stage dropped")
    parser.add_argument("--keep-going", action="store_true",
                        help="when sources fail, still replace the previous output with the partial result "
                             f"(without it, the result is left in OUT/{FAILED_BUILD}/); the exit code is 1 either way")


def cmd_build(args: argparse.Namespace) -> int:
    from etl.tokens import TokenizerError

    catalog = open_catalog(args.catalog)
    fallback = None
    if args.mirror is None and args.offline_mirror is not None and not hosts_reachable():
        print(f"warning: no dataset host is reachable; sources in the download cache are read from it, the "
              f"others from the sample mirror {args.offline_mirror} (bundled samples, not the full datasets)",
              file=sys.stderr)
        fallback = args.offline_mirror
    for folder in (args.mirror, fallback):
        if folder is not None:
            from etl.fetch.mirror import mirror_problem

            if problem := mirror_problem(folder):
                print(f"error: {problem}", file=sys.stderr)
                return 2
    options = BuildOptions(out=args.out or Path(catalog.build.out), source_ids=args.sources, tasks=args.tasks,
                           mirror=args.mirror, cache_dir=args.cache, workers=args.workers,
                           keep_going=args.keep_going, force_fetch=getattr(args, "force", False),
                           license_allow=tuple(args.license_allow), license_deny=tuple(args.license_deny),
                           fallback_mirror=fallback, allow_sample_over_real=args.allow_sample_over_real,
                           license_profile=args.license_profile, tokenizer=args.tokenizer,
                           engine=args.engine, ray_address=args.ray_address)
    with Reporter() as reporter:
        try:
            result = run_build(catalog, options, reporter)
        except TokenizerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            # A full disk or a permission error: the previous complete output is untouched (the new one
            # was being staged beside it); say what happened and where.
            print(f"error: the build could not write its output: {exc.strerror or exc} "
                  f"({Path(exc.filename).name if exc.filename else options.out}); the previous output in "
                  f"{options.out} is unchanged", file=sys.stderr)
            return 1
    print_summary(result)
    if args.explain_dups and result.left_in is None:
        explain_dups(options.out, args.explain_dups)
    if args.explain_drops and result.left_in is None:
        explain_drops(options.out, args.explain_drops)
    failed = result.failed
    if failed:
        names = ", ".join(o.source.id for o in failed)
        print(f"{len(failed)} source(s) failed: {names}", file=sys.stderr)
        if result.left_in is not None:
            print(f"the previous output in {options.out} is unchanged; this build's result was left in "
                  f"{result.left_in} (rerun with --keep-going to replace the output with it)", file=sys.stderr)
        elif args.keep_going:
            print(f"--keep-going: {options.out} now holds the partial result; its manifest records the failed "
                  "source(s), so `medcorpus validate` reports it as partial", file=sys.stderr)
        return 1
    return 0


def hosts_reachable(timeout: float = 3.0) -> bool:
    """Whether any dataset host answers a TCP connection (HF_ENDPOINT's host counts for the Hub)."""
    hub = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    for host, port in ((hub.hostname or "huggingface.co", hub.port or 443), ("github.com", 443)):
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            return True
        except OSError:
            continue
    return False


def cmd_refresh(args: argparse.Namespace) -> int:
    """Re-fetch the named sources, then build everything: unchanged sources come from the conversion
    cache, so only the refreshed ones are re-read and re-converted."""
    catalog = open_catalog(args.catalog)
    for source_id in args.ids:
        catalog.get(source_id)
    if args.mirror is None:
        from etl.fetch import make_fetcher
        from etl.fetch.lock import default_lock_path

        fetcher = make_fetcher(cache_dir=args.cache, lock_path=default_lock_path(catalog.path))
        results = fetcher.fetch_many([catalog.get(i) for i in args.ids], force=args.force, workers=args.workers)
        stale = [source_id for source_id, result in results.items() if isinstance(result, Exception)]
        for source_id in stale:
            print(f"warning: {source_id}: could not fetch again: {results[source_id]}", file=sys.stderr)
    else:
        stale = []
    # --force applies to the named sources only: the build reads every other source from the cache
    code = cmd_build(argparse.Namespace(**{**vars(args), "force": False}))
    if stale:
        print(f"refresh: {', '.join(stale)} could not be fetched again; the build used what the cache held "
              "(if anything), and the output was replaced only if no source failed", file=sys.stderr)
        return code or 1
    return code


def explain_dups(out: Path, n: int) -> None:
    """Print sample clusters from the dedup reports (stats/reports/<task>/dup_clusters-*.jsonl) so a
    person can judge what was merged: the survivor first, then what it absorbed."""
    console = Console(width=None if sys.stdout.isatty() else 160)
    for report in sorted(out.glob("stats/reports/*/dup_clusters-*.jsonl")):
        with open(report, encoding="utf-8") as handle:
            clusters = [json.loads(line) for _, line in zip(range(n), handle, strict=False)]
        if not clusters:
            continue
        console.rule(f"{report.parent.name}: {report.stem.split('-')[-1]} ({len(clusters)} sample cluster(s))")
        for cluster in clusters:
            members = sorted(cluster["members"], key=lambda m: not m["survivor"])
            for member in members:
                mark = "keep" if member["survivor"] else "drop"
                text = " ".join(member["text"].split())[:120]
                print(f"  {mark} {member['id']} (priority {member['priority']}): {text}")
            print()


def explain_drops(out: Path, n: int) -> None:
    """Print up to N sample rows per reason from the drop reports (stats/reports/<task>/drops-*.jsonl)."""
    for report in sorted(out.glob("stats/reports/*/drops-*.jsonl")):
        shown: dict[str, int] = {}
        with open(report, encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle]
        if not rows:
            continue
        print(f"== {report.parent.name}: {report.stem.removeprefix('drops-')} ==")
        for row in rows:
            if shown.get(row["reason"], 0) >= n:
                continue
            shown[row["reason"]] = shown.get(row["reason"], 0) + 1
            text = " ".join(row["text"].split())[:120]
            print(f"  {row['reason']}: {row['id']}: {text}")
        print()


def print_summary(result: BuildResult) -> None:
    from etl.card import config_summary, split_cell

    console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
    table = Table("source", "task", "status", "converted from", "read", "converted", "rejected (by reason)", "filtered",
                  "eval", "redacted", "low quality", "exact dup", "near dup", "decontam.", "written",
                  title="build summary")
    for outcome in result.outcomes:
        counts = result.manifest["sources"][outcome.source.id]["counts"]
        reasons = ", ".join(f"{k} {v}" for k, v in counts.get("rejected_by_reason", {}).items())
        rejected = f"{counts.get('rejected', 0)}" + (f" ({reasons})" if reasons else "")
        status = outcome.status
        origin = "" if outcome.converted is None else ("cache" if outcome.converted.from_cache else "files")
        table.add_row(outcome.source.id, outcome.source.task, status, origin,
                      *(str(counts.get(k, 0)) for k in ("read", "converted")), rejected,
                      *(str(counts.get(k, 0)) for k in ("filtered", "eval_rows")),
                      str(sum(counts.get("redacted", {}).values())), str(counts.get("low_quality", 0)),
                      *(str(counts.get(k, 0)) for k in ("exact_dup", "near_dup", "decontaminated")),
                      split_cell(result.manifest["sources"][outcome.source.id]) if counts.get("written") else "0")
    console.print(table)
    for outcome in result.outcomes:  # a wrong-shape file is one catalogue mistake: one line, not N rejects
        files = result.manifest["sources"][outcome.source.id]["counts"].get("schema_mismatch_files", {})
        for file, found in files.items():
            console.print(f"{outcome.source.id}: {file}: {found['records']} record(s) of the wrong shape: "
                          f"{found['message']}", markup=False, style="yellow")
    for outcome in result.failed:
        error = outcome.error or ""
        line = error if error.startswith(f"{outcome.source.id}:") else f"{outcome.source.id}: {error}"
        console.print(line, markup=False, style="red")
    totals = result.manifest["totals"]
    reconverted = [o.source.id for o in result.outcomes if o.converted and not o.converted.from_cache]
    cached = [o.source.id for o in result.outcomes if o.converted and o.converted.from_cache]
    shown = ", ".join(reconverted) if len(reconverted) <= 8 else f"{len(reconverted)} source(s)"
    console.print(f"re-converted: {shown or 'none'}; from cache: {len(cached)} source(s)", markup=False)
    samples = result.manifest.get("sample_sources") or []
    if samples:
        console.print(f"from the sample mirror (offline, not in the download cache): {', '.join(samples)}",
                      markup=False, style="yellow")
    console.print(f"written {totals.get('written', 0)} rows; rejected {totals.get('rejected', 0)} records; "
                  f"{len(result.failed)} source(s) failed", markup=False)
    for line in config_summary(result.manifest):
        console.print(line, markup=False)


# --------------------------------------------------------------------------- validate


def cmd_validate(args: argparse.Namespace) -> int:
    problems = validate_output(Path(args.out), allow_partial=args.allow_partial)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{args.out}: INVALID ({len(problems)} problem(s))", file=sys.stderr)
        return 1
    print(f"{args.out}: valid")
    return 0


# --------------------------------------------------------------------------- main


def add_verbose_arg(parser: argparse.ArgumentParser, default: object = argparse.SUPPRESS) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="debug logging (MedCorpus' own; HTTP and plotting libraries stay at warnings)")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medcorpus", description="Build a medical LLM training corpus from public datasets.")
    parser.add_argument("--version", action="version", version=f"medcorpus {__version__}")
    add_verbose_arg(parser, default=False)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sources", help="the catalogue, with state")
    p.add_argument("action", choices=["list", "show"], help="list: every source with its fetch state; "
                                                             "show: one source's catalogue entry as JSON")
    p.add_argument("id", nargs="?", metavar="ID", help="with show: the source id (the `id:` in the catalogue)")
    p.add_argument("--enabled-only", action="store_true", help="with list: leave out disabled sources")
    p.add_argument("--json", action="store_true", help="with list: print the rows as a JSON array")
    p.add_argument("--markdown", action="store_true", help="print the README's source table")
    p.add_argument("--manifest", type=Path, help="with --markdown: take row counts from this build's manifest")
    add_catalog_arg(p)
    p.set_defaults(func=cmd_sources)

    p = sub.add_parser("build", help="fetch, convert, deduplicate and write the corpus")
    add_build_args(p)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("refresh", help="fetch these sources again, re-convert them, redo the cross-source stages")
    p.add_argument("ids", nargs="+", metavar="ID")
    add_build_args(p)
    p.add_argument("--force", action="store_true", help="download again even when the cache is current")
    p.set_defaults(func=cmd_refresh)

    p = sub.add_parser("validate", help="check an output folder against its manifest and the schemas")
    p.add_argument("out")
    p.add_argument("--allow-partial", action="store_true",
                   help="accept an output whose manifest records failed sources (a --keep-going build)")
    add_catalog_arg(p)
    p.set_defaults(func=cmd_validate)

    for module in sorted(m.name for m in pkgutil.iter_modules(commands.__path__)):
        importlib.import_module(f"etl.commands.{module}").register(sub)
    for command in sub.choices.values():  # `-v` after the subcommand too
        add_verbose_arg(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return args.func(args)
    except (CatalogError, BuildLockedError, OutputRefusedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
