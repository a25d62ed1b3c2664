"""The cache, sources.lock, make_fetcher's dispatch, concurrency, and the fetch / lock commands."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from etl.catalog import Source
from etl.commands import fetch as fetch_command
from etl.fetch import SourceFetcher, make_fetcher
from etl.fetch.base import FetchedSource, FetchError
from etl.fetch.builtin import BuiltinFetcher
from etl.fetch.cache import check_relpath, default_cache_dir
from etl.fetch.common import glob_regex, select
from etl.fetch.lock import LockFile, LockMismatch
from etl.fetch.net import RetryPolicy, redact

FIXTURES = Path(__file__).parent / "fixtures"
SFT = (FIXTURES / "medicalgpt_sft_medical" / "data" / "sft" / "medical_sft_1K_format.jsonl").read_bytes()
PUBMEDQA = (FIXTURES / "pubmedqa" / "ori_pqal.json").read_bytes()
COMMIT = "89abcdef0123456789abcdef0123456789abcdef"
FAST = RetryPolicy(attempts=2, base=0.0)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Upstream:
    """Plain files plus a GitHub-like API, with a request log; `files` may be changed mid-test."""

    def __init__(self, server: HTTPServer) -> None:
        self.files = {"/f/data.jsonl": SFT, "/f/other.json": PUBMEDQA}
        self.log: list[str] = []
        self.url = server.url_for("").rstrip("/")
        server.expect_request(re.compile(".*")).respond_with_handler(self.handle)

    def handle(self, req: Request) -> Response:
        self.log.append(req.path)
        if req.path.startswith("/api/repos/o/r/commits/"):
            return Response(json.dumps({"sha": COMMIT}), content_type="application/json")
        if req.path == f"/raw/o/r/{COMMIT}/data.jsonl":
            return Response(SFT)
        if req.path in self.files:
            return Response(self.files[req.path])
        return Response("missing", status=404)


@pytest.fixture
def upstream(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> Upstream:
    for name in ("GITHUB_TOKEN", "MEDCORPUS_CACHE"):
        monkeypatch.delenv(name, raising=False)
    up = Upstream(httpserver)
    monkeypatch.setenv("MEDCORPUS_GITHUB_API", f"{up.url}/api")
    monkeypatch.setenv("MEDCORPUS_GITHUB_RAW", f"{up.url}/raw")
    return up


def http_source(up: Upstream, sid: str = "src", path: str = "/f/data.jsonl") -> Source:
    return Source(id=sid, name=sid, host="http", url=f"{up.url}{path}", task="sft", format="alpaca")


def github_source(revision: str = "main") -> Source:
    return Source(id="gh", name="gh", host="github", repo="o/r", revision=revision, files=("data.jsonl",),
                  task="sft", format="alpaca")


def make(tmp_path: Path, lock: bool = True) -> SourceFetcher:
    return make_fetcher(cache_dir=tmp_path / "cache", lock_path=tmp_path / "sources.lock" if lock else None,
                        retry=FAST)


def test_lock_is_deterministic_and_pins_branches(upstream: Upstream, tmp_path: Path) -> None:
    sources = [http_source(upstream), github_source()]
    results = make(tmp_path).lock(sources)
    assert all(isinstance(r, FetchedSource) for r in results.values())
    first = (tmp_path / "sources.lock").read_bytes()
    doc = json.loads(first)
    assert doc["sources"]["gh"] == {"host": "github", "revision": "main", "resolved": COMMIT,
                                    "files": {"data.jsonl": {"size": len(SFT), "sha256": sha(SFT)}}}
    assert doc["sources"]["src"]["resolved"] is None
    assert "time" not in first.decode() and str(tmp_path) not in first.decode()
    make(tmp_path).lock(list(reversed(sources)))
    assert (tmp_path / "sources.lock").read_bytes() == first


def test_a_locked_branch_is_fetched_at_its_locked_commit_without_any_request(upstream: Upstream,
                                                                            tmp_path: Path) -> None:
    make(tmp_path).lock([github_source()])
    upstream.log.clear()
    got = make(tmp_path).fetch(github_source())
    assert got.revision == COMMIT and upstream.log == []


def test_fetch_refuses_a_file_that_differs_from_the_lock(upstream: Upstream, tmp_path: Path) -> None:
    src = http_source(upstream)
    make(tmp_path).lock([src])
    upstream.files["/f/data.jsonl"] = PUBMEDQA
    with pytest.raises(FetchError, match=rf"^src: .*data\.jsonl.*expected sha256 {sha(SFT)}.*{sha(PUBMEDQA)}"):
        make(tmp_path).fetch(src, force=True)


def test_verify_against_lock_names_source_file_expected_and_actual(upstream: Upstream, tmp_path: Path) -> None:
    src = http_source(upstream)
    make(tmp_path).lock([src])
    lock = LockFile.load(tmp_path / "sources.lock")
    entry = lock.get("src")
    assert entry is not None
    fetched = make(tmp_path, lock=False).fetch(src)
    bad = FetchedSource("src", fetched.root, None, (fetched.files[0].__class__(
        "data.jsonl", fetched.files[0].path, 3, "ab" * 32),))
    from etl.fetch.lock import verify_against_lock
    with pytest.raises(LockMismatch, match=rf"src: file data\.jsonl differs from sources\.lock: expected sha256 "
                                           rf"{sha(SFT)} \({len(SFT)} bytes\), actual sha256 (ab){{32}} \(3 bytes\)"):
        verify_against_lock(bad, entry)


def test_a_catalogue_revision_that_left_the_lock_behind_is_refused(upstream: Upstream, tmp_path: Path) -> None:
    make(tmp_path).lock([github_source("main")])
    with pytest.raises(LockMismatch, match=r"gh: the catalogue asks for revision 'v2'.*medcorpus lock gh"):
        make(tmp_path).fetch(github_source("v2"))


def test_mirror_serves_every_host_but_builtin(upstream: Upstream, tmp_path: Path) -> None:
    (tmp_path / "mirror" / "src").mkdir(parents=True)
    (tmp_path / "mirror" / "src" / "data.jsonl").write_bytes(b'{"a": 1}\n')
    (tmp_path / "pkg" / "persona").mkdir(parents=True)
    (tmp_path / "pkg" / "persona" / "identity.jsonl").write_bytes(b'{"b": 2}\n')
    fetcher = make_fetcher(mirror=tmp_path / "mirror", cache_dir=tmp_path / "cache")
    fetcher.builtin = BuiltinFetcher(tmp_path / "pkg")
    assert fetcher.fetch(http_source(upstream)).root == tmp_path / "mirror" / "src"
    persona = Source(id="persona", name="p", host="builtin", files=("identity.jsonl",), task="sft", format="alpaca")
    assert fetcher.fetch(persona).root == tmp_path / "pkg" / "persona"
    assert upstream.log == []


def test_sources_download_concurrently_and_one_failure_does_not_stop_the_others(upstream: Upstream,
                                                                             tmp_path: Path) -> None:
    sources = [http_source(upstream, "a"), http_source(upstream, "b", "/f/missing.json"),
               http_source(upstream, "c", "/f/other.json")]
    results = make(tmp_path, lock=False).fetch_many(sources, workers=3)
    assert list(results) == ["a", "b", "c"]
    assert isinstance(results["b"], FetchError) and "HTTP 404" in str(results["b"])
    assert isinstance(results["c"], FetchedSource) and results["c"].files[0].sha256 == sha(PUBMEDQA)


def test_fetch_and_lock_commands_and_source_states(upstream: Upstream, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    catalog = tmp_path / "cat" / "sources.yaml"
    catalog.parent.mkdir()
    catalog.write_text(f"""sources:
  - {{id: plain, name: Plain, host: http, url: "{upstream.url}/f/data.jsonl", task: sft, format: alpaca}}
  - {{id: gh, name: GH, host: github, repo: o/r, revision: main, files: [data.jsonl], task: sft, format: alpaca}}
