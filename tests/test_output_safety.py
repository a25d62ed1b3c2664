"""Never lose a corpus: worker errors stay their source's, a failed build does not replace the previous
output, a user's folder is not overwritten, an offline build does not turn real data into samples, the card
and chart are under checksums, and one build at a time holds an output folder (an OS lock)."""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from etl.build import BuildLockedError, OutputLock, WorkerFailure, _settle, _unit_result
from etl.catalog import CatalogError
from etl.cli import main
from etl.convert.base import Filtered, Reject
from etl.fetch.base import FetchError
from etl.fetch.lock import LockMismatch
from etl.fetch.net import ConnectTransient, OfflineError, TransientError
from etl.publish import PublishError
from etl.read.base import SourceFileError
from etl.validate import validate_output
from tests.helpers_badinput import GOOD_ID, GOOD_LINES, BuildRun, entry, jsonl, run_build

BAD = "bad_src"
QR = [{"query": f"问题{i}：头痛怎么办？", "response": f"回答{i}：多休息，多喝水。"} for i in range(3)]


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def snapshot(out: Path) -> dict[str, bytes]:
    """Every file of an output folder except the build's own hidden working folders."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and not p.relative_to(out).parts[0].startswith(".")}


# --------------------------------------------------------------------------- exceptions across processes


EXCEPTIONS = [
    SourceFileError("d.jsonl", "empty_file", "the file is empty"),
    FetchError("cmedqa2", "not in the mirror"),
    LockMismatch("cmedqa2", "d.zip: sha256 differs from sources.lock"),
    Reject("bad_json", "Expecting value: line 1 column 2"),
    Reject("empty_output"),
    Filtered("negative_candidate"),
    TransientError("HTTP 503 from example.org"),
    ConnectTransient("connection refused by example.org"),
    OfflineError("cmedqa2"),
    CatalogError("sources.yaml: source 'x': `formt`: unknown key"),
    PublishError("out: no manifest.json"),
]


@pytest.mark.parametrize("exc", EXCEPTIONS, ids=[f"{type(e).__name__}-{i}" for i, e in enumerate(EXCEPTIONS)])
def test_every_exception_survives_pickling(exc):
    """What a worker raises reaches the parent whole: same type, message and attributes."""
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc)
    assert str(back) == str(exc)
    assert vars(back) == vars(exc)


def test_every_custom_exception_class_is_in_the_pickling_test():
    """A new exception class in etl/ must be added above (it may cross a process boundary)."""
    import etl

    defined = set()
    for path in Path(etl.__file__).parent.rglob("*.py"):
        module = ".".join(path.relative_to(Path(etl.__file__).parent.parent).with_suffix("").parts)
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("class ") and ("Error" in line or "Exception" in line or "Reject" in line
                                              or "Filtered" in line or "Mismatch" in line):
                name = line.split()[1].split("(")[0].rstrip(":")
                defined.add(f"{module}.{name}")
    tested = {f"{type(e).__module__}.{type(e).__name__}" for e in EXCEPTIONS}
    not_exceptions = {"etl.read.base.ReadError", "etl.build.WorkerFailure"}  # plain records
    allowed_single_message = {"etl.build.BuildLockedError", "etl.build.OutputRefusedError",
                              "etl.export.ExportError", "etl.tokens.TokenizerError",
                              "etl.conversion._CrossUnitDuplicate"}  # one message argument: pickles by default
    assert defined - not_exceptions - allowed_single_message <= tested, defined - tested


class _Unpicklable(Exception):
    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}/{b}")


def test_a_worker_failure_of_any_exception_is_a_picklable_record():
    failure = WorkerFailure.of(_Unpicklable("x", "y"), "Traceback ...")
    back = pickle.loads(pickle.dumps(failure))
    assert back == failure and back.describe() == "_Unpicklable: x/y"
    source_error = WorkerFailure.of(SourceFileError("d.jsonl", "empty_file", "the file is empty"))
    assert source_error.describe() == "d.jsonl: empty_file: the file is empty"
    disk = WorkerFailure.of(OSError(28, "No space left on device", "/x/work/rows.parquet"))
    rebuilt = disk.os_error()
    assert (rebuilt.errno, rebuilt.strerror, rebuilt.filename) == (28, "No space left on device", "/x/work/rows.parquet")


def test_a_worker_that_dies_fails_only_its_source():
    """A process that dies (not an exception) breaks its future: that source fails with a message."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        future = pool.submit(os._exit, 3)
        result = _unit_result(future.result)
    assert isinstance(result, WorkerFailure) and result.type_name == "BrokenProcessPool"
    assert result.describe().startswith("BrokenProcessPool: the worker process converting this source failed")

    class Quiet:
        def warn(self, message: str) -> None:
            self.message = message

        def advance(self, *args: object, **kwargs: object) -> None:
            pass

    from etl.build import SourceOutcome
    from etl.catalog import Source

    outcome = SourceOutcome(Source.model_validate(entry(BAD, "d.jsonl", "query_response")))
    reporter = Quiet()
    _settle(outcome, result, reporter, Path("/nonexistent-work"))
    assert outcome.status == "failed" and "worker process" in outcome.error
    assert reporter.message.startswith(f"{BAD}: conversion failed: BrokenProcessPool")


