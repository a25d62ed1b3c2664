"""Alibaba Tianchi datasets: no public API, a logged-in account is needed.

With `TIANCHI_COOKIE` (the browser's Cookie header for tianchi.aliyun.com; `TIANCHI_CSRF_TOKEN` when the site
asks for one) the dataset's file list and each file's signed download URL are asked of the site, and the file
is downloaded from the signed URL (the cookie is never sent there). Without it the source stops with a
message naming the exact files, the dataset page and the folder to put them in; files placed there are picked
up on the next run and verified against `sources.lock` when it knows them. `MEDCORPUS_TIANCHI_URL` moves the
site's base URL (tests).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote

from etl.catalog import Source
from etl.fetch.base import FetchedSource, FetchError, expand, local_patterns, verify_declared
from etl.fetch.cache import SourceCache
from etl.fetch.common import HostFetcher, Planned, select
from etl.fetch.lock import LockEntry
from etl.fetch.net import Transport, redact, refuse_html_page
from etl.fetch.progress import FileProgress

AUTH_HINT = "TIANCHI_COOKIE may have expired: copy it again from a logged-in browser."


def site_base() -> str:
    return (os.environ.get("MEDCORPUS_TIANCHI_URL") or "https://tianchi.aliyun.com").rstrip("/")


def dataset_page(source: Source) -> str:
    return f"https://tianchi.aliyun.com/dataset/{source.dataset_id}"


class TianchiFetcher(HostFetcher):
    host = "tianchi"

    def _site(self, source: Source) -> Transport:
        headers = {"Cookie": os.environ.get("TIANCHI_COOKIE", ""), "Accept": "application/json"}
        if csrf := os.environ.get("TIANCHI_CSRF_TOKEN"):
            headers["csrf-token"] = csrf
        return Transport(source.id, self.retry, headers, auth_hint=AUTH_HINT)

    def fetch(self, source: Source, *, force: bool = False, locked: LockEntry | None = None) -> FetchedSource:
        if os.environ.get("TIANCHI_COOKIE"):
            return super().fetch(source, force=force, locked=locked)
        return self.manual(source, locked)

    def manual(self, source: Source, locked: LockEntry | None) -> FetchedSource:
        """Pick up files the user downloaded by hand into the cache folder, or say exactly what to do."""
        cache = SourceCache(self.cache_root, source.id, source.revision)
        patterns = local_patterns(source)
        # The exact names: the lock's when it knows them, else the catalogue's `files`.
        wanted = sorted(locked.files) if locked and locked.files else patterns
        missing = [p for p in wanted if not any(q.is_file() for q in cache.folder.glob(p))]
        if missing:
            globs = " (files matching these patterns)" if any(re.search(r"[*?\[]", p) for p in missing) else ""
            raise FetchError(source.id, (
                f"Tianchi needs a logged-in account. Download {', '.join(missing)}{globs} from "
                f"{dataset_page(source)} and put {'it' if len(missing) == 1 else 'them'} in {cache.folder}/ "
                f"(then run again), or set TIANCHI_COOKIE to fetch automatically"))
        files = []
        for path in expand(cache.folder, patterns, source.id):
            relpath = path.relative_to(cache.folder).as_posix()
            expected = self.expected_sha256(source, relpath, locked)
            hit = cache.cached(relpath) or cache.adopt(relpath, dataset_page(source))
            if expected and hit.sha256 != expected.lower():
                raise FetchError(source.id, f"checksum mismatch for {relpath} (placed by hand in {cache.folder}): "
                                            f"expected sha256 {expected.lower()}, got {hit.sha256}")
            files.append(hit)
        cache.mark_complete(patterns, [f.relpath for f in files])
        verify_declared(source, files)
        return FetchedSource(source.id, cache.folder, cache.revision, tuple(files))

    def plan(self, source: Source, revision: str | None, patterns: list[str]) -> list[Planned]:
        site = self._site(source)
        try:
            reply = site.json_of(site.post_json(f"{site_base()}/api/notebook/dataDetail",
                                                {"dataId": int(source.dataset_id or 0)}, what="list files"),
                                 "list files")
        finally:
            site.close()
        listing = (reply.get("data") or {}).get("datalabFile") if isinstance(reply, dict) else None
        if not isinstance(listing, list):
            raise FetchError(source.id, f"Tianchi did not return a file list for dataset {source.dataset_id} "
                                        f"(not logged in? {AUTH_HINT})")
        ids = {str(item["filePath"]).lstrip("/"): item["id"] for item in listing
               if isinstance(item, dict) and "filePath" in item and "id" in item}
        return [Planned(name, f"{site_base()}/api/dataset/getFileDownloadUrl?fileId={quote(str(ids[name]))}")
                for name in select(source.id, patterns, list(ids))]

    def download(self, source: Source, revision: str | None, item: Planned, tmp: Path,
                 progress: FileProgress) -> None:
        site = self._site(source)
        try:
            reply = site.get_json(item.url, what=f"signed URL for {item.relpath}")
        finally:
            site.close()
        signed = reply.get("data") if isinstance(reply, dict) and reply.get("success", True) else None
        if not isinstance(signed, str) or not signed.startswith(("http://", "https://")):
            raise FetchError(source.id, f"Tianchi refused a download URL for {item.relpath}: "
                                        f"{redact(str(reply))[:200]} ({AUTH_HINT})")
        storage = Transport(source.id, self.retry, auth_hint="The signed URL expired or was refused; run again.")
        try:
            storage.download(signed, tmp, progress=progress)
        finally:
            storage.close()
        refuse_html_page(tmp, item.relpath, source.id,
                         f"Tianchi storage returned an HTML page instead of {item.relpath}; "
                         f"download it by hand from {dataset_page(source)}")