""", encoding="utf-8")
    parser = argparse.ArgumentParser()
    fetch_command.register(parser.add_subparsers())
    cache = tmp_path / "cache"

    def run(*argv: str) -> int:
        args = parser.parse_args([*argv, "--catalog", str(catalog), "--cache", str(cache)])
        return args.func(args)

    from etl.catalog import load_catalog
    states = fetch_command.source_states(load_catalog(catalog), cache)
    assert states["plain"]["fetched"] is False and states["plain"]["lock"] == "not locked"

    assert run("fetch") == 0
    assert run("lock") == 0
    assert (catalog.parent / "sources.lock").exists()
    states = fetch_command.source_states(load_catalog(catalog), cache)
    assert states["plain"] == {"host": "http", "revision": None, "resolved": None, "fetched": True,
                               "cached_size": len(SFT), "lock": "locked"}
    assert states["gh"]["resolved"] == COMMIT and states["gh"]["fetched"] and states["gh"]["lock"] == "locked"

    upstream.log.clear()
    assert run("fetch", "plain", "gh") == 0
    assert upstream.log == []  # a second fetch downloads nothing
    assert run("fetch", "--force", "plain") == 0
    assert upstream.log == ["/f/data.jsonl"]
    assert "plain: 1 file(s)" in capsys.readouterr().out


def test_cache_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDCORPUS_CACHE", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    assert default_cache_dir(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.delenv("MEDCORPUS_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "medcorpus"


def test_remote_globs_select_like_local_globs(tmp_path: Path) -> None:
    names = ["a.json", "data/b.json", "data/sub/c.json", "data/d.csv", "x[1].txt"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    for pattern in ["*.json", "data/*", "data/**/*.json", "**/*.json", "data/?.csv", "x[[]1].txt", "[ad]*"]:
        local = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob(pattern) if p.is_file())
        remote = sorted(n for n in names if glob_regex(pattern).match(n))
        assert remote == local, pattern
    assert select("s", ["data/*.json", "*.json"], names) == ["data/b.json", "a.json"]
    with pytest.raises(FetchError, match=r"s: no file matches 'nope\*' upstream"):
        select("s", ["nope*"], names)


def test_unsafe_remote_names_are_refused() -> None:
    for bad in ["../x", "a/../../x", "/etc/passwd", "C:evil"]:
        with pytest.raises(FetchError, match="unsafe file name"):
            check_relpath("s", bad)
    assert check_relpath("s", "data/ok.json") == "data/ok.json"


def test_redact_scrubs_tokens_and_cookie_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_abcdefghijkl")
    monkeypatch.setenv("TIANCHI_COOKIE", "tc=session-value-1; _csrf=csrf-value-22")
    text = redact("token ghp_abcdefghijkl and csrf-value-22 and session-value-1")
    assert text == "token *** and *** and ***"
