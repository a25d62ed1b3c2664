"""GitHub repositories: files at a pinned commit from raw URLs, Git LFS pointers resolved and checked.

A branch or tag is resolved to a commit with the REST API; globs in `files` are expanded against the
commit's recursive tree (literal paths need no listing). Data that survives only in history is fetched by
pinning `revision` to a commit that still has it. A downloaded file that is a Git LFS pointer is replaced by
the object from the media URL and checked against the pointer's oid and size.

A tree too large to list is fetched from the commit's zip archive instead, extracted safely.

Base URLs come from `MEDCORPUS_GITHUB_API`, `MEDCORPUS_GITHUB_RAW`, `MEDCORPUS_GITHUB_MEDIA` and
`MEDCORPUS_GITHUB_ARCHIVE` (tests, GitHub Enterprise, mirrors); `GITHUB_TOKEN` is sent when set.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

from etl.catalog import Source
from etl.fetch.archive import extract_zip, zip_names
from etl.fetch.base import FetchError, sha256_file
from etl.fetch.cache import SourceCache
from etl.fetch.common import HostFetcher, Planned, select
from etl.fetch.net import Transport, refuse_html_page
from etl.fetch.progress import FileProgress

LFS_SIGNATURE = b"version https://git-lfs.github.com/spec/v1"
LFS_POINTER_MAX = 1024
_GLOB = re.compile(r"[*?\[]")


def _base(env: str, default: str) -> str:
    return (os.environ.get(env) or default).rstrip("/")


def api_base() -> str:
    return _base("MEDCORPUS_GITHUB_API", "https://api.github.com")


def raw_base() -> str:
    return _base("MEDCORPUS_GITHUB_RAW", "https://raw.githubusercontent.com")


def archive_base() -> str:
    return _base("MEDCORPUS_GITHUB_ARCHIVE", "https://codeload.github.com")


def media_base() -> str:
    return _base("MEDCORPUS_GITHUB_MEDIA", "https://media.githubusercontent.com/media")


def parse_lfs_pointer(data: bytes) -> tuple[str, int] | None:
    """(sha256 oid, size) when `data` is a Git LFS pointer file, else None."""
    if len(data) > LFS_POINTER_MAX or not data.startswith(LFS_SIGNATURE):
        return None
    fields = dict(line.split(" ", 1) for line in data.decode("ascii", "replace").splitlines() if " " in line)
    oid, size = fields.get("oid", ""), fields.get("size", "")
    if not oid.startswith("sha256:") or not size.strip().isdigit():
        return None
    return oid.removeprefix("sha256:").strip().lower(), int(size)


def _head(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(LFS_POINTER_MAX + 1)


class GithubFetcher(HostFetcher):
    host = "github"
    versioned = True
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._staged: dict[str, Path] = {}  # relpath -> file extracted from the commit's archive

    hint = "Set GITHUB_TOKEN for private repositories or rate limits; check `repo`, `revision` and `files`."

    def _transport(self, source: Source) -> Transport:
        headers = {"Accept": "application/vnd.github+json"}
        if token := os.environ.get("GITHUB_TOKEN"):
            headers["Authorization"] = f"Bearer {token}"
        return Transport(source.id, self.retry, headers, auth_hint=self.hint)

    def resolve(self, source: Source) -> str:
        transport = self._transport(source)
        try:
            url = f"{api_base()}/repos/{source.repo}/commits/{quote(source.revision or 'HEAD', safe='')}"
            reply = transport.get_json(url, what="resolve revision")
            sha = reply.get("sha", "") if isinstance(reply, dict) else ""
        finally:
            transport.close()
        if not re.fullmatch(r"[0-9a-f]{40}", sha):
            raise FetchError(source.id, f"GitHub did not say which commit {source.revision!r} is")
        return sha

    def plan(self, source: Source, revision: str | None, patterns: list[str]) -> list[Planned]:
        names = [p for p in patterns if not _GLOB.search(p)]
        if len(names) < len(patterns):
            transport = self._transport(source)
            try:
                tree = transport.get_json(f"{api_base()}/repos/{source.repo}/git/trees/{revision}?recursive=1",
                                          what="list files")
            finally:
                transport.close()
            if not isinstance(tree, dict):
                raise FetchError(source.id, "GitHub did not answer the file list with a JSON object")
            if tree.get("truncated"):
                return self._plan_from_archive(source, revision or "", patterns)
            names = select(source.id, patterns, [e["path"] for e in tree.get("tree", []) if e.get("type") == "blob"])
        return [Planned(name, f"{raw_base()}/{source.repo}/{revision}/{quote(name)}") for name in names]

    def _plan_from_archive(self, source: Source, revision: str, patterns: list[str]) -> list[Planned]:
        """A tree too large to list: download the commit's zip archive once, extract the selected files
        safely into a staging folder, and let `download` take them from there."""
        partial = SourceCache(self.cache_root, source.id, revision).partial
        archive, staging = partial / f"{revision}.zip", partial / f"{revision}.archive"
        shutil.rmtree(staging, ignore_errors=True)
        url = f"{archive_base()}/{source.repo}/zip/{revision}"
        transport = self._transport(source)
        try:
            with self.reporter.file(source.id, f"{source.repo}@{revision[:12]}.zip", None) as progress:
                transport.download(url, archive, progress=progress)
        finally:
            transport.close()
        # GitHub archives hold everything under one top folder, `<repo>-<commit>/`.
        inside = {name: name.split("/", 1)[1] for name in zip_names(archive, source.id) if "/" in name}
        chosen = set(select(source.id, patterns, list(inside.values())))
        extract_zip(archive, staging, source.id, lambda name: inside.get(name) if inside.get(name) in chosen else None)
        archive.unlink()
        self._staged = {name: staging / name for name in chosen}
        return [Planned(name, f"{url}#{name}") for name in select(source.id, patterns, sorted(chosen))]

    @staticmethod
    def _html_message(relpath: str) -> str:
        return (f"GitHub returned an HTML page instead of {relpath} (a login, rate-limit or error page?); "
                f"set GITHUB_TOKEN or try later, or download it by hand and use --mirror DIR")

    def download(self, source: Source, revision: str | None, item: Planned, tmp: Path,
                 progress: FileProgress) -> None:
        transport = self._transport(source)
        try:
            staged = self._staged.get(item.relpath)
            if staged is not None:
                os.replace(staged, tmp)
                progress(tmp.stat().st_size)
            else:
                transport.download(item.url, tmp, progress=progress)
            pointer = parse_lfs_pointer(_head(tmp))
            if pointer is None:
                refuse_html_page(tmp, item.relpath, source.id, self._html_message(item.relpath))
                return
            oid, size = pointer
            tmp.unlink()
            media = f"{media_base()}/{source.repo}/{revision}/{quote(item.relpath)}"
            transport.download(media, tmp, progress=progress)
        finally:
            transport.close()
        got_size = tmp.stat().st_size
        if parse_lfs_pointer(_head(tmp)) is not None or got_size != size:
            tmp.unlink()
            raise FetchError(source.id, f"{item.relpath} is a Git LFS pointer and the LFS object could not be "
                                        f"fetched (expected {size} bytes, got {got_size}); the object may be gone "
                                        f"from the repository's LFS storage: use --mirror with a copy")
        refuse_html_page(tmp, item.relpath, source.id, self._html_message(item.relpath))
        digest = sha256_file(tmp)
        if digest != oid:
            tmp.unlink()
            raise FetchError(source.id, f"LFS object for {item.relpath} does not match its pointer: expected "
                                        f"sha256 {oid}, got {digest}")
