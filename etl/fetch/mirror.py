"""`--mirror DIR`: every source is read from `DIR/<source_id>/`, exactly the files a fetch would produce."""

from __future__ import annotations

from pathlib import Path

from etl.catalog import Source
from etl.fetch.base import FetchedSource, FetchError, fetch_folder


def mirror_problem(root: Path) -> str | None:
    """Why `--mirror root` cannot be used (it does not exist or is not a folder), or None."""
    if root.is_dir():
        return None
    what = "is not a folder" if root.exists() else "does not exist"
    return (f"--mirror {root}: the folder {what}; pass a folder with one sub-folder per source, e.g. "
            f"--mirror examples/mirror for the bundled samples")


class MirrorFetcher:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if problem := mirror_problem(self.root):
            raise ValueError(problem)

    def fetch(self, source: Source, *, force: bool = False) -> FetchedSource:
        folder = self.root / source.id
        if not folder.is_dir():
            raise FetchError(source.id, f"not in the mirror (expected a folder {source.id}/ in the mirror directory)")
        return fetch_folder(source, folder)
