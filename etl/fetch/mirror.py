"""`--mirror DIR`: every source is read from `DIR/<source_id>/`, exactly the files a fetch would produce."""

from __future__ import annotations

from pathlib import Path

from etl.catalog import Source
from etl.fetch.base import FetchedSource, FetchError, fetch_folder


class MirrorFetcher:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def fetch(self, source: Source, *, force: bool = False) -> FetchedSource:
        folder = self.root / source.id
        if not folder.is_dir():
            raise FetchError(source.id, f"not in the mirror (expected a folder {source.id}/ in the mirror directory)")
        return fetch_folder(source, folder)
