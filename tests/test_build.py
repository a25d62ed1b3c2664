"""End to end on real fixtures through a small catalogue of generic-format sources: conservation,
exact content, determinism, failure isolation, validation, locking."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from etl.cli import main
from etl.validate import validate_output
from tests.helpers_build import CATALOG, make_mirror


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    (root / "sources.yaml").write_text(CATALOG, encoding="utf-8")
    mirror = make_mirror(root)
    code = main(["build", "--catalog", str(root / "sources.yaml"), "--mirror", str(mirror), "--out", str(root / "out")])
    return root, mirror, code


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def test_build_succeeds_and_output_is_valid(demo):
    root, _, code = demo
    assert code == 0
    assert validate_output(root / "out") == []


def test_conservation_per_source(demo):
    root, _, _ = demo
    for source_id, entry in manifest(root / "out")["sources"].items():
        c = entry["counts"]
        assert c["read"] == c["converted"] + c["rejected"] + c["filtered"], source_id
        assert entry["status"] == "ok"
    counts = manifest(root / "out")["sources"]["shennong_tcm"]["counts"]
    assert counts["read"] == 40 and counts["converted"] == 40


def test_bad_records_become_rejects_with_reasons(demo):
    root, _, _ = demo
    counts = manifest(root / "out")["sources"]["broken_lines"]["counts"]
    assert counts["read"] == 5 and counts["converted"] == 2
    assert counts["rejected_by_reason"] == {"bad_json": 1, "bad_record_type": 1, "empty_output": 1}
    rejects = pq.read_table(next((root / "out" / "rejects").glob("*.parquet"))).to_pylist()
    mine = {r["location"]: r for r in rejects if r["source"] == "broken_lines"}
    assert mine["line 2"]["reason"] == "bad_json" and mine["line 2"]["raw"].startswith('{"query": "头晕"')
    assert mine["line 3"]["reason"] == "empty_output" and mine["line 3"]["file"] == "broken.jsonl"
    assert mine["line 4"]["reason"] == "bad_record_type"


def test_exact_content_of_known_records(demo):
    root, mirror, _ = demo
    table = pq.read_table(next((root / "out" / "sft").glob("train-*.parquet"))).to_pylist()
    first_line = (mirror / "shennong_tcm" / "ChatMed_TCM-v0.2.json").read_text(encoding="utf-8").splitlines()[0]
    upstream = json.loads(first_line)
    shennong = [r for r in table if r["source"] == "shennong_tcm"]
    # a plain turn is {role, content} with a null tool_calls (the column's struct has the field)
    assert shennong[0]["messages"] == [{"role": "user", "content": upstream["query"], "tool_calls": None},
                                       {"role": "assistant", "content": upstream["response"], "tool_calls": None}]
    assert shennong[0]["tools"] is None
    # GenMedGPT-5k: a CRLF JSON array with indent 6 and no final newline; alpaca instruction + blank line + input
    genmed = json.loads((mirror / "chatdoctor_genmedgpt5k" / "GenMedGPT-5k.json").read_text(encoding="utf-8"))
    row = next(r for r in table if r["source"] == "chatdoctor_genmedgpt5k")
    assert row["messages"][0]["content"] == f"{genmed[0]['instruction']}\n\n{genmed[0]['input']}"
    assert row["messages"][1]["content"] == genmed[0]["output"]
    reward = pq.read_table(next((root / "out" / "reward").glob("train-*.parquet"))).to_pylist()
    assert len(reward) == 34 and all(r["chosen"] != r["rejected"] for r in reward)
    assert sum(1 for r in reward if r["prompt"][0]["role"] == "system") == 8


def test_second_build_is_byte_identical(demo, tmp_path):
    root, mirror, _ = demo
    code = main(["build", "--catalog", str(root / "sources.yaml"), "--mirror", str(mirror), "--out", str(tmp_path / "out")])
    assert code == 0
    first, second = manifest(root / "out"), manifest(tmp_path / "out")
    assert first == second
    for shard in first["shards"]:
        assert (root / "out" / shard["path"]).read_bytes() == (tmp_path / "out" / shard["path"]).read_bytes()


def test_failed_source_is_reported_and_others_finish(demo, tmp_path, capsys):
    root, mirror, _ = demo
    catalog = CATALOG + """  - {id: missing_src, name: Missing, host: hf, repo: o/missing, files: [nope.json], task: sft,
     format: alpaca, license: MIT}
