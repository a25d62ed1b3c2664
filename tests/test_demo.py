"""`make demo`: the whole catalogue built from the bundled mirror (examples/mirror/, real fixtures)."""

import json
from pathlib import Path

import pytest

from etl.catalog import load_catalog
from etl.cli import main
from etl.validate import validate_output

ROOT = Path(__file__).resolve().parent.parent
# Hand-made fixtures that carry a deliberate defect to show the reject path; real fixtures have none.
EXPECTED_REJECTS = {"huatuogpt_sft_v1": {"bad_alternation": 1}}


def build(out: Path, workers: int) -> dict:
    code = main(["build", "--catalog", str(ROOT / "sources.yaml"), "--mirror", str(ROOT / "examples" / "mirror"),
                 "--out", str(out), "--workers", str(workers)])
    assert code == 0
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    return out, build(out, workers=1)


def test_every_enabled_source_gives_rows_or_eval_items(demo):
    _, manifest = demo
    catalog = load_catalog(ROOT / "sources.yaml")
    enabled = [s for s in catalog.sources if s.enabled]
    assert len(enabled) >= 20
    for source in enabled:
        entry = manifest["sources"][source.id]
        counts = entry["counts"]
        if source.format == "persona":
            assert entry["status"] == "skipped"   # no persona configured in the default catalogue
            continue
        assert entry["status"] == "ok", (source.id, entry["error"])
        if source.id == "cmb_eval":
            assert counts["filtered_by_reason"] == {"answer_key_only": 40}  # the key ships no question text
            continue
        produced = counts["eval_rows"] if source.role == "eval" else counts["written"]
        assert produced > 0, source.id
        assert counts["read"] == counts["converted"] + counts["rejected"] + counts["filtered"], source.id
        assert counts["rejected_by_reason"] == EXPECTED_REJECTS.get(source.id, {}), source.id


def test_all_three_tasks_are_written_and_valid(demo):
    out, manifest = demo
    assert set(manifest["splits"]) == {"pretrain", "sft", "reward", "eval"}
    assert all(rows["rows"] > 0 for splits in manifest["splits"].values() for rows in splits.values())
    assert validate_output(out) == []
    assert manifest["from_mirror"] is True


def test_eval_sources_never_reach_the_training_output(demo):
    _, manifest = demo
    for source_id, entry in manifest["sources"].items():
        if entry["role"] == "eval":
            assert entry["counts"]["written"] == 0, source_id


def test_demo_is_byte_identical_whatever_the_worker_count(demo, tmp_path):
    out, manifest = demo
    again = build(tmp_path / "out", workers=2)
    assert again == manifest
    for shard in manifest["shards"]:
        assert (out / shard["path"]).read_bytes() == (tmp_path / "out" / shard["path"]).read_bytes(), shard["path"]
    assert (out / "README.md").read_bytes() == (tmp_path / "out" / "README.md").read_bytes()


def test_stage_scratch_is_removed_and_the_conversion_cache_kept(demo):
    out, manifest = demo
    assert not list((out / ".work" / "stages").rglob("*.parquet"))   # one scratch copy per task, gone when written
    cached = {p.parent.parent.name for p in (out / ".work" / "convert").glob("*/*/rows.parquet")}
    assert cached >= {s for s, e in manifest["sources"].items() if e["status"] == "ok"}
