"""The read side of a fake Hugging Face Hub: what `huggingface_hub` and `datasets` ask of a dataset repo
to load it (repo info at a revision, tree listings, paths-info, and `resolve` with Range, ETag and
X-Repo-Commit), answered from an in-memory set of committed files. Used with the write side in
tests/test_publish.py, so a published repo can be loaded back through the same local server."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from urllib.parse import unquote

from werkzeug import Request, Response

JSON = "application/json"


def _json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(data), status=status, content_type=JSON, headers=headers)


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubReader:
    """Serves the dataset repo `repo` as `files()` holds it at `commit()` (called per request, so a later
    commit is seen at once). Every revision (`main`, the commit) resolves to that commit."""

    def __init__(self, repo: str, files: Callable[[], dict[str, bytes]], commit: Callable[[], str]) -> None:
        self.repo, self.files, self.commit = repo, files, commit
        self.paths: list[str] = []    # the read requests, in order, for the tests

    # ---- entries ---------------------------------------------------------------------------------------
    def _file_entry(self, path: str) -> dict:
        data = self.files()[path]
        return {"type": "file", "path": path, "size": len(data), "oid": _git_oid(data),
                "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                if path.endswith(".parquet") else None,
                "lastCommit": {"id": self.commit(), "title": "publish", "date": "2025-01-01T00:00:00.000Z"}}

    def _folders(self) -> set[str]:
        folders = set()
        for path in self.files():
            parts = path.split("/")[:-1]
            folders.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        return folders

    def _entry(self, path: str) -> dict | None:
        if path in self.files():
            return self._file_entry(path)
        if path in self._folders():
            return {"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0}
        return None

    def _tree(self, folder: str, recursive: bool) -> list[dict]:
        prefix = f"{folder}/" if folder else ""
        names = sorted(self._folders() | set(self.files()))
        inside = [n for n in names if n.startswith(prefix) and n != folder]
        if not recursive:
            inside = [n for n in inside if "/" not in n[len(prefix):]]
        return [e for e in (self._entry(n) for n in inside) if e is not None]

    def info(self) -> dict:
        return {"_id": "0" * 24, "id": self.repo, "author": self.repo.split("/")[0], "sha": self.commit(),
                "private": False, "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
                "lastModified": "2025-01-01T00:00:00.000Z", "createdAt": "2025-01-01T00:00:00.000Z",
                "siblings": [{"rfilename": p} for p in sorted(self.files())]}

    # ---- the handler -------------------------------------------------------------------------------------
    def __call__(self, request: Request) -> Response | None:
        """The response to a read request for this repo, or None when the request is not one."""
        path = unquote(request.path)
        api = f"/api/datasets/{self.repo}"
        if request.method == "GET" and (path == api or re.fullmatch(rf"{re.escape(api)}/revision/[^/]+", path)):
            self.paths.append(path)
            return _json(self.info())
        if request.method == "GET" and (m := re.fullmatch(rf"{re.escape(api)}/tree/([^/]+)(?:/(.*))?", path)):
            self.paths.append(path)
            folder = (m[2] or "").strip("/")
            if folder and folder not in self._folders():
                return _json({"error": f"{folder} not found"}, 404, {"X-Error-Code": "EntryNotFound"})
            return _json(self._tree(folder, request.args.get("recursive", "").lower() in ("1", "true")))
        if request.method == "POST" and re.fullmatch(rf"{re.escape(api)}/paths-info/[^/]+", path):
            self.paths.append(path)
            wanted = request.form.getlist("paths") or (request.get_json(silent=True) or {}).get("paths", [])
            return _json([e for e in (self._entry(p.strip("/")) for p in wanted) if e is not None])
        if request.method in ("GET", "HEAD") and (
                m := re.fullmatch(rf"/datasets/{re.escape(self.repo)}/resolve/([^/]+)/(.+)", path)):
            self.paths.append(f"{request.method} {path}")
            return self.resolve(request, m[2])
        return None

    def resolve(self, request: Request, path: str) -> Response:
        files = self.files()
        if path not in files:
            return Response("Entry not found", status=404,
                            headers={"X-Error-Code": "EntryNotFound", "X-Repo-Commit": self.commit()})
        data = files[path]
        etag = hashlib.sha256(data).hexdigest() if path.endswith(".parquet") else _git_oid(data)
        headers = {"Accept-Ranges": "bytes", "ETag": f'"{etag}"', "X-Repo-Commit": self.commit()}
        if path.endswith(".parquet"):
            headers["X-Linked-Etag"], headers["X-Linked-Size"] = f'"{etag}"', str(len(data))
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", request.headers.get("Range", ""))
        if match and (match[1] or match[2]):
            if match[1]:
                start = int(match[1])
                end = min(int(match[2]), len(data) - 1) if match[2] else len(data) - 1
            else:  # a suffix: the last N bytes
                start, end = max(0, len(data) - int(match[2])), len(data) - 1
            if start >= len(data):
                return Response(b"", status=416, headers={**headers, "Content-Range": f"bytes */{len(data)}"})
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            body = data[start:end + 1]
            return Response(b"" if request.method == "HEAD" else body, status=206, headers=headers,
                            content_type="application/octet-stream")
        response = Response(b"" if request.method == "HEAD" else data, headers=headers,
                            content_type="application/octet-stream")
        response.headers["Content-Length"] = str(len(data))
        return response
