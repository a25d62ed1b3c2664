"""Local servers that speak each dataset host's protocol, shared by the fetch tests.

One `FakeHost` (a catch-all handler on a pytest-httpserver, with a route table and a request log) can carry
several hosts at once, since their paths do not collide: the Hub (`/api/datasets/...`, `/datasets/.../resolve`),
GitHub (`/api`, `/raw`, `/media` prefixes), Google Drive (`/uc`, `/download`), Tianchi (`/api/notebook`,
`/api/dataset`, `/oss`) and plain files. Nothing here touches the internet.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

FIXTURES = Path(__file__).parent / "fixtures"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
SECRET_ENV = ("HF_TOKEN", "GITHUB_TOKEN", "TIANCHI_COOKIE", "TIANCHI_CSRF_TOKEN", "MEDCORPUS_CACHE")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def isolate_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials from the developer's shell, Hub caches and settings under `tmp_path`, Hub online
    (the servers are local), no telemetry."""
    for name in SECRET_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-home" / "datasets"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    import huggingface_hub.constants as hub_constants
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)


def ranged(req: Request, data: bytes, headers: dict[str, str] | None = None) -> Response:
    """Serve `data`, honouring a `Range: bytes=N-` request."""
    headers = {"Accept-Ranges": "bytes", **(headers or {})}
    match = re.fullmatch(r"bytes=(\d+)-", req.headers.get("Range", ""))
    if match:
        start = int(match[1])
        if start >= len(data):
            return Response(b"", status=416, headers=headers)
        headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        return Response(data[start:], status=206, headers=headers, content_type="application/octet-stream")
    return Response(data, headers=headers, content_type="application/octet-stream")


class FakeHost:
    """A catch-all handler with a route table and a log of every request (method, path, headers)."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.routes: list[tuple[str, re.Pattern[str], Callable[..., Response]]] = []
        self.log: list[tuple[str, str, dict[str, str]]] = []
        server.expect_request(re.compile(".*")).respond_with_handler(self._handle)

    @property
    def url(self) -> str:
        return self.server.url_for("").rstrip("/")

    def route(self, method: str, pattern: str, handler: Callable[..., Response]) -> None:
        self.routes.append((method, re.compile(pattern), handler))

    def _handle(self, req: Request) -> Response:
        self.log.append((req.method, req.full_path.rstrip("?"), dict(req.headers)))
        for method, pattern, handler in self.routes:
            match = pattern.fullmatch(req.path)
            if match and method in (req.method, "*") or (match and method == "GET" and req.method == "HEAD"):
                return handler(req, *match.groups())
        return Response("not found", status=404)

    def count(self, needle: str, method: str = "GET") -> int:
        return sum(1 for m, path, _ in self.log if m == method and needle in path)


# ---- Hugging Face Hub ------------------------------------------------------------------------------------

class FakeHub:
    """The calls huggingface_hub makes: dataset info at a revision, the recursive tree, and `resolve`.
    `commit` is what every revision resolves to; change it to move the branch."""

    def __init__(self, fake: FakeHost, files: dict[str, bytes], lfs: set[str], token: str | None = None,
                 lfs_sha: dict[str, str] | None = None, commit: str = COMMIT) -> None:
        self.files, self.lfs, self.token, self.lfs_sha, self.commit = files, lfs, token, lfs_sha or {}, commit
        fake.route("GET", r"/api/datasets/([^/]+/[^/]+)/revision/(.+)", self.info)
        fake.route("GET", r"/api/datasets/([^/]+/[^/]+)", lambda req, repo: self.info(req, repo, "main"))
        fake.route("GET", r"/api/datasets/([^/]+/[^/]+)/tree/([^/]+)", self.tree)
        fake.route("GET", r"/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", self.resolve)

    def _denied(self, req: Request) -> Response | None:
        if self.token and req.headers.get("Authorization") != f"Bearer {self.token}":
            return Response(json.dumps({"error": "Access to dataset is restricted"}), status=401,
                            headers={"X-Error-Code": "GatedRepo"}, content_type="application/json")
        return None

    def info(self, req: Request, repo: str, rev: str) -> Response:
        return self._denied(req) or Response(json.dumps({"id": repo, "sha": self.commit}),
                                             content_type="application/json")

    def tree(self, req: Request, repo: str, rev: str) -> Response:
        items = []
        for path, data in self.files.items():
            item = {"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
            if path in self.lfs:
                item["lfs"] = {"oid": self.lfs_sha.get(path, sha(data)), "size": len(data), "pointerSize": 134}
            items.append(item)
        return self._denied(req) or Response(json.dumps(items), content_type="application/json")

    def resolve(self, req: Request, repo: str, rev: str, path: str) -> Response:
        if (denied := self._denied(req)) is not None:
            return denied
        if path not in self.files:
            return Response("Entry not found", status=404, headers={"X-Error-Code": "EntryNotFound"})
        data = self.files[path]
        etag = sha(data) if path in self.lfs else hashlib.sha1(data).hexdigest()
        return ranged(req, data, {"X-Repo-Commit": self.commit, "ETag": f'"{etag}"'})


def serve_hub(fake: FakeHost, monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes], lfs: set[str],
              **keys: object) -> FakeHub:
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    return FakeHub(fake, files, lfs, **keys)  # type: ignore[arg-type]


# ---- GitHub ----------------------------------------------------------------------------------------------

def lfs_pointer(data: bytes) -> bytes:
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha(data)}\nsize {len(data)}\n").encode()


def serve_github(fake: FakeHost, monkeypatch: pytest.MonkeyPatch, repo: str, files: dict[str, bytes],
                 lfs: dict[str, bytes] | None = None, commit: str = COMMIT) -> dict[str, bytes]:
    """A repository whose every ref resolves to `commit`: the REST API (commits, recursive tree), raw files,
    and Git LFS objects (`lfs`: served as pointers at the raw URL, the object itself at the media URL).
    Returns what the raw URLs serve (may be changed by the test)."""
    monkeypatch.setenv("MEDCORPUS_GITHUB_API", f"{fake.url}/api")
    monkeypatch.setenv("MEDCORPUS_GITHUB_RAW", f"{fake.url}/raw")
    monkeypatch.setenv("MEDCORPUS_GITHUB_MEDIA", f"{fake.url}/media")
    lfs = lfs or {}
    raw = {**files, **{path: lfs_pointer(data) for path, data in lfs.items()}}
    folders = sorted({p.rsplit("/", 1)[0] for p in raw if "/" in p})
    fake.route("GET", rf"/api/repos/{repo}/commits/(.+)", lambda req, ref: Response(
        json.dumps({"sha": commit}), content_type="application/json"))
    fake.route("GET", rf"/api/repos/{repo}/git/trees/(.+)", lambda req, ref: Response(json.dumps(
        {"sha": ref, "truncated": False, "tree": [{"path": p, "type": "tree"} for p in folders] +
         [{"path": p, "type": "blob", "size": len(b)} for p, b in raw.items()]}), content_type="application/json"))
    fake.route("GET", rf"/raw/{repo}/{commit}/(.+)", lambda req, path: ranged(req, raw[path]) if path in raw
               else Response("404: Not Found", status=404))
    fake.route("GET", rf"/media/{repo}/{commit}/(.+)", lambda req, path: ranged(req, lfs[path]) if path in lfs
               else Response("404: Not Found", status=404))
    return raw


# ---- Google Drive ----------------------------------------------------------------------------------------

# Drive serves the form on one line, and gdown parses it line by line.
CONFIRM_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<form id="download-form" action="{action}" method="get"><input type="submit" value="Download anyway"/><input type="hidden" name="id" value="{file_id}"><input type="hidden" name="export" value="download"><input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="1234-abcd"></form></body></html>"""

