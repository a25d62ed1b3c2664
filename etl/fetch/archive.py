"""Safe extraction of downloaded zip archives.

No member may land outside the destination (zip-slip: absolute names, `..`, drive letters), symlink members
are never created, and both the total extracted size and each member's compression ratio are bounded (zip
bombs). The sizes in the archive's headers are not trusted: bytes are counted while they are written.
"""

from __future__ import annotations

import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

from etl.fetch.base import FetchError
from etl.fetch.cache import check_relpath

MAX_TOTAL_BYTES = 50 * 1024**3
MAX_RATIO = 200          # uncompressed / compressed, per member
RATIO_FLOOR = 1 << 20    # members smaller than this are not ratio-checked (tiny files compress absurdly well)
CHUNK = 1 << 20


def _open(archive: Path, source_id: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise FetchError(source_id, f"{archive.name} is not a valid zip archive") from None


def zip_names(archive: Path, source_id: str) -> list[str]:
    """The file members of an archive (directories and symlinks left out)."""
    with _open(archive, source_id) as zf:
        return [i.filename for i in zf.infolist() if not i.is_dir() and not stat.S_ISLNK(i.external_attr >> 16)]


def extract_zip(archive: Path, dest: Path, source_id: str, select: Callable[[str], str | None], *,
                max_total: int = MAX_TOTAL_BYTES, max_ratio: float = MAX_RATIO) -> list[str]:
    """Extract the members `select` maps to a relative path (None skips one) into `dest`; return those paths.

    Raises `FetchError` for a member that would escape `dest`, or when a size limit is passed."""
    written_total = 0
    extracted: list[str] = []
    with _open(archive, source_id) as zf:
        for info in zf.infolist():
            if info.is_dir() or stat.S_ISLNK(info.external_attr >> 16):
                continue
            name = info.filename.replace("\\", "/")
            try:
                check_relpath(source_id, name)
            except FetchError:
                raise FetchError(source_id, f"archive member {info.filename!r} would escape its folder "
                                            f"(zip-slip); refusing the archive") from None
            target = select(name)
            if target is None:
                continue
            check_relpath(source_id, target)
            if info.file_size > RATIO_FLOOR and info.file_size > max_ratio * max(info.compress_size, 1):
                raise FetchError(source_id, f"archive member {name} expands {info.file_size // max(info.compress_size, 1)}"
                                            f"x (limit {max_ratio:g}x): refusing a likely zip bomb")
            path = dest / target
            path.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as member, open(path, "wb") as out:
                written = 0
                while block := member.read(CHUNK):
                    written += len(block)
                    written_total += len(block)
                    if written > info.file_size or written_total > max_total:
                        out.close()
                        path.unlink()
                        raise FetchError(source_id, f"archive {archive.name} extracts to more than "
                                                    f"{max_total} bytes (or lies about its sizes): refusing it")
                    out.write(block)
            extracted.append(target)
    return extracted