@pytest.mark.parametrize("workers", [1, 2])
def test_an_empty_file_fails_only_its_source(tmp_path, workers):
    """The issue's case: with --workers 2 the read error of an empty file broke the pool and failed
    every source. Now it is that source's failure, with the reader's message, and the others finish."""
    sources = [entry(BAD, "d.jsonl", "query_response"), entry("other_qa", "o.jsonl", "query_response")]
    files = {BAD: {"d.jsonl": b""}, "other_qa": {"o.jsonl": jsonl(*QR)}}
    run = run_build(tmp_path, sources, files, extra_args=("--workers", str(workers)))
    assert run.code == 1
    assert run.source(BAD)["status"] == "failed"
    assert run.source(BAD)["error"] == "d.jsonl: empty_file: the file is empty"
    assert run.source("other_qa")["status"] == "ok" and run.counts("other_qa")["written"] == 3
    run.assert_good_source_finished()
    assert "BrokenProcessPool" not in run.stderr and "Traceback" not in run.stderr


# --------------------------------------------------------------------------- failed builds keep the output


def _good_then(tmp_path: Path, bad: bytes, *args: str, workers: int = 2) -> tuple[BuildRun, BuildRun, dict]:
    first = run_build(tmp_path, [entry(BAD, "d.jsonl", "query_response")], {BAD: {"d.jsonl": jsonl(*QR)}},
                      extra_args=("--workers", str(workers)))
    assert first.code == 0 and validate_output(first.out) == []
    before = snapshot(first.out)
    again = run_build(tmp_path, [entry(BAD, "d.jsonl", "query_response")], {BAD: {"d.jsonl": bad}},
                      extra_args=("--workers", str(workers), *args))
    return first, again, before


@pytest.mark.parametrize("workers", [1, 2])
def test_a_build_with_failed_sources_keeps_the_previous_output(tmp_path, workers):
    first, again, before = _good_then(tmp_path, b"", workers=workers)
    assert again.code == 1
    assert snapshot(first.out) == before and validate_output(first.out) == []
    side = first.out / ".failed-build"
    assert (f"the previous output in {first.out} is unchanged; this build's result was left in {side} "
            "(rerun with --keep-going to replace the output with it)") in again.stderr
    left = json.loads((side / "manifest.json").read_text(encoding="utf-8"))
    assert left["sources"][BAD]["status"] == "failed" and left["sources"][GOOD_ID]["counts"]["written"] == 2
    # the next successful build clears the stale side folder
    ok = run_build(tmp_path, [entry(BAD, "d.jsonl", "query_response")], {BAD: {"d.jsonl": jsonl(*QR)}})
    assert ok.code == 0 and not side.exists()


def test_keep_going_replaces_the_output_and_validate_says_it_is_partial(tmp_path):
    first, again, before = _good_then(tmp_path, b"", "--keep-going")
    assert again.code == 1
    assert again.manifest["sources"][BAD]["status"] == "failed"
    assert again.rows("sft", BAD) == [] and len(again.rows("sft", GOOD_ID)) == 2
    code, _, err = cli("validate", str(first.out))
    assert code == 1 and f"1 source(s) failed in the build that wrote this output ({BAD})" in err
    code, out, _ = cli("validate", str(first.out), "--allow-partial")
    assert code == 0 and out.strip() == f"{first.out}: valid"


def test_refresh_that_cannot_fetch_keeps_the_output(tmp_path):
    """`refresh` of a source that cannot be fetched (gone from the mirror) leaves the output as it was."""
    first, _, before = _good_then(tmp_path, jsonl(*QR))
    (tmp_path / "mirror" / BAD / "d.jsonl").unlink()
    code, _, err = cli("refresh", BAD, "--catalog", str(tmp_path / "sources.yaml"), "--mirror",
                       str(tmp_path / "mirror"), "--out", str(first.out))
    assert code == 1 and f"1 source(s) failed: {BAD}" in err
    assert snapshot(first.out) == before and validate_output(first.out) == []


