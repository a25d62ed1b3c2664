"""Safe archive extraction (zip-slip, symlinks, bombs) and GitHub's archive route for trees too large to list."""

from __future__ import annotations

import hashlib
import json
import re
import stat
import zipfile
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from etl.catalog import Source
from etl.fetch import make_fetcher
from etl.fetch.archive import extract_zip
from etl.fetch.base import FetchError
from etl.fetch.net import RetryPolicy

FIXTURES = Path(__file__).parent / "fixtures"
SFT = (FIXTURES / "medicalgpt_sft_medical" / "data" / "sft" / "medical_sft_1K_format.jsonl").read_bytes()
PUBMEDQA = (FIXTURES / "pubmedqa" / "ori_pqal.json").read_bytes()
COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


def make_zip(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def everything(name: str) -> str:
    return name


def test_extracts_selected_members_and_never_creates_symlinks(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", {"top/data/a.json": PUBMEDQA, "top/README.md": b"x"},
                       symlinks={"top/data/link.json": "/etc/passwd"})
    out = extract_zip(archive, tmp_path / "out", "s", lambda n: n.removeprefix("top/") if n.endswith(".json") else None)
    assert out == ["data/a.json"]
    assert (tmp_path / "out" / "data" / "a.json").read_bytes() == PUBMEDQA
    assert not (tmp_path / "out" / "data" / "link.json").exists()


@pytest.mark.parametrize("evil", ["../escape.txt", "top/../../escape.txt", "/abs/escape.txt"])
def test_zip_slip_member_refuses_the_archive(tmp_path: Path, evil: str) -> None:
    archive = make_zip(tmp_path / "a.zip", {"ok.txt": b"fine", evil: b"pwned"})
    with pytest.raises(FetchError, match="zip-slip"):
        extract_zip(archive, tmp_path / "out", "s", everything)
    assert not (tmp_path / "escape.txt").exists()


def test_oversized_archive_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", {"a.json": PUBMEDQA, "b.jsonl": SFT})
    with pytest.raises(FetchError, match="extracts to more than 50000 bytes"):
        extract_zip(archive, tmp_path / "out", "s", everything, max_total=50_000)


def test_zip_bomb_ratio_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", {"zeros.bin": b"\0" * (3 << 20)})
    with pytest.raises(FetchError, match="likely zip bomb"):
        extract_zip(archive, tmp_path / "out", "s", everything)


def test_not_a_zip(tmp_path: Path) -> None:
    (tmp_path / "a.zip").write_bytes(b"<html>nope</html>")
    with pytest.raises(FetchError, match="not a valid zip archive"):
        extract_zip(tmp_path / "a.zip", tmp_path / "out", "s", everything)


def test_github_tree_too_large_to_list_comes_from_the_commit_archive(httpserver: HTTPServer, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    make_zip(tmp_path / "repo.zip", {f"r-{COMMIT}/data/a.json": PUBMEDQA, f"r-{COMMIT}/data/b.jsonl": SFT,
                                     f"r-{COMMIT}/src/x.py": b"print()"})
    archive = (tmp_path / "repo.zip").read_bytes()
    log: list[str] = []

    def handle(req: Request) -> Response:
        log.append(req.path)
        if req.path.startswith("/api/repos/o/r/git/trees/"):
            return Response(json.dumps({"truncated": True, "tree": []}), content_type="application/json")
        if req.path == f"/archive/o/r/zip/{COMMIT}":
            return Response(archive, content_type="application/zip")
        return Response("missing", status=404)

    httpserver.expect_request(re.compile(".*")).respond_with_handler(handle)
    base = httpserver.url_for("").rstrip("/")
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.setenv("MEDCORPUS_GITHUB_API", f"{base}/api")
    monkeypatch.setenv("MEDCORPUS_GITHUB_ARCHIVE", f"{base}/archive")
    src = Source(id="big", name="big", host="github", repo="o/r", revision=COMMIT, files=("data/*",),
                 task="sft", format="alpaca")
    fetcher = make_fetcher(cache_dir=tmp_path / "cache", retry=RetryPolicy(attempts=2, base=0.0))
    got = fetcher.fetch(src)
    assert [(f.relpath, f.sha256) for f in got.files] == [("data/a.json", hashlib.sha256(PUBMEDQA).hexdigest()),
                                                          ("data/b.jsonl", hashlib.sha256(SFT).hexdigest())]
    assert log.count(f"/archive/o/r/zip/{COMMIT}") == 1
    assert not list((tmp_path / "cache" / "big" / ".partial").glob("*.zip"))
    fetcher.fetch(src)
    assert log.count(f"/archive/o/r/zip/{COMMIT}") == 1
