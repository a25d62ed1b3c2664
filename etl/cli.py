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
from etl.build import BuildLockedError, BuildOptions, BuildResult, run_build
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


def cmd_sources(args: argparse.Namespace) -> int:
    catalog = open_catalog(args.catalog)
    console = Console()
    if args.action == "show":
        if not args.id:
            raise CatalogError("sources show needs an ID")
        source = catalog.get(args.id)
        console.print_json(json.dumps(source.model_dump(mode="json"), ensure_ascii=False))
        return 0
    if args.markdown:
        print(sources_markdown(catalog, args.manifest))
        return 0
    states = _fetch_states(catalog)
    table = Table("id", "task", "role", "host", "revision", "enabled", "state", "license")
    for source in catalog.sources:
        if args.enabled_only and not source.enabled:
            continue
        state = states.get(source.id, {})
        table.add_row(source.id, source.task, source.role, source.host, (source.revision or "")[:12],
                      "yes" if source.enabled else "no", _describe_state(state), source.license)
    console.print(table)
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


def add_build_args(parser: argparse.ArgumentParser) -> None:
    add_catalog_arg(parser)
    parser.add_argument("--sources", nargs="+", metavar="ID", help="only these sources (disabled ones too)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, help="only sources of these tasks")
    parser.add_argument("--mirror", type=Path, help="read every source from DIR/<source_id>/ instead of the network")
    parser.add_argument("--out", type=Path, help="output folder (default: build.out of the catalogue)")
    parser.add_argument("--cache", type=Path, help="download cache (default: $MEDCORPUS_CACHE or ~/.cache/medcorpus)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes for conversion and the cross-source stages (default 1)")
    parser.add_argument("--engine", choices=ENGINES, default="local",
                        help="where the work runs: local process pool (default) or a Ray cluster (extra .[ray])")
    parser.add_argument("--ray-address", metavar="ADDR",
                        help="with --engine ray: an existing cluster (e.g. ray://head:10001); default starts a local Ray")
    parser.add_argument("--offline-mirror", type=Path, metavar="DIR",
                        help="when no dataset host can be reached, build from this mirror instead (with a warning)")
    licence_choices = ["permissive", "non-commercial", "academic-only", "no-redistribution", "copyrighted", "unclear"]
    parser.add_argument("--license-allow", nargs="+", default=[], choices=licence_choices, metavar="CATEGORY",
                        help="keep only training sources whose licence categories are all listed "
                             "(a source with no stated restriction is `permissive`)")
    parser.add_argument("--license-deny", nargs="+", default=[], choices=licence_choices, metavar="CATEGORY",
                        help="leave out training sources with any of these licence categories")
    parser.add_argument("--explain-dups", type=int, default=0, metavar="N",
                        help="after the build, show N sample duplicate clusters per task and stage")
    parser.add_argument("--keep-going", action="store_true", help="exit 0 even when some sources failed")


def cmd_build(args: argparse.Namespace) -> int:
    catalog = open_catalog(args.catalog)
    mirror = args.mirror
    if mirror is None and args.offline_mirror is not None and not hosts_reachable():
        print(f"warning: no dataset host is reachable; building from the sample mirror {args.offline_mirror} "
              "instead (the output holds the bundled samples, not the full datasets)", file=sys.stderr)
        mirror = args.offline_mirror
    options = BuildOptions(out=args.out or Path(catalog.build.out), source_ids=args.sources, tasks=args.tasks,
                           mirror=mirror, cache_dir=args.cache, workers=max(1, args.workers),
                           keep_going=args.keep_going, force_fetch=getattr(args, "force", False),
                           license_allow=tuple(args.license_allow), license_deny=tuple(args.license_deny),
                           engine=args.engine, ray_address=args.ray_address)
    with Reporter() as reporter:
        try:
            result = run_build(catalog, options, reporter)
        except OSError as exc:
            # A full disk or a permission error: the previous complete output is untouched (the new one
            # was being staged beside it); say what happened and where.
            print(f"error: the build could not write its output: {exc.strerror or exc} "
                  f"({Path(exc.filename).name if exc.filename else options.out}); the previous output in "
                  f"{options.out} is unchanged", file=sys.stderr)
            return 1
    print_summary(result)
    if args.explain_dups:
        explain_dups(options.out, args.explain_dups)
    failed = result.failed
    if failed:
        names = ", ".join(o.source.id for o in failed)
        print(f"{len(failed)} source(s) failed: {names}", file=sys.stderr)
        return 0 if args.keep_going else 1
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
        results = fetcher.fetch_many([catalog.get(i) for i in args.ids], force=args.force)
        for source_id, result in results.items():
            if isinstance(result, Exception):
                print(f"warning: {source_id}: could not fetch again: {result}", file=sys.stderr)
    # --force applies to the named sources only: the build reads every other source from the cache
    return cmd_build(argparse.Namespace(**{**vars(args), "force": False}))


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


def print_summary(result: BuildResult) -> None:
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
    table = Table("source", "task", "status", "converted from", "read", "converted", "rejected (by reason)", "filtered",
                  "eval", "exact dup", "near dup", "decontam.", "written", title="build summary")
    for outcome in result.outcomes:
        counts = result.manifest["sources"][outcome.source.id]["counts"]
        reasons = ", ".join(f"{k} {v}" for k, v in counts.get("rejected_by_reason", {}).items())
        rejected = f"{counts.get('rejected', 0)}" + (f" ({reasons})" if reasons else "")
        status = outcome.status
        origin = "" if outcome.converted is None else ("cache" if outcome.converted.from_cache else "files")
        table.add_row(outcome.source.id, outcome.source.task, status, origin,
                      *(str(counts.get(k, 0)) for k in ("read", "converted")), rejected,
                      *(str(counts.get(k, 0)) for k in ("filtered", "eval_rows", "exact_dup", "near_dup",
                                                          "decontaminated", "written")))
    console.print(table)
    for outcome in result.failed:
        error = outcome.error or ""
        line = error if error.startswith(f"{outcome.source.id}:") else f"{outcome.source.id}: {error}"
        console.print(line, markup=False, style="red")
    totals = result.manifest["totals"]
    reconverted = [o.source.id for o in result.outcomes if o.converted and not o.converted.from_cache]
    cached = [o.source.id for o in result.outcomes if o.converted and o.converted.from_cache]
    shown = ", ".join(reconverted) if len(reconverted) <= 8 else f"{len(reconverted)} source(s)"
    console.print(f"re-converted: {shown or 'none'}; from cache: {len(cached)} source(s)", markup=False)
    console.print(f"written {totals.get('written', 0)} rows; rejected {totals.get('rejected', 0)} records; "
                  f"{len(result.failed)} source(s) failed", markup=False)


# --------------------------------------------------------------------------- validate


def cmd_validate(args: argparse.Namespace) -> int:
    problems = validate_output(Path(args.out))
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{args.out}: INVALID ({len(problems)} problem(s))", file=sys.stderr)
        return 1
    print(f"{args.out}: valid")
    return 0


# --------------------------------------------------------------------------- main


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medcorpus", description="Build a medical LLM training corpus from public datasets.")
    parser.add_argument("--version", action="version", version=f"medcorpus {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sources", help="the catalogue, with state")
    p.add_argument("action", choices=["list", "show"])
    p.add_argument("id", nargs="?")
    p.add_argument("--enabled-only", action="store_true")
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
    add_catalog_arg(p)
    p.set_defaults(func=cmd_validate)

    for module in sorted(m.name for m in pkgutil.iter_modules(commands.__path__)):
        importlib.import_module(f"etl.commands.{module}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return args.func(args)
    except (CatalogError, BuildLockedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
