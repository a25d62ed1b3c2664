"""Issue 7, secrets and safety: tokens and cookies never reach logs, exceptions, the manifest, the card, the
rejects table or the work folder, even when a hostile server echoes them back; and nothing from a download is
ever executed (no eval/exec, no pickle, no loading scripts).

The network build talks only to 127.0.0.1: a local server that answers every host with an error that quotes
the request's headers (Authorization, Cookie), plus a closed port for a plain URL.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.helpers_badinput import GOOD_LINES, REVISION

ROOT = Path(__file__).resolve().parent.parent
SECRETS = {
    "HF_TOKEN": "hf_FAKE_SECRET_TOKEN_123",
    "GITHUB_TOKEN": "ghp_FAKE_SECRET_TOKEN_456",
    "TIANCHI_COOKIE": "login_ticket=tc_FAKE_SECRET_COOKIE_789; lang=zh",
    "TIANCHI_CSRF_TOKEN": "csrf_FAKE_SECRET_000",
}
# What must never appear: each value, and the secret part of the cookie on its own.
NEEDLES = (*SECRETS.values(), "tc_FAKE_SECRET_COOKIE_789", "FAKE_SECRET")


class _EchoHandler(BaseHTTPRequestHandler):
    """Every answer quotes the request's headers back, as a careless or hostile server might."""

    seen: list[dict[str, str]] = []

    def _echo(self) -> str:
        headers = dict(self.headers.items())
        type(self).seen.append({"path": self.path, **headers})
        secret_first = sorted(headers.items(), key=lambda kv: kv[0].lower() not in ("authorization", "cookie"))
        return json.dumps(dict(secret_first))

    def _send(self, status: int, body: str, content_type: str = "application/json") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Request-Headers", body.replace("\n", " ")[:2000])
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        echo = self._echo()
        if self.path.startswith("/tianchi/api/dataset/getFileDownloadUrl"):
            self._send(200, json.dumps({"success": False, "message": f"refused, you sent {echo}"}))
        elif self.path.startswith("/hf/"):
            self._send(401, json.dumps({"error": f"Invalid credentials in {echo}"}))
        else:
            self._send(400, json.dumps({"message": f"Bad request with {echo}"}))

    def do_HEAD(self) -> None:  # noqa: N802
        self._echo()
        self._send(401, "")

    def do_POST(self) -> None:  # noqa: N802
        echo = self._echo()
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.path.startswith("/tianchi/api/notebook/dataDetail"):
            listing = {"data": {"datalabFile": [{"filePath": "/data.json", "id": 7}]}, "echo": echo}
            self._send(200, json.dumps(listing))
        else:
            self._send(403, json.dumps({"message": f"Forbidden for {echo}"}))

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence the test server
        return


@pytest.fixture
def echo_server() -> Iterator[str]:
    _EchoHandler.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _child_env(tmp_path: Path, base: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.lower().endswith("_proxy") and k not in ("MEDCORPUS_KILL_AT", "HF_HUB_OFFLINE")}
    env.update(SECRETS)
    env.update({
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        "HF_ENDPOINT": f"{base}/hf", "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_DISABLE_TELEMETRY": "1",
        "MEDCORPUS_GITHUB_API": f"{base}/gh-api", "MEDCORPUS_GITHUB_RAW": f"{base}/gh-raw",
        "MEDCORPUS_GITHUB_MEDIA": f"{base}/gh-media", "MEDCORPUS_TIANCHI_URL": f"{base}/tianchi",
        "MEDCORPUS_GDRIVE_URL": f"{base}/gdrive", "MEDCORPUS_CACHE": str(tmp_path / "cache"),
        "PYTHONFAULTHANDLER": "1",
    })
    return env


