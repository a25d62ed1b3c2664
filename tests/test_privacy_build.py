"""End to end: a build from the demo mirror reports redactions and quality drops per source in the
manifest, the card and the drops report (`--explain-drops`), with thresholds from the catalogue."""

import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from etl.cli import main

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("medical_dialog_raw_zh", "xjun_sft_instruct_jsonl")


def small_catalog(tmp_path: Path) -> Path:
    """Two sources of the real catalogue; one gets a stricter line-repetition threshold."""
    doc = yaml.safe_load((ROOT / "sources.yaml").read_text(encoding="utf-8"))
    doc["sources"] = [s for s in doc["sources"] if s["id"] in SOURCES]
    for source in doc["sources"]:
        if source["id"] == "xjun_sft_instruct_jsonl":
            source["quality"] = {"max_line_repetition": 0.3}
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def test_demo_sources_show_redactions_and_drops(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["build", "--catalog", str(small_catalog(tmp_path)), "--mirror", str(ROOT / "examples" / "mirror"),
                 "--out", str(out), "--workers", "2", "--explain-drops", "2"])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    dialog = manifest["sources"]["medical_dialog_raw_zh"]["counts"]
    instruct = manifest["sources"]["xjun_sft_instruct_jsonl"]["counts"]
    # every dialogue's consultation-page URL (kept in meta) is replaced
    assert dialog["redacted"] == {"URL": dialog["written"]} and dialog["written"] > 0
    assert dialog["low_quality"] == 0 and dialog["low_quality_by_reason"] == {}
    # the templated structured-report rows repeat their lines beyond the source's own threshold
    assert instruct["low_quality_by_reason"]["line_repetition"] > 0
    assert instruct["low_quality"] == sum(instruct["low_quality_by_reason"].values())
    assert instruct["written"] == instruct["converted"] - instruct["low_quality"] - instruct["exact_dup"] \
        - instruct["near_dup"] - instruct["decontaminated"] - instruct["eval_rows"]
    assert manifest["totals"]["redacted"] == dialog["written"]
    assert manifest["totals"]["low_quality"] == instruct["low_quality"]

    table = pq.read_table(sorted((out / "sft").glob("*.parquet")))
    metas = table.filter(pc.equal(table.column("source"), "medical_dialog_raw_zh")).column("meta").to_pylist()
    assert all(json.loads(m)["url"] == "<URL>" for m in metas)
    assert not any("http" in m for m in metas)

    card = (out / "README.md").read_text(encoding="utf-8")
    assert "## Personal data and quality filtering" in card
    assert f"| `medical_dialog_raw_zh` | URL {dialog['written']:,} | — |" in card
    assert f"line_repetition {instruct['low_quality_by_reason']['line_repetition']:,}" in card

    report = [json.loads(line) for line in
              (out / "stats" / "reports" / "sft" / "drops-quality.jsonl").read_text(encoding="utf-8").splitlines()]
    assert report and {r["reason"] for r in report} == {"line_repetition"}
    assert all(r["source"] == "xjun_sft_instruct_jsonl" and r["text"] for r in report)
    shown = capsys.readouterr().out
    assert "== sft: quality ==" in shown
    assert shown.count("line_repetition: xjun_sft_instruct_jsonl/") == 2