def test_validate_fails_on_an_output_without_rows(tmp_path):
    (tmp_path / "mirror").mkdir()
    run = run_build(tmp_path, [], {}, with_good=False)
    assert run.code == 0
    assert "manifest.json: the output has no rows (every source failed, was skipped or was empty)" in \
        validate_output(run.out)


# --------------------------------------------------------------------------- a user's folder


def test_out_with_the_users_own_files_is_refused(tmp_path):
    out = tmp_path / "out"
    (out / "stats").mkdir(parents=True)
    (out / "README.md").write_text("my notes\n")
    (out / "stats" / "mine.csv").write_text("a,b\n")
    before = snapshot(out)
    run = run_build(tmp_path, [], {})
    assert run.code == 2
    assert (f"error: {out} holds README.md, stats/, which no MedCorpus build wrote there (no manifest.json lists "
            "them); a build would replace them") in run.stderr
    assert snapshot(out) == before and not (out / "manifest.json").exists()


def test_other_files_in_out_are_left_alone_and_only_recorded_entries_are_replaced(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me\n")
    first = run_build(tmp_path, [], {})
    assert first.code == 0
    assert first.manifest["entries"] == ["README.md", "eval", "rejects", "sft", "stats"]
    (out / "reward").mkdir()  # the user's, made after the build: not in the manifest's entries
    (out / "reward" / "x.txt").write_text("mine\n")
    again = run_build(tmp_path, [], {})
    assert again.code == 2 and "holds reward/, which no MedCorpus build wrote there" in again.stderr
    (out / "reward" / "x.txt").unlink()
    (out / "reward").rmdir()
    assert run_build(tmp_path, [], {}).code == 0
    assert (out / "notes.txt").read_text() == "keep me\n"


def test_a_manifest_of_another_tool_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text('{"tool": "other"}')
    run = run_build(tmp_path, [], {})
    assert run.code == 2 and "manifest.json is not the manifest of a MedCorpus build" in run.stderr


# --------------------------------------------------------------------------- checksums of card, chart, reports


def test_editing_the_card_or_chart_fails_validate(tmp_path):
    run = run_build(tmp_path, [], {})
    assert run.code == 0 and validate_output(run.out) == []
    files = run.manifest["files"]
    assert {"README.md", "stats/composition.png"} <= set(files)
    assert any(p.startswith("stats/reports/sft/") for p in files)
    card = run.out / "README.md"
    original = card.read_bytes()
    card.write_bytes(original.replace(b"MIT", b"CC0-1.0"))
    assert validate_output(run.out) == ["README.md: sha256 differs from the manifest (edited after the build)"]
    card.write_bytes(original)
    chart = run.out / "stats" / "composition.png"
    chart.write_bytes(chart.read_bytes() + b"\0")
    assert validate_output(run.out) == ["stats/composition.png: sha256 differs from the manifest (edited after "
                                        "the build)"]
    chart.unlink()
    assert validate_output(run.out) == ["stats/composition.png: listed in the manifest but missing"]
    (run.out / "stats" / "extra.txt").write_text("x")
    assert "stats/extra.txt: a file the manifest does not list (added after the build)" in validate_output(run.out)


# --------------------------------------------------------------------------- offline fallback


@pytest.fixture
def hosted(tmp_path, httpserver):
    """Two http sources served on 127.0.0.1 (the real data) and a sample mirror with other content."""
    real = {"src_a": [{"query": "real a", "response": "real answer a"}],
            "src_b": [{"query": "real b", "response": "real answer b"}]}
    for sid, records in real.items():
        httpserver.expect_request(f"/{sid}.jsonl").respond_with_data(jsonl(*records))
    sources = [{"id": sid, "name": sid, "host": "http", "url": httpserver.url_for(f"/{sid}.jsonl"), "task": "sft",
                "format": "query_response", "license": "MIT"} for sid in real]
    from tests.helpers_badinput import write_catalog

    catalog = write_catalog(tmp_path / "sources.yaml", sources)
    samples = tmp_path / "samples"
    for sid in real:
        (samples / sid).mkdir(parents=True)
        (samples / sid / f"{sid}.jsonl").write_bytes(jsonl({"query": f"sample {sid}", "response": "sample answer"}))
    return catalog, samples


def _texts(out: Path) -> dict[str, str]:
    import pyarrow.parquet as pq

    rows = [r for p in sorted((out / "sft").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    return {r["source"]: r["messages"][0]["content"] for r in rows}


def test_offline_build_reads_the_cache_first_and_samples_only_the_rest(tmp_path, hosted, monkeypatch):
    catalog, samples = hosted
    real_cache, partial_cache = tmp_path / "cache-all", tmp_path / "cache-a"
    out = tmp_path / "out"
    assert cli("fetch", "src_a", "--catalog", str(catalog), "--cache", str(partial_cache))[0] == 0
    code, _, err = cli("build", "--catalog", str(catalog), "--cache", str(real_cache), "--out", str(out))
    assert code == 0, err
    real = snapshot(out)
    assert _texts(out) == {"src_a": "real a", "src_b": "real b"}

    monkeypatch.setattr("etl.cli.hosts_reachable", lambda timeout=3.0: False)  # offline from here on
    offline = ["build", "--catalog", str(catalog), "--cache", str(partial_cache), "--offline-mirror", str(samples),
               "--workers", "2"]
    code, _, err = cli(*offline, "--out", str(out))
    assert code == 2
    assert (f"error: {out} holds a corpus built from the real datasets, but offline src_b would come from the "
            f"sample mirror {samples} (not in the download cache)") in err
    assert "--allow-sample-over-real" in err and snapshot(out) == real

    code, _, err = cli(*offline, "--out", str(out), "--allow-sample-over-real")
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["from_mirror"] is True and manifest["sample_sources"] == ["src_b"]
    assert manifest["sources"]["src_a"]["from_mirror"] is False and manifest["sources"]["src_b"]["from_mirror"] is True
    assert _texts(out) == {"src_a": "real a", "src_b": "sample src_b"}
    assert "from the sample mirror (offline, not in the download cache): src_b" in err


# --------------------------------------------------------------------------- the lock


def _contend(out: str, rounds: int, marker: str, queue: multiprocessing.Queue) -> None:
    """Take the lock `rounds` times; inside it, create a marker that only one holder may have."""
    from etl.build import BuildLockedError

    held = overlaps = 0
    for _ in range(rounds):
        try:
            with OutputLock(Path(out)):
                held += 1
                try:
                    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    overlaps += 1
                    continue
                time.sleep(0.002)
                os.close(fd)
                os.unlink(marker)
        except BuildLockedError:
            time.sleep(0.001)
    queue.put((held, overlaps))


def test_contending_processes_never_hold_the_lock_together(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    procs = [context.Process(target=_contend, args=(str(out), 100, str(tmp_path / "marker"), queue))
             for _ in range(4)]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    assert sum(overlaps for _, overlaps in results) == 0, results
    assert sum(held for held, _ in results) > 0


HOLD = """
import sys, time
from pathlib import Path
from etl.build import OutputLock
with OutputLock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_killed_holder_releases_the_lock_even_as_a_zombie(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(BuildLockedError, match=f"another build \\(pid {holder.pid} on "):
            OutputLock(out).__enter__()
        os.kill(holder.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        state = ""
        while state != "Z" and time.monotonic() < deadline:  # not reaped: a zombie until wait() below
            with open(f"/proc/{holder.pid}/stat") as handle:
                state = handle.read().split(")")[1].split()[0]
        assert state == "Z"
        os.kill(holder.pid, 0)  # the zombie still "exists": what the old pid-file lock was fooled by
        taken = False
        while not taken and time.monotonic() < deadline:  # the kernel may release the lock a moment later
            try:
                with OutputLock(out):
                    taken = True
            except BuildLockedError:
                time.sleep(0.05)
        assert taken
    finally:
        holder.kill()
        holder.wait()


# --------------------------------------------------------------------------- CLI


def test_export_into_a_folder_with_a_malformed_dataset_info(tmp_path):
    run = run_build(tmp_path, [], {})
    dest = tmp_path / "lf"
    dest.mkdir()
    (dest / "dataset_info.json").write_text("{not json")
    code, _, err = cli("export", "--format", "llamafactory", str(run.out), str(dest))
    assert code == 2
    assert err.startswith(f"error: {dest / 'dataset_info.json'}: cannot merge into it: Expecting property name")
    assert "Traceback" not in err and (dest / "dataset_info.json").read_text() == "{not json"


@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize("repo", ["bad/repo/name", "noslash", "org/bad name"])
def test_publish_refuses_a_bad_repo_id_before_anything_else(tmp_path, repo, dry_run):
    code, _, err = cli("publish", str(tmp_path / "nowhere"), "--repo", repo, *(["--dry-run"] if dry_run else []))
    assert code == 2 and err.startswith(f"error: --repo {repo!r}: "), err


def test_verbose_after_the_subcommand_and_noisy_loggers_stay_quiet(tmp_path):
    import logging

    from etl.cli import make_parser
    from etl.ui import setup_logging

    assert make_parser().parse_args(["validate", "x", "-v"]).verbose is True
    assert make_parser().parse_args(["-v", "validate", "x"]).verbose is True
    assert make_parser().parse_args(["validate", "x"]).verbose is False
    setup_logging(True)
    try:
        for name in ("matplotlib", "matplotlib.font_manager", "PIL", "urllib3"):
            assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert logging.getLogger("medcorpus").isEnabledFor(logging.DEBUG)
    finally:
        setup_logging(False)


def test_workers_default_is_the_number_of_cores_in_every_command():
    from etl.cli import make_parser

    parser = make_parser()
    for argv in (["build"], ["refresh", "x"], ["fetch"], ["lock"]):
        assert parser.parse_args(argv).workers == (os.cpu_count() or 1), argv
    with pytest.raises(SystemExit):
        parser.parse_args(["build", "--workers", "0"])


def test_one_licence_flag_name_for_build_and_publish():
    from etl.cli import make_parser

    parser = make_parser()
    assert parser.parse_args(["build", "--license-allow", "permissive"]).license_allow == ["permissive"]
    assert parser.parse_args(["publish", "--repo", "o/n", "--license-allow", "x"]).license_allow == ["x"]
    assert parser.parse_args(["publish", "--repo", "o/n", "--allow-license", "x"]).license_allow == ["x"]  # old name


def test_sources_list_is_plain_rows_or_json_when_not_a_terminal(tmp_path):
    long_id = "toyhom_dialogue_with_a_very_long_identifier"
    from tests.helpers_badinput import write_catalog

    catalog = write_catalog(tmp_path / "sources.yaml", [entry(long_id, "d.jsonl", "query_response")])
    code, out, _ = cli("sources", "list", "--catalog", str(catalog))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split("\t") == ["id", "task", "role", "host", "revision", "enabled", "state", "license"]
    assert lines[1].split("\t")[:6] == [long_id, "sft", "train", "github", "0" * 40, "yes"]
    code, out, _ = cli("sources", "list", "--json", "--catalog", str(catalog))
    rows = json.loads(out)
    assert code == 0 and rows[0]["id"] == long_id and rows[0]["enabled"] is True
    code, _, err = cli("sources", "show", "--catalog", str(catalog))
    assert code == 2 and "sources show needs an ID" in err


def test_every_stage_gets_its_tick_and_conversion_counts_records_and_bytes(tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="medcorpus")
    run = run_build(tmp_path, [entry(BAD, "d.jsonl", "query_response")], {BAD: {"d.jsonl": jsonl(*QR)}},
                    extra_args=("--workers", "2"))
    assert run.code == 0
    messages = [r.getMessage() for r in caplog.records if r.name == "medcorpus"]
    stage_lines = [m for m in messages if m.startswith("sft: stages: ")]
    total = int(stage_lines[-1].rsplit("/", 1)[1].rstrip(")"))
    assert total >= 5 and len(stage_lines) == total and stage_lines[-1].endswith(f"({total}/{total})")
    names = [m.split(": ")[2].split(" ")[0] for m in stage_lines]
    assert len(set(names)) == total and {"normalise", "exact_dedup", "langid"} <= set(names)
    size = len(jsonl(*QR)) + len(("\n".join(GOOD_LINES) + "\n").encode())
    assert f"convert (0/2 sources, 0 B of {size} B)" in messages
    bad_line = next(m for m in messages if m.startswith(f"convert: {BAD}: "))
    assert bad_line.startswith(f"convert: {BAD}: 3 records read, 3 rows, 0 rejected (")
    assert messages[[i for i, m in enumerate(messages) if m.startswith("convert: ")][-1]].endswith(
        f"(2/2 sources, {size} B of {size} B)")


def test_importing_the_cli_leaves_heavy_optional_parts_unloaded():
    """`medcorpus --help` must not pay for (or crash on) trafilatura or matplotlib: imported where used."""
    code = "import sys, etl.cli; print(sorted(m for m in ('trafilatura', 'matplotlib', 'justext') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"