"""
    (tmp_path / "sources.yaml").write_text(catalog, encoding="utf-8")
    args = ["build", "--catalog", str(tmp_path / "sources.yaml"), "--mirror", str(mirror), "--out", str(tmp_path / "out")]
    assert main(args) == 1
    entry = manifest(tmp_path / "out")["sources"]["missing_src"]
    assert entry["status"] == "failed" and "not in the mirror" in entry["error"]
    assert manifest(tmp_path / "out")["sources"]["shennong_tcm"]["counts"]["written"] > 0
    assert "missing_src" in capsys.readouterr().err
    # --keep-going commits the partial result over the previous one, and the exit code still says a source failed
    assert main([*args, "--keep-going"]) == 1
    assert "now holds the partial result" in capsys.readouterr().err


def test_validate_detects_a_changed_shard(demo, tmp_path):
    root, _, _ = demo
    out = tmp_path / "copy"
    shutil.copytree(root / "out", out, ignore=shutil.ignore_patterns(".work"))
    shard = next((out / "sft").glob("train-*.parquet"))
    shard.write_bytes(shard.read_bytes()[:-10])
    problems = validate_output(out)
    assert any("sha256 differs" in p for p in problems)
    (out / "sft" / "train-00099-of-00099.parquet").write_bytes(b"x")
    assert any("does not list" in p for p in validate_output(out))


def test_a_held_lock_refuses_and_a_leftover_lock_file_does_not(demo, tmp_path, capsys):
    """The lock is an flock: a second build is refused while another process holds it; a lock file whose
    holder is gone (here: a pid that is not running) is no lock at all."""
    root, mirror, _ = demo
    out = tmp_path / "out"
    out.mkdir()
    args = ["build", "--catalog", str(root / "sources.yaml"), "--mirror", str(mirror), "--out", str(out),
            "--sources", "shennong_tcm"]
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(args) == 2
        assert f"another build (pid {holder.pid} on " in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    (out / ".medcorpus.lock").write_text(json.dumps({"pid": 4206649, "host": "elsewhere"}))
    assert main(args) == 0


HOLD_LOCK = """
import sys, time
from pathlib import Path
from etl.build import OutputLock
with OutputLock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_licence_filters_leave_out_training_sources_and_are_recorded(demo, tmp_path):
    root, mirror, _ = demo
    catalog = CATALOG.replace("license: apache-2.0, lang: zh}", "license: apache-2.0, lang: zh,\n     license_terms: [academic-only]}")
    (tmp_path / "sources.yaml").write_text(catalog, encoding="utf-8")
    base = ["build", "--catalog", str(tmp_path / "sources.yaml"), "--mirror", str(mirror)]
    assert main([*base, "--out", str(tmp_path / "deny"), "--license-deny", "academic-only"]) == 0
    built = manifest(tmp_path / "deny")
    entry = built["sources"]["shennong_tcm"]
    assert entry["status"] == "skipped" and "academic-only is denied" in entry["error"]
    assert entry["counts"]["written"] == 0 and entry["files"] == []
    assert built["sources"]["medicalgpt_sft_medical"]["counts"]["written"] == 40
    assert built["build"]["license_deny"] == ["academic-only"]
    assert main([*base, "--out", str(tmp_path / "allow"), "--license-allow", "academic-only"]) == 0
    allowed = manifest(tmp_path / "allow")["sources"]
    assert allowed["shennong_tcm"]["status"] == "ok"
    assert "permissive is not allowed" in allowed["medicalgpt_sft_medical"]["error"]


def test_explain_dups_shows_the_survivor_and_what_it_absorbed(demo, capsys):
    root, mirror, _ = demo
    main(["build", "--catalog", str(root / "sources.yaml"), "--mirror", str(mirror), "--out", str(root / "out"),
          "--explain-dups", "3"])
    out = capsys.readouterr().out
    assert "sft: exact_dedup" in out
    keep = [line for line in out.splitlines() if line.startswith("  keep shennong_tcm/")]
    drop = [line for line in out.splitlines() if line.startswith("  drop shennong_tcm/")]
    assert keep and drop and drop[0].split()[1] == keep[0].split()[1] + "-2"