def _catalog(path: Path) -> Path:
    sources = [
        {"id": "hf_src", "name": "hf", "host": "hf", "repo": "org/data", "revision": REVISION,
         "files": ["data.json"], "task": "sft", "format": "query_response", "license": "MIT"},
        {"id": "gh_src", "name": "gh", "host": "github", "repo": "org/data", "revision": REVISION,
         "files": ["data.json"], "task": "sft", "format": "query_response", "license": "MIT"},
        {"id": "tianchi_src", "name": "tianchi", "host": "tianchi", "dataset_id": "12345",
         "files": ["data.json"], "task": "sft", "format": "query_response", "license": "MIT"},
        {"id": "closed_port", "name": "closed", "host": "http", "url": "http://127.0.0.1:9/data.json",
         "task": "sft", "format": "query_response", "license": "MIT"},
        {"id": "good_qa", "name": "good", "host": "github", "repo": "org/good", "revision": REVISION,
         "files": ["good.jsonl"], "task": "sft", "format": "query_response", "license": "MIT"},
        {"id": "broken_qa", "name": "broken", "host": "github", "repo": "org/broken", "revision": REVISION,
         "files": ["broken.jsonl"], "task": "sft", "format": "query_response", "license": "MIT"},
    ]
    path.write_text(yaml.safe_dump({"build": {"shard_max_bytes": "256MB"}, "sources": sources}), encoding="utf-8")
    return path


def _mirror(root: Path) -> Path:
    mirror = root / "mirror"
    (mirror / "good_qa").mkdir(parents=True)
    (mirror / "good_qa" / "good.jsonl").write_text("\n".join(GOOD_LINES) + "\n", encoding="utf-8")
    (mirror / "broken_qa").mkdir(parents=True)
    # records that quote the secret names (not values) must still be kept as they are
    (mirror / "broken_qa" / "broken.jsonl").write_text(
        '{"query": "what is HF_TOKEN?", "response": "an access token"}\n{"query": "broken", \n', encoding="utf-8")
    return mirror


def _leaks(text: str) -> list[str]:
    return [needle for needle in NEEDLES if needle in text]


