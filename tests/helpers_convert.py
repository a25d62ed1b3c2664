"""Drive one catalogued source through its real reader and converter, in memory, for converter tests.

`convert_source_files("toyhom_dialogue")` reads the source's files from the bundled mirror
(`examples/mirror/<id>/`, the real fixtures), or from another folder laid out the same way (e.g.
`tests/fixtures/handmade/`), exactly as the build does: the catalogue entry chooses the reader and
converter, `splits:` the file split, and every row passes the build's row validation (`RowBuilder`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl.catalog import Source, load_catalog
from etl.convert.base import Filtered, RecordContext, Reject, get_converter, registry
from etl.fetch.mirror import MirrorFetcher
from etl.read.base import ReadError, get_reader
from etl.rows import RowBuilder

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "sources.yaml"
MIRROR = ROOT / "examples" / "mirror"
HANDMADE = ROOT / "tests" / "fixtures" / "handmade"


@dataclass
class Converted:
    """Everything one source produced: output rows (train and eval apart), rejects and filter counts."""

    read: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    eval_rows: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[tuple[str, str, str]] = field(default_factory=list)   # (file, location, reason)
    filtered: Counter[str] = field(default_factory=Counter)

    @property
    def reject_reasons(self) -> Counter[str]:
        return Counter(reason for _, _, reason in self.rejects)

    @property
    def all_rows(self) -> list[dict[str, Any]]:
        return self.rows + self.eval_rows


def catalog_source(source_id: str) -> Source:
    return load_catalog(CATALOG, known_formats=set(registry())).get(source_id)


def convert_source_files(source_id: str, root: Path = MIRROR) -> Converted:
    """Convert `root/<source_id>/` (the files the catalogue's `files:` name) with the catalogued settings."""
    source = catalog_source(source_id)
    converter = get_converter(source.format)
    fetched = MirrorFetcher(root).fetch(source)
    read = get_reader(source.reader or converter.reader)
    builder = RowBuilder(source)
    result = Converted()
    for item in read(fetched.source_files(), dict(source.options)):
        result.read += 1
        if isinstance(item, ReadError):
            result.rejects.append((item.file, item.location, item.reason))
            continue
        split = source.split_of(item.file.split("!")[0])
        ctx = RecordContext(source, item.file, item.location, split)
        try:
            rows = [builder.build(row, split) for row in converter.fn(item.value, ctx)]
        except Filtered as flt:
            result.filtered[flt.reason] += 1
            continue
        except Reject as rej:
            result.rejects.append((item.file, item.location, rej.reason))
            continue
        for row in rows:
            (result.eval_rows if source.is_eval_split(row["split"]) else result.rows).append(row)
    return result


def turns(row: dict[str, Any], key: str = "messages") -> list[tuple[str, str]]:
    """A row's conversation as `(role, content)` pairs, for compact assertions."""
    return [(t["role"], t["content"]) for t in row[key]]
