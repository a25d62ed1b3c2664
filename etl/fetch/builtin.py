"""`builtin`: small files shipped inside the package under `etl/data/<source_id>/` (identity templates and
the like). They need no network, so they are used even when a `--mirror` is given."""

from __future__ import annotations

from pathlib import Path

from etl.catalog import Source
from etl.fetch.base import FetchedSource, FetchError, fetch_folder

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


class BuiltinFetcher:
    def __init__(self, root: Path = DATA_DIR) -> None:
        self.root = Path(root)

    def fetch(self, source: Source, *, force: bool = False) -> FetchedSource:
        folder = self.root / source.id
        if not folder.is_dir():
            raise FetchError(source.id, f"builtin source has no folder etl/data/{source.id}/ in the package")
        return fetch_folder(source, folder)