def _scan_tree(root: Path) -> dict[str, list[str]]:
    """Every file under `root` (bytes, and Parquet cell values): which secrets each one holds."""
    found: dict[str, list[str]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        text = data.decode("utf-8", errors="replace")
        if path.suffix == ".parquet" and data.startswith(b"PAR1"):
            text += json.dumps(pq.read_table(path).to_pylist(), ensure_ascii=False, default=str)
        leaks = _leaks(text)
        if leaks:
            found[str(path.relative_to(root))] = leaks
    return found


def _run(args: list[str], env: dict[str, str], verbose: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "etl.cli", *(["-v"] if verbose else []), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=180)


def test_no_secret_reaches_any_output_of_a_failing_network_build(tmp_path, echo_server):
    _check_network_build(tmp_path, echo_server, verbose=False)


def test_no_secret_reaches_the_debug_log(tmp_path, echo_server):
    _check_network_build(tmp_path, echo_server, verbose=True)


def _check_network_build(tmp_path: Path, base: str, verbose: bool) -> None:
    catalog = _catalog(tmp_path / "sources.yaml")
    env = _child_env(tmp_path, base)
    out = tmp_path / "out"
    # the closed port costs the retry policy's back-off (~10 s): once is enough
    ids = ["hf_src", "gh_src", "tianchi_src"] + ([] if verbose else ["closed_port"])
    build = _run(["build", "--catalog", str(catalog), "--out", str(out), "--sources", *ids], env, verbose)
    # Every source failed to fetch, each with a message, and the build said so.
    assert build.returncode == 1, build.stderr
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    errors = {sid: manifest["sources"][sid]["error"] for sid in ids}
    assert all(manifest["sources"][sid]["status"] == "failed" for sid in ids), errors
    if not verbose:
        assert "gave up after 5 attempts" in errors["closed_port"] and "127.0.0.1:9" in errors["closed_port"]
    assert "HTTP 400" in errors["gh_src"]
    assert "Tianchi refused a download URL" in errors["tianchi_src"] and "***" in errors["tianchi_src"]
    assert errors["hf_src"].startswith("hf_src: access denied (HTTP 401)")
    # The secrets were in play: the server received each of them ...
    received = json.dumps(_EchoHandler.seen)
    assert SECRETS["HF_TOKEN"] in received and SECRETS["GITHUB_TOKEN"] in received
    assert "tc_FAKE_SECRET_COOKIE_789" in received and SECRETS["TIANCHI_CSRF_TOKEN"] in received
    # ... and quoted them back; yet no output, log line or file shows one.
    assert _leaks(build.stdout) == [] and _leaks(build.stderr) == []
    assert _scan_tree(tmp_path / "out") == {}
    assert _scan_tree(tmp_path / "cache") == {}
    if (tmp_path / "hf_home").exists():
        assert _scan_tree(tmp_path / "hf_home") == {}


def test_no_secret_reaches_any_output_of_a_mirror_build(tmp_path, echo_server):
    catalog = _catalog(tmp_path / "sources.yaml")
    mirror = _mirror(tmp_path)
    env = _child_env(tmp_path, echo_server)
    out = tmp_path / "out"
    build = _run(["build", "--catalog", str(catalog), "--mirror", str(mirror), "--out", str(out),
                  "--sources", "good_qa", "broken_qa"], env)
    assert build.returncode == 0, build.stderr
    validate = _run(["validate", str(out)], env)
    assert validate.returncode == 0, validate.stderr
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["sources"]["broken_qa"]["counts"]["rejected_by_reason"] == {"bad_json": 1}
    assert (out / "README.md").exists() and list((out / "rejects").glob("*.parquet"))
    for text in (build.stdout, build.stderr, validate.stdout, validate.stderr):
        assert _leaks(text) == []
    assert _scan_tree(out) == {}
    assert _EchoHandler.seen == []  # a mirror build does not touch the network


def test_redacted_error_still_says_what_happened(monkeypatch):
    """`redact` (etl/fetch/net.py) scrubs values, not the message around them."""
    from etl.fetch.net import redact

    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    text = f"401 for Authorization: Bearer {SECRETS['HF_TOKEN']}; Cookie: {SECRETS['TIANCHI_COOKIE']}"
    assert redact(text) == "401 for Authorization: Bearer ***; Cookie: ***"
    assert redact("Cookie: login_ticket=tc_FAKE_SECRET_COOKIE_789") == "Cookie: login_ticket=***"


# --------------------------------------------------------------------------- nothing is executed

_FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
_FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}
_FORBIDDEN_ATTRIBUTES = {"unsafe_load", "full_load", "read_pickle", "load_dataset"}
_FORBIDDEN_TEXT = ("trust_remote_code", "pickle", "allow_pickle")


def _modules() -> list[Path]:
    files = sorted((ROOT / "etl").rglob("*.py"))
    assert len(files) > 20
    return files


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_can_execute_downloaded_content(path):
    source = path.read_text(encoding="utf-8")
    for word in _FORBIDDEN_TEXT:
        assert word not in source, f"{path.name} mentions {word}"
    tree = ast.parse(source, filename=str(path))
    for node in ast.walk(tree):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name):
                assert func.id not in _FORBIDDEN_CALLS, f"{where}: {func.id}()"
            if isinstance(func, ast.Attribute):
                assert func.attr not in _FORBIDDEN_ATTRIBUTES, f"{where}: .{func.attr}()"
                if func.attr == "load" and isinstance(func.value, ast.Name) and func.value.id == "yaml":
                    raise AssertionError(f"{where}: yaml.load (use yaml.safe_load)")
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name.split(".")[0] not in _FORBIDDEN_MODULES, f"{where}: import {alias.name}"
        if isinstance(node, ast.ImportFrom) and node.module:
            assert node.module.split(".")[0] not in _FORBIDDEN_MODULES, f"{where}: from {node.module} import"