QUOTA_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>
<p class="uc-error-caption">Sorry, you can't view or download this file at this time.</p>
<p class="uc-error-subcaption">Too many users have viewed or downloaded this file recently.</p></body></html>"""


def confirm_page(action: str, file_id: str = "FILEID") -> str:
    return CONFIRM_PAGE.format(action=action, file_id=file_id)


def serve_drive(fake: FakeHost, monkeypatch: pytest.MonkeyPatch, files: dict[str, tuple[str, bytes]]) -> None:
    """Drive by file id (`files`: id -> (name, bytes)): `/uc` answers the virus-scan confirmation page, whose
    form leads to `/download` with the id, `confirm=t` and the uuid."""
    monkeypatch.setenv("MEDCORPUS_GDRIVE_URL", fake.url)

    def uc(req: Request) -> Response:
        if req.args.get("id") not in files:
            return Response("<html><body>Not found</body></html>", status=404, content_type="text/html")
        return Response(confirm_page(f"{fake.url}/download", req.args["id"]), content_type="text/html; charset=utf-8")

    def download(req: Request) -> Response:
        assert req.args["confirm"] == "t" and req.args["id"] in files and req.args["uuid"] == "1234-abcd"
        name, data = files[req.args["id"]]
        return ranged(req, data, {"Content-Disposition": f'attachment; filename="{name}"'})

    fake.route("GET", r"/uc", uc)
    fake.route("GET", r"/download", download)


# ---- Tianchi ---------------------------------------------------------------------------------------------

def serve_tianchi(fake: FakeHost, monkeypatch: pytest.MonkeyPatch, dataset_id: int, cookie: str,
                  files: dict[str, tuple[str, bytes]]) -> None:
    """The site's file list (POST dataDetail, only with the login cookie) and signed download URLs
    (`files`: file id -> (path, bytes)), and the storage that serves a signed URL without the cookie."""
    monkeypatch.setenv("MEDCORPUS_TIANCHI_URL", fake.url)

    def logged_in(req: Request) -> bool:
        return req.headers.get("Cookie") == cookie

    def detail(req: Request) -> Response:
        if not logged_in(req):
            return Response(json.dumps({"success": False, "data": None}), content_type="application/json")
        assert req.get_json() == {"dataId": dataset_id}
        return Response(json.dumps({"success": True, "data": {"datalabFile": [
            {"id": int(fid), "filePath": path} for fid, (path, _) in files.items()]}}),
            content_type="application/json")

    def signed(req: Request) -> Response:
        if not logged_in(req):
            return Response("", status=403)
        fid = req.args["fileId"]
        return Response(json.dumps({"success": True, "data": f"{fake.url}/oss/{fid}?Expires=1&Signature=s3cr"}),
                        content_type="application/json")

    def storage(req: Request, fid: str) -> Response:
        assert "Cookie" not in req.headers and req.args["Signature"] == "s3cr"
        return ranged(req, files[fid][1])

    fake.route("POST", r"/api/notebook/dataDetail", detail)
    fake.route("GET", r"/api/dataset/getFileDownloadUrl", signed)
    fake.route("GET", r"/oss/(\d+)", storage)
