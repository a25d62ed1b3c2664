"""`builtin`: small files shipped inside the package under `etl/data/<source_id>/` (identity templates and
the like). They need no network, so they are used even when a `--mirror` is given."""

from __future__ import annotations

from pathlib import Path

from etl.catalog import Source
from etl.fetch.base import (
    FetchedFile,
    FetchedSource,
    FetchError,
    expand,
    local_patterns,
    sha256_file,
    verify_declared,
)

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


class BuiltinFetcher:
    def __init__(self, root: Path = DATA_DIR) -> None:
        self.root = Path(root)

    def fetch(self, source: Source, *, force: bool = False) -> FetchedSource:
        folder = self.root / source.id
        if not folder.is_dir():
            raise FetchError(source.id, f"builtin source has no folder etl/data/{source.id}/ in the package")
        files = [FetchedFile(p.relative_to(folder).as_posix(), p, p.stat().st_size, sha256_file(p))
                 for p in expand(folder, local_patterns(source), source.id)]
        verify_declared(source, files)
        return FetchedSource(source.id, folder, source.revision, tuple(files))
