"""Plain URLs: one file from `url` (resumable with Range), or web pages from `urls` saved as
`pages/<safe-name>.html`. A data URL that answers with an HTML page is refused, never converted."""

from __future__ import annotations

import hashlib
import posixpath
import re
from pathlib import Path
from urllib.parse import urlsplit

from etl.catalog import Source
from etl.fetch.base import FetchError
from etl.fetch.common import HostFetcher, Planned
from etl.fetch.net import Transport, looks_like_html, public_url
from etl.fetch.progress import FileProgress


def page_name(url: str) -> str:
    """A stable, filesystem-safe file name for a web page: readable host and path, plus a short hash."""
    parts = urlsplit(url)
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{parts.hostname or ''}{parts.path}").strip("._")[:80]
    return f"{readable or 'page'}-{hashlib.sha1(url.encode()).hexdigest()[:8]}"


class HttpFetcher(HostFetcher):
    host = "http"

    def plan(self, source: Source, revision: str | None, patterns: list[str]) -> list[Planned]:
        if source.url:
            name = source.options.get("filename") or posixpath.basename(urlsplit(source.url).path) or "index.html"
            return [Planned(name, source.url)]
        return [Planned(f"pages/{page_name(url)}.html", url) for url in source.urls]

    def download(self, source: Source, revision: str | None, item: Planned, tmp: Path,
                 progress: FileProgress) -> None:
        transport = Transport(source.id, self.retry, auth_hint="Check `url` in the catalogue.")
        try:
            transport.download(item.url, tmp, progress=progress)
        finally:
            transport.close()
        if not item.relpath.endswith((".html", ".htm")) and looks_like_html(tmp):
            tmp.unlink()
            raise FetchError(source.id, f"{public_url(item.url)} returned an HTML page instead of {item.relpath} "
                                        f"(a login, error or quota page?); download it by hand and use --mirror")
