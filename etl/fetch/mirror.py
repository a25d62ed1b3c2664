"""`--mirror DIR`: every source is read from `DIR/<source_id>/`, exactly the files a fetch would produce."""

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


class MirrorFetcher:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def fetch(self, source: Source, *, force: bool = False) -> FetchedSource:
        folder = self.root / source.id
        if not folder.is_dir():
            raise FetchError(source.id, f"not in the mirror (expected a folder {source.id}/ in the mirror directory)")
        files = []
        for path in expand(folder, local_patterns(source), source.id):
            files.append(FetchedFile(path.relative_to(folder).as_posix(), path, path.stat().st_size, sha256_file(path)))
        verify_declared(source, files)
        return FetchedSource(source.id, folder, source.revision, tuple(files))
