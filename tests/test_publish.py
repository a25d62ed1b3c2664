"""Publishing: a fake Hub on 127.0.0.1 implements the calls huggingface_hub makes to create a repo and
commit files; every uploaded file must arrive intact. Refusals happen before any request."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub.constants
import pyarrow.parquet as pq
import pytest
import yaml
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from etl.cli import main
from etl.publish import PublishError, commit_message, licence_problems, publish
from tests.helpers_hub import HubReader
from tests.helpers_output import make_output

TOKEN = "hf_test_secret_token_0123456789"
REPO = "medorg/medcorpus"


COMMIT_OID = "c" * 40


class FakeHub:
    """The Hub endpoints `create_repo`, `create_branch` and `create_commit` use, in regular upload mode; and
    the read endpoints (tests/helpers_hub.py) that serve what was committed, for `datasets.load_dataset`."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.calls: list[str] = []
        self.created: list[dict] = []
        self.commits: list[dict] = []
        self.branches: list[str] = []
        self.reader = HubReader(REPO, lambda: self.files, lambda: COMMIT_OID)

    def __call__(self, request: Request) -> Response:
        self.calls.append(f"{request.method} {request.path}")
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return _json({"error": "Invalid credentials"}, 401)
        if (read := self.reader(request)) is not None:
            return read
        path = request.path
        if path == "/api/repos/create":
            body = request.get_json()
            self.created.append(body)
            assert body["type"] == "dataset"
            return _json({"url": f"{request.host_url}datasets/{body['organization']}/{body['name']}"})
        if path == "/api/validate-yaml":
            body = request.get_json()
            assert body["repoType"] == "dataset"
            meta = yaml.safe_load(body["content"].split("---\n", 2)[1])
            errors = [] if meta.get("configs") and meta.get("license") else [{"message": "no configs"}]
            return _json({"errors": errors, "warnings": []}, 400 if errors else 200)
        match = re.fullmatch(rf"/api/datasets/{REPO}/(preupload|commit|branch)/(.+)", path)
        if not match:
            return _json({"error": f"unexpected {path}"}, 404)
        kind, revision = match.groups()
        if kind == "branch":
            self.branches.append(revision)
            return _json({})
        if kind == "preupload":
            files = request.get_json()["files"]
            return _json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                                    for f in files]})
        assert request.headers["Content-Type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in request.get_data().splitlines() if line.strip()]
        header = lines[0]
        assert header["key"] == "header"
        for item in lines[1:]:
            assert item["key"] == "file" and item["value"]["encoding"] == "base64"
            self.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
        self.commits.append({"revision": revision, **header["value"], "paths": [i["value"]["path"] for i in lines[1:]]})
        return _json({"commitUrl": f"{request.host_url}datasets/{REPO}/commit/{COMMIT_OID}", "commitOid": COMMIT_OID,
                      "pullRequestUrl": None})


def _json(data: dict, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, content_type="application/json")


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    fake = FakeHub()
    server = HTTPServer(host="127.0.0.1", port=0)
    server.expect_request(re.compile(".*")).respond_with_handler(fake)
    server.start()
    monkeypatch.setenv("HF_ENDPOINT", server.url_for("").rstrip("/"))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    try:
        yield fake
    finally:
        server.clear()
        server.stop()


def test_publish_uploads_everything_intact(tmp_path: Path, hub: FakeHub, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    manifest = make_output(out)
    (out / ".work").mkdir()
    (out / ".work" / "scratch.bin").write_bytes(b"not for upload")
    assert main(["publish", str(out), "--repo", REPO, "--private"]) == 0
    assert hub.created == [{"name": "medcorpus", "organization": "medorg", "type": "dataset",
                            "visibility": "private"}]
    assert len(hub.commits) == 1
    commit = hub.commits[0]
    assert commit["revision"] == "main"
    assert commit["summary"] == commit_message(manifest)[0]
    assert "cmedqa2" in commit["description"]
    for shard in manifest["shards"]:
        assert hashlib.sha256(hub.files[shard["path"]]).hexdigest() == shard["sha256"], shard["path"]
    for rel in ("README.md", "manifest.json", "stats/composition.png"):
        assert hub.files[rel] == (out / rel).read_bytes(), rel
    assert set(hub.files) == {s["path"] for s in manifest["shards"]} | {"README.md", "manifest.json",
                                                                       "stats/composition.png"}
    assert json.loads(hub.files["manifest.json"])["shards"] == manifest["shards"]
    assert any(call == "POST /api/validate-yaml" for call in hub.calls)
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err
    assert "published" in captured.out


def test_publish_to_branch(tmp_path: Path, hub: FakeHub) -> None:
    out = tmp_path / "out"
    make_output(out)
    publish(out, REPO, revision="v0.1")
    assert hub.branches == ["v0.1"]
    assert hub.commits[0]["revision"] == "v0.1"


def test_refuses_invalid_output(tmp_path: Path, hub: FakeHub, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    make_output(out)
    shard = out / "sft" / "train-00000-of-00001.parquet"
    shard.write_bytes(shard.read_bytes() + b"x")
    assert main(["publish", str(out), "--repo", REPO]) == 1
    assert "sha256 differs" in capsys.readouterr().err
    assert hub.calls == []


def test_refuses_missing_card(tmp_path: Path, hub: FakeHub) -> None:
    out = tmp_path / "out"
    make_output(out, write_readme=False)
    with pytest.raises(PublishError, match=r"README.md"):
        publish(out, REPO)
    assert hub.calls == []


def test_refuses_forbidden_licence_unless_allowed(tmp_path: Path, hub: FakeHub,
                                                  capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    make_output(out, license_terms={"chatdoctor": ["no-redistribution"], "med_wiki": ["copyrighted"],
                                    "cmb_eval": ["no-redistribution"]})
    assert main(["publish", str(out), "--repo", REPO]) == 1
    err = capsys.readouterr().err
    assert "chatdoctor" in err and "med_wiki" in err and "--license-allow" in err
    assert "cmb_eval" in err              # its rows are in the published `eval` config
    assert hub.calls == []
    assert main(["publish", str(out), "--repo", REPO, "--allow-license", "chatdoctor", "med_wiki"]) == 1
    assert hub.calls == []
    assert main(["publish", str(out), "--repo", REPO, "--allow-license", "chatdoctor", "med_wiki", "cmb_eval"]) == 0  # old flag name
    assert len(hub.commits) == 1
    # the flag build uses, with a licence category standing for every source that has it
    assert main(["publish", str(out), "--repo", REPO, "--license-allow", "no-redistribution", "copyrighted"]) == 0
    assert len(hub.commits) == 2


def test_non_commercial_is_published_with_warning(tmp_path: Path) -> None:
    manifest = make_output(tmp_path / "out")
    assert manifest["sources"]["cmedqa2"]["license_terms"] == ["non-commercial"]
    assert licence_problems(manifest) == []
    assert licence_problems(manifest, ["nope"]) == ["--license-allow nope: no such source in this output"]
    assert "Non-commercial use only" in (tmp_path / "out" / "README.md").read_text(encoding="utf-8")


def test_missing_token(tmp_path: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture) -> None:
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    out = tmp_path / "out"
    make_output(out)
    assert main(["publish", str(out), "--repo", REPO]) == 1
    err = capsys.readouterr().err
    assert "no Hugging Face token" in err and "HF_TOKEN" in err
    assert hub.calls == []


def test_dry_run_lists_files_and_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    out = tmp_path / "out"
    manifest = make_output(out)
    assert main(["publish", str(out), "--repo", REPO, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    for shard in manifest["shards"]:
        assert f"{shard['path']}" in printed and f"{shard['bytes']:,}" in printed
    assert "stats/composition.png" in printed
    assert "configs:" in printed and "## Citations" in printed


def test_dry_run_reports_refusal(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    make_output(out, license_terms={"chatdoctor": ["no-redistribution"]})
    assert main(["publish", str(out), "--repo", REPO, "--dry-run"]) == 1
    assert "would refuse: chatdoctor" in capsys.readouterr().err


def test_large_folder_path(tmp_path: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    import etl.publish

    monkeypatch.setattr(etl.publish, "LARGE_FOLDER_FILES", 2)
    out = tmp_path / "out"
    manifest = make_output(out)
    (out / ".work").mkdir()
    (out / ".work" / "scratch.bin").write_bytes(b"not for upload")
    publish(out, REPO)
    assert set(hub.files) == {s["path"] for s in manifest["shards"]} | {"README.md", "manifest.json",
                                                                       "stats/composition.png"}
    for shard in manifest["shards"]:
        assert hashlib.sha256(hub.files[shard["path"]]).hexdigest() == shard["sha256"]
    assert hub.commits[0]["summary"].startswith(commit_message(manifest)[0])



# `datasets` reads HF_ENDPOINT when it is imported, so the loading runs in a fresh interpreter pointed at the
# fake Hub, with every other host unreachable (a dead proxy for everything but 127.0.0.1).
LOAD = """
import json, sys
import datasets
result = {}
for config in sys.argv[2:]:
    loaded = datasets.load_dataset(sys.argv[1], config)
    result[config] = {split: loaded[split].to_list() for split in loaded}
print(json.dumps(result, ensure_ascii=False))
"""


def test_published_repo_loads_with_datasets(tmp_path: Path, hub: FakeHub) -> None:
    import os
    import subprocess
    import sys

    import pyarrow.parquet as pq

    out = tmp_path / "out"
    manifest = make_output(out)
    publish(out, REPO)
    configs = sorted(manifest["splits"])
    assert "sft" in configs
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
           "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets"), "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0",
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1,localhost"}
    done = subprocess.run([sys.executable, "-c", LOAD, REPO, *configs], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout)

    for config in configs:
        local = {split: [row for path in sorted((out / config).glob(f"{split}-*.parquet"))
                         for row in pq.read_table(path).to_pylist()]
                 for split in manifest["splits"][config]}
        assert loaded[config] == local, config
    assert [len(rows) for rows in loaded["sft"].values()] == \
        [manifest["splits"]["sft"][split]["rows"] for split in loaded["sft"]]
    # every shard was read from the commit the publish made, through the fake Hub's resolve endpoint
    reads = [p for p in hub.reader.paths if p.startswith("GET /datasets/") and p.endswith(".parquet")]
    assert sorted(reads) == sorted(f"GET /datasets/{REPO}/resolve/{COMMIT_OID}/{s['path']}"
                                   for s in manifest["shards"] if s["path"].split("/")[0] in configs)


# ------------------------------------------------------------------ the publishable path of a new user

ROOT = Path(__file__).resolve().parent.parent
BLOCKED = {"cblue_meddg", "medical_dialog_raw_zh", "medical_dialog_raw_en"}   # no-redistribution / copyrighted


def _build(out: Path, *extra: str, sources: tuple[str, ...] = ()) -> dict:
    args = ["build", "--catalog", str(ROOT / "sources.yaml"), "--mirror", str(ROOT / "examples" / "mirror"),
            "--out", str(out), "--workers", "2", *extra]
    if sources:
        args += ["--sources", *sources]
    assert main(args) == 0
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def test_build_corpus_then_publish_succeeds(tmp_path: Path, hub: FakeHub, capsys: pytest.CaptureFixture) -> None:
    """What `make build-corpus && make publish REPO=…` runs (build-corpus builds with the publishable
    profile; offline it reads the bundled mirror), against the fake Hub."""
    out = tmp_path / "out"
    manifest = _build(out, "--license-profile", "publishable")
    for sid in BLOCKED:
        assert manifest["sources"][sid]["status"] == "skipped"
        assert "--license-profile publishable" in manifest["sources"][sid]["error"]
    assert manifest["sources"]["cblue_chip_mdcfnpc"]["withheld"]           # eval source: decontamination only
    assert manifest["sources"]["cblue_chip_mdcfnpc"]["counts"]["eval_written"] == 0
    capsys.readouterr()
    assert main(["publish", str(out), "--repo", REPO]) == 0
    err = capsys.readouterr().err
    assert "SAMPLE DATA" in err                                             # a mirror build says so, loudly
    uploaded = {p for p in hub.files if p.endswith(".parquet")}
    assert any(p.startswith("eval/") for p in uploaded)
    assert uploaded == {s["path"] for s in manifest["shards"]}
    sources = set()
    for path in uploaded:
        sources |= set(pq.read_table(io.BytesIO(hub.files[path]), columns=["source"]).column("source").to_pylist()) \
            if not path.startswith("rejects/") else set()
    assert sources and not sources & (BLOCKED | {"cblue_chip_mdcfnpc"})
    card = hub.files["README.md"].decode("utf-8")
    assert "explicitly allowed" not in card
    assert "SAMPLE DATA" in card
    assert "| `cblue_meddg` | skipped | licence category no-redistribution is denied" in card
    assert "--license-profile all" in card                                  # how to include it privately


def test_default_build_with_restricted_sources_is_refused(tmp_path: Path, hub: FakeHub,
                                                          capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    _build(out, sources=("cblue_meddg", "cblue_chip_mdcfnpc", "cmedqa2"))
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "Redistribution forbidden upstream" in card and "explicitly allowed" not in card
    capsys.readouterr()
    assert main(["publish", str(out), "--repo", REPO]) == 1
    err = capsys.readouterr().err
    assert "cblue_meddg" in err and "cblue_chip_mdcfnpc" in err           # eval rows are redistributed too
    assert "--license-profile publishable" in err
    assert hub.commits == []


def test_licence_options_change_the_config_hash(tmp_path: Path) -> None:
    ids = ("cmedqa2",)
    plain = _build(tmp_path / "a", sources=ids)["config_hash"]
    assert _build(tmp_path / "b", sources=ids)["config_hash"] == plain
    hashes = {plain,
              _build(tmp_path / "c", "--license-deny", "copyrighted", sources=ids)["config_hash"],
              _build(tmp_path / "d", "--license-allow", "permissive", "non-commercial", sources=ids)["config_hash"],
              _build(tmp_path / "e", "--license-profile", "publishable", sources=ids)["config_hash"]}
    assert len(hashes) == 4
