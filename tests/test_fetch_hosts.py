"""Each host's downloader against a local server that speaks the host's protocol (no test touches the internet)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from etl.catalog import Source
from etl.fetch import make_fetcher
from etl.fetch.base import FetchError
from etl.fetch.net import RetryPolicy
from tests.helpers_fetch import (
    COMMIT,
    FIXTURES,
    QUOTA_PAGE,
    FakeHost,
    FakeHub,
    confirm_page,
    isolate_env,
    lfs_pointer,
    ranged,
    serve_github,
    serve_tianchi,
    sha,
)

PUBMEDQA = (FIXTURES / "pubmedqa" / "ori_pqal.json").read_bytes()
SFT = (FIXTURES / "medicalgpt_sft_medical" / "data" / "sft" / "medical_sft_1K_format.jsonl").read_bytes()
ZIP = (FIXTURES / "cmedqa2" / "dev_candidates.zip").read_bytes()
FAST = RetryPolicy(attempts=3, base=0.0, seed=0)
SECRET = "sekrit-token-value-123456"


@pytest.fixture
def fake(httpserver: HTTPServer) -> FakeHost:
    return FakeHost(httpserver)


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_env(monkeypatch, tmp_path)


def source(**keys: object) -> Source:
    base = {"id": "src", "name": "Src", "task": "sft", "format": "alpaca"}
    return Source.model_validate({**base, **keys})


def fetcher(tmp_path: Path, lock: bool = False):  # noqa: ANN201 - SourceFetcher
    return make_fetcher(cache_dir=tmp_path / "cache", lock_path=tmp_path / "sources.lock" if lock else None,
                        retry=FAST)


def secrets_absent(tmp_path: Path, caplog: pytest.LogCaptureFixture, *texts: str) -> None:
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in caplog.text
    for text in texts:
        assert SECRET not in text


# ---- Hugging Face Hub ------------------------------------------------------------------------------------

@pytest.fixture
def hub(fake: FakeHost, monkeypatch: pytest.MonkeyPatch) -> FakeHost:
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    return fake


def test_hf_fetches_selected_files_at_the_resolved_commit_and_then_only_from_cache(
        hub: FakeHost, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="etl.fetch")
    FakeHub(hub, {"data/train.json": PUBMEDQA, "data/sft.jsonl": SFT, "medical.py": b"# loading script\n"},
            lfs={"data/train.json"})
    src = source(host="hf", repo="org/medical", revision="main", files=["data/*.json*"])
    got = fetcher(tmp_path, lock=True).fetch(src)
    assert got.revision == COMMIT
    assert [f.relpath for f in got.files] == ["data/sft.jsonl", "data/train.json"]
    assert got.files[1].sha256 == sha(PUBMEDQA) and got.files[1].path.read_bytes() == PUBMEDQA
    assert hub.count("/resolve/") == 2 and hub.count("medical.py") == 0
    assert f"data/train.json done, {len(PUBMEDQA) / 1000:.1f} kB" in caplog.text  # the Hub's bytes reach our progress
    record = json.loads((got.root / ".medcorpus-record.json").read_text())
    assert record["files"]["data/train.json"]["revision"] == COMMIT
    assert {"url", "size", "sha256", "time"} <= set(record["files"]["data/train.json"])

    again = fetcher(tmp_path, lock=True).fetch(src)
    assert again.files == got.files
    assert hub.count("/resolve/") == 2  # nothing downloaded twice


def test_hf_pinned_commit_in_cache_makes_no_request(hub: FakeHost, tmp_path: Path) -> None:
    FakeHub(hub, {"a.jsonl": SFT}, lfs=set())
    src = source(host="hf", repo="org/ds", revision=COMMIT, files=["a.jsonl"])
    fetcher(tmp_path).fetch(src)
    before = len(hub.log)
    fetcher(tmp_path).fetch(src)
    assert len(hub.log) == before


def test_hf_lfs_checksum_mismatch_is_refused(hub: FakeHost, tmp_path: Path) -> None:
    FakeHub(hub, {"big.json": PUBMEDQA}, lfs={"big.json"}, lfs_sha={"big.json": "0" * 64})
    with pytest.raises(FetchError, match=r"src: checksum mismatch for big\.json: expected sha256 0{64}, got"):
        fetcher(tmp_path).fetch(source(host="hf", repo="org/ds", revision=COMMIT, files=["big.json"]))
    assert not (tmp_path / "cache" / "src" / COMMIT / "big.json").exists()


def test_hf_token_is_sent_and_never_shown(hub: FakeHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    FakeHub(hub, {"a.jsonl": SFT}, lfs=set(), token=SECRET)
    src = source(host="hf", repo="org/gated", revision="main", files=["a.jsonl"])
    with pytest.raises(FetchError, match="HF_TOKEN") as denied:
        fetcher(tmp_path).fetch(src)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    assert fetcher(tmp_path).fetch(src).files[0].sha256 == sha(SFT)
    secrets_absent(tmp_path, caplog, str(denied.value))


def test_hf_missing_repo_says_what_to_check(hub: FakeHost, tmp_path: Path) -> None:
    hub.route("GET", r"/api/datasets/.*", lambda req: Response(
        json.dumps({"error": "Repository not found"}), status=404, headers={"X-Error-Code": "RepoNotFound"},
        content_type="application/json"))
    with pytest.raises(FetchError, match=r"src: dataset repo org/nope not found .*check `repo`"):
        fetcher(tmp_path).fetch(source(host="hf", repo="org/nope", revision="main", files=["x"]))


def test_hf_server_error_then_success(hub: FakeHost, tmp_path: Path) -> None:
    real = FakeHub(hub, {"a.jsonl": SFT}, lfs=set())
    calls = []

    def flaky(req: Request, repo: str, rev: str) -> Response:
        calls.append(1)
        return Response("oops", status=500) if len(calls) == 1 else real.tree(req, repo, rev)

    hub.routes.insert(0, ("GET", re.compile(r"/api/datasets/([^/]+/[^/]+)/tree/([^/]+)"), flaky))
    got = fetcher(tmp_path).fetch(source(host="hf", repo="org/ds", revision=COMMIT, files=["a.jsonl"]))
    assert got.files[0].sha256 == sha(SFT) and len(calls) >= 2


def test_hf_abbreviated_or_missing_revision_is_resolved_and_checked(hub: FakeHost, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    FakeHub(hub, {"a.jsonl": SFT}, lfs=set())
    for revision in (COMMIT[:7], None):
        got = fetcher(tmp_path).fetch(source(host="hf", repo="org/ds", revision=revision, files=["a.jsonl"]))
        assert got.revision == COMMIT
    assert "abbreviated commit" in caplog.text and "follows the default branch" in caplog.text
    with pytest.raises(FetchError, match="not that abbreviated commit"):
        fetcher(tmp_path).fetch(source(host="hf", repo="org/ds", revision="abcdef0", files=["a.jsonl"]))


# ---- GitHub ----------------------------------------------------------------------------------------------

@pytest.fixture
def github(fake: FakeHost, monkeypatch: pytest.MonkeyPatch) -> FakeHost:
    serve_github(fake, monkeypatch, "o/r", {"data/sft.jsonl": SFT, "README.md": b"# readme\n"},
                 lfs={"data/big.json": PUBMEDQA})
    return fake


def test_github_raw_files_and_lfs_objects_at_a_commit(github: FakeHost, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", SECRET)
    src = source(host="github", repo="o/r", revision="master", files=["data/*.json*"])
    got = fetcher(tmp_path, lock=True).fetch(src)
    assert got.revision == COMMIT
    assert {f.relpath: f.sha256 for f in got.files} == {"data/big.json": sha(PUBMEDQA), "data/sft.jsonl": sha(SFT)}
    assert github.count("/media/") == 1
    assert all(h.get("Authorization") == f"Bearer {SECRET}" for _, _, h in github.log)
    assert "branch or tag" in caplog.text
    secrets_absent(tmp_path, caplog)


def test_github_lfs_object_that_does_not_match_its_pointer(github: FakeHost, tmp_path: Path) -> None:
    github.routes.insert(0, ("GET", re.compile(rf"/media/o/r/{COMMIT}/data/big.json"),
                             lambda req: Response(SFT[: len(PUBMEDQA)].ljust(len(PUBMEDQA), b" "))))
    with pytest.raises(FetchError, match=r"LFS object for data/big\.json does not match its pointer"):
        fetcher(tmp_path).fetch(source(host="github", repo="o/r", revision=COMMIT, files=["data/big.json"]))


def test_github_lfs_object_gone_is_a_clear_error(github: FakeHost, tmp_path: Path) -> None:
    github.routes.insert(0, ("GET", re.compile(rf"/media/o/r/{COMMIT}/data/big.json"),
                             lambda req: Response(lfs_pointer(PUBMEDQA))))
    with pytest.raises(FetchError, match=r"data/big\.json is a Git LFS pointer .*--mirror"):
        fetcher(tmp_path).fetch(source(host="github", repo="o/r", revision=COMMIT, files=["data/big.json"]))


def test_github_404_fails_at_once_naming_the_source(github: FakeHost, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"^src: not found \(HTTP 404\).*missing\.json.*GITHUB_TOKEN"):
        fetcher(tmp_path).fetch(source(host="github", repo="o/r", revision=COMMIT, files=["missing.json"]))
    assert github.count("missing.json") == 1  # no retries on 404


# ---- Google Drive ----------------------------------------------------------------------------------------

@pytest.fixture
def drive(fake: FakeHost, monkeypatch: pytest.MonkeyPatch) -> FakeHost:
    monkeypatch.setenv("MEDCORPUS_GDRIVE_URL", fake.url)
    return fake


def test_gdrive_goes_through_the_virus_scan_confirmation(drive: FakeHost, tmp_path: Path) -> None:
    drive.route("GET", r"/uc", lambda req: Response(confirm_page(f"{drive.url}/download"),
                                                    content_type="text/html; charset=utf-8"))

    def download(req: Request) -> Response:
        assert req.args["confirm"] == "t" and req.args["id"] == "FILEID" and req.args["uuid"] == "1234-abcd"
        return ranged(req, ZIP, {"Content-Disposition": 'attachment; filename="dev_candidates.zip"'})

    drive.route("GET", r"/download", download)
    src = source(host="gdrive", file_id="FILEID", filename="dev_candidates.zip")
    got = fetcher(tmp_path).fetch(src)
    assert got.files[0].relpath == "dev_candidates.zip" and got.files[0].sha256 == sha(ZIP)
    record = json.loads((got.root / ".medcorpus-record.json").read_text())
    assert "id=FILEID" in record["files"]["dev_candidates.zip"]["url"]
    fetcher(tmp_path).fetch(src)
    assert drive.count("/download") == 1


def test_gdrive_quota_page_is_an_error_that_suggests_a_mirror(drive: FakeHost, tmp_path: Path) -> None:
    drive.route("GET", r"/uc", lambda req: Response(QUOTA_PAGE, content_type="text/html"))
    src = source(host="gdrive", file_id="FILEID", filename="data.zip")
    with pytest.raises(FetchError, match=r"HTML page instead of data\.zip .*Too many users.*--mirror"):
        fetcher(tmp_path).fetch(src)
    assert not list((tmp_path / "cache" / "src").rglob("data.zip"))


def test_gdrive_html_after_confirmation_is_refused(drive: FakeHost, tmp_path: Path) -> None:
    drive.route("GET", r"/uc", lambda req: Response(confirm_page(f"{drive.url}/download"),
                                                    content_type="text/html"))
    drive.route("GET", r"/download", lambda req: Response("<html><body>Sign in</body></html>",
                                                          content_type="text/html"))
    with pytest.raises(FetchError, match=r"HTML page instead of data\.zip"):
        fetcher(tmp_path).fetch(source(host="gdrive", file_id="FILEID", filename="data.zip"))


# ---- Tianchi ---------------------------------------------------------------------------------------------

@pytest.fixture
def tianchi(fake: FakeHost, monkeypatch: pytest.MonkeyPatch) -> FakeHost:
    serve_tianchi(fake, monkeypatch, 95414, f"tc={SECRET}; _csrf=abc",
                  {"101": ("CHIP-CDN/train.json", PUBMEDQA), "102": ("CHIP-CDN/dev.jsonl", SFT)})
    return fake


def test_tianchi_with_cookie_uses_file_list_and_signed_urls(tianchi: FakeHost, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("TIANCHI_COOKIE", f"tc={SECRET}; _csrf=abc")
    src = source(host="tianchi", dataset_id="95414", files=["CHIP-CDN/train.json"])
    got = fetcher(tmp_path).fetch(src)
    assert got.files[0].sha256 == sha(PUBMEDQA)
    assert tianchi.count("/oss/") == 1
    record = (got.root / ".medcorpus-record.json").read_text()
    assert "Signature" not in record
    secrets_absent(tmp_path, caplog)


def test_tianchi_without_cookie_says_which_files_to_put_where_then_picks_them_up(tmp_path: Path) -> None:
    src = source(host="tianchi", dataset_id="95414", files=["CHIP-CDN/train.json", "CHIP-CDN/dev.jsonl"])
    folder = tmp_path / "cache" / "src" / "unversioned"
    with pytest.raises(FetchError) as err:
        fetcher(tmp_path).fetch(src)
    message = str(err.value)
    assert "CHIP-CDN/train.json, CHIP-CDN/dev.jsonl" in message
    assert "https://tianchi.aliyun.com/dataset/95414" in message and str(folder) in message
    assert "TIANCHI_COOKIE" in message

    (folder / "CHIP-CDN").mkdir(parents=True)
    (folder / "CHIP-CDN" / "train.json").write_bytes(PUBMEDQA)
    (folder / "CHIP-CDN" / "dev.jsonl").write_bytes(SFT)
    got = fetcher(tmp_path, lock=True).fetch(src)
    assert [f.sha256 for f in got.files] == [sha(PUBMEDQA), sha(SFT)]


def test_tianchi_hand_placed_file_is_checked_against_the_lock(tmp_path: Path) -> None:
    src = source(host="tianchi", dataset_id="1", files=["a.json"])
    folder = tmp_path / "cache" / "src" / "unversioned"
    folder.mkdir(parents=True)
    (folder / "a.json").write_bytes(PUBMEDQA)
    fetcher(tmp_path, lock=True).lock([src])
    (folder / "a.json").write_bytes(SFT)
    with pytest.raises(FetchError, match=rf"a\.json .*expected sha256 {sha(PUBMEDQA)}, got {sha(SFT)}"):
        fetcher(tmp_path, lock=True).fetch(src)


# ---- plain HTTP ------------------------------------------------------------------------------------------

def test_http_500_then_success(fake: FakeHost, tmp_path: Path) -> None:
    calls = []

    def flaky(req: Request) -> Response:
        calls.append(1)
        return Response("busy", status=503) if len(calls) < 3 else ranged(req, SFT)

    fake.route("GET", r"/files/data.jsonl", flaky)
    got = fetcher(tmp_path).fetch(source(host="http", url=f"{fake.url}/files/data.jsonl"))
    assert got.files[0].sha256 == sha(SFT) and len(calls) == 3


def test_http_gives_up_after_bounded_retries(fake: FakeHost, tmp_path: Path) -> None:
    fake.route("GET", r"/files/data.jsonl", lambda req: Response("down", status=500))
    with pytest.raises(FetchError, match=r"gave up after 3 attempts: HTTP 500"):
        fetcher(tmp_path).fetch(source(host="http", url=f"{fake.url}/files/data.jsonl"))
    assert fake.count("data.jsonl") == 3


def test_http_truncated_transfer_is_resumed_with_range(fake: FakeHost, tmp_path: Path) -> None:
    def cut(req: Request) -> Response:
        if "Range" not in req.headers:
            half = PUBMEDQA[: len(PUBMEDQA) // 2]
            return Response(iter([half]), headers={"Content-Length": str(len(PUBMEDQA))},
                            content_type="application/json", direct_passthrough=True)
        return ranged(req, PUBMEDQA)

    fake.route("GET", r"/big.json", cut)
    got = fetcher(tmp_path).fetch(source(host="http", url=f"{fake.url}/big.json"))
    assert got.files[0].path.read_bytes() == PUBMEDQA
    ranges = [h.get("Range") for m, p, h in fake.log if p == "/big.json"]
    assert ranges == [None, f"bytes={len(PUBMEDQA) // 2}-"]


def test_http_checksum_mismatch_against_the_catalogue(fake: FakeHost, tmp_path: Path) -> None:
    fake.route("GET", r"/data.jsonl", lambda req: ranged(req, SFT))
    src = source(host="http", url=f"{fake.url}/data.jsonl", sha256={"data.jsonl": "f" * 64})
    with pytest.raises(FetchError, match=rf"checksum mismatch for data\.jsonl: expected sha256 f{{64}}, got {sha(SFT)}"):
        fetcher(tmp_path).fetch(src)
    assert not (tmp_path / "cache" / "src" / "unversioned" / "data.jsonl").exists()


def test_http_html_instead_of_data_is_refused(fake: FakeHost, tmp_path: Path) -> None:
    fake.route("GET", r"/data.csv", lambda req: Response("<!DOCTYPE html><html>login</html>",
                                                         content_type="text/html"))
    with pytest.raises(FetchError, match=r"HTML page instead of data\.csv.*--mirror"):
        fetcher(tmp_path).fetch(source(host="http", url=f"{fake.url}/data.csv"))


def test_http_forbidden_fails_at_once(fake: FakeHost, tmp_path: Path) -> None:
    fake.route("GET", r"/private.json", lambda req: Response("no", status=403))
    with pytest.raises(FetchError, match=r"src: access denied \(HTTP 403\)"):
        fetcher(tmp_path).fetch(source(host="http", url=f"{fake.url}/private.json"))
    assert fake.count("/private.json") == 1


def test_http_pages_are_saved_under_pages(fake: FakeHost, tmp_path: Path) -> None:
    fake.route("GET", r"/wiki/(.+)", lambda req, name: Response(f"<html><body>{name}</body></html>",
                                                                 content_type="text/html"))
    urls = [f"{fake.url}/wiki/Fever", f"{fake.url}/wiki/Cough?lang=zh"]
    got = fetcher(tmp_path).fetch(source(host="http", urls=urls, task="pretrain", format="html"))
    names = [f.relpath for f in got.files]
    assert len(names) == 2 and all(re.fullmatch(r"pages/[A-Za-z0-9._-]+\.html", n) for n in names)
    assert len(set(names)) == 2
    fetcher(tmp_path).fetch(source(host="http", urls=urls, task="pretrain", format="html"))
    assert fake.count("/wiki/") == 2
