"""Google Drive files by id, through the virus-scan confirmation page.

Drive answers a large file's download with an HTML page asking to confirm; gdown's parser of that page
(`get_url_from_gdrive_confirmation`, maintained as Google changes it) gives the real download URL, which is
then fetched with our resumable transport. Any HTML where data was expected (quota exceeded, permission
denied) is an error that says so and suggests `--mirror`. `MEDCORPUS_GDRIVE_URL` moves the base URL (tests).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

from gdown.download import get_url_from_gdrive_confirmation
from gdown.exceptions import FileURLRetrievalError

from etl.catalog import Source
from etl.fetch.base import FetchError
from etl.fetch.common import HostFetcher, Planned
from etl.fetch.net import Transport, looks_like_html
from etl.fetch.progress import FileProgress


def drive_base() -> str:
    return (os.environ.get("MEDCORPUS_GDRIVE_URL") or "https://drive.google.com").rstrip("/")


class GdriveFetcher(HostFetcher):
    host = "gdrive"

    def plan(self, source: Source, revision: str | None, patterns: list[str]) -> list[Planned]:
        assert source.file_id and source.filename
        return [Planned(source.filename, f"{drive_base()}/uc?export=download&id={quote(source.file_id)}")]

    def _html_error(self, source: Source, detail: str) -> FetchError:
        return FetchError(source.id, f"html_instead_of_data: Google Drive returned an HTML page instead of {source.filename} "
                                     f"({detail}). Try again later, or download it in a browser and use "
                                     f"--mirror DIR with the file at DIR/{source.id}/{source.filename}")

    def download(self, source: Source, revision: str | None, item: Planned, tmp: Path,
                 progress: FileProgress) -> None:
        transport = Transport(source.id, self.retry, auth_hint="The file is not shared with 'anyone with the "
                                                               "link': use --mirror with a copy.")
        try:
            transport.download(item.url, tmp, progress=progress)
            if not looks_like_html(tmp):
                return
            page = tmp.read_text(encoding="utf-8", errors="replace")
            tmp.unlink()
            try:
                confirmed = get_url_from_gdrive_confirmation(page)
            except FileURLRetrievalError as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no download link"
                raise self._html_error(source, f"quota exceeded or no access: {reason}") from None
            transport.download(confirmed, tmp, progress=progress)
        finally:
            transport.close()
        if looks_like_html(tmp):
            tmp.unlink()
            raise self._html_error(source, "after the virus-scan confirmation")
