"""exact_dedup and near_dedup: collapse duplicate rows of one task across all sources.

Both find clusters in `prepare` from a few narrow columns and then, in `apply`, drop every member but
the survivor, which gets `dup_count` (rows it stands for, itself included) and, in `meta`,
`{"dedup": {"absorbed": {source: rows}}}`. Survivor: highest `_priority`, then longest `_len`, then
smallest `id` (DESIGN §5). Sample clusters go to `report_dir/dup_clusters-<task>-<stage>.jsonl`;
`explain_dups` prints them (`medcorpus build --explain-dups N`).
"""

from __future__ import annotations

import functools
import json
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from etl.catalog import DedupConfig, MinHashConfig
from etl.stages.base import Scan, Stage, StageContext
from etl.stages.minhash import (
    band_hashes,
    lsh_params,
    shingle_hashes,
    signatures,
    sorted_contains,
    unique_counts,
)
from etl.stages.text import row_texts, side_text_series, text_columns
from etl.textnorm import match_keys, numbers_of

MEMBER_COLUMNS = ["_row", "_priority", "_len", "id", "source", "dup_count", "meta"]
_SNIPPET = 300
_ALL_PAIRS = 8


@dataclass
class Resolution:
    """What `apply` does: drop these rows; give these survivors a new dup_count and meta. Sorted NumPy
    arrays and one Arrow string array, not Python objects per cluster, so a task with millions of
    clusters stays compact (and cheap to ship to the workers)."""

    drop: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))           # sorted
    absorbed_by: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))    # survivor per drop
    survivor_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # sorted
    survivor_counts: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int32))
    survivor_absorbed: pa.Array = field(default_factory=lambda: pa.array([], pa.string()))  # JSON {source: rows}
    clusters: int = 0


def _absorbed_of(meta: str | None) -> Counter[str]:
    if not meta or "absorbed" not in meta:
        return Counter()
    try:
        value = json.loads(meta or "{}")
    except json.JSONDecodeError:
        return Counter()
    absorbed = value.get("dedup", {}).get("absorbed", {}) if isinstance(value, dict) else {}
    return Counter({str(k): int(v) for k, v in absorbed.items()})


def _with_absorbed(meta: str | None, absorbed: Counter[str]) -> str:
    if not meta or meta == "{}":
        return json.dumps({"dedup": {"absorbed": dict(sorted(absorbed.items()))}}, ensure_ascii=False)
    try:
        value = json.loads(meta or "{}")
    except json.JSONDecodeError:
        value = {}
    if not isinstance(value, dict):
        value = {"value": value}
    value["dedup"] = {**value.get("dedup", {}), "absorbed": dict(sorted(absorbed.items()))}
    return json.dumps(value, ensure_ascii=False)


def order_members(members: pl.DataFrame) -> pl.DataFrame:
    """Members sorted by cluster, survivor first (the survivor rule as a sort order)."""
    return members.sort(["cluster", "_priority", "_len", "id"], descending=[False, True, True, False])


def _absorbed_json(absorbed: pl.DataFrame) -> pl.DataFrame:
    """(survivor, source, rows) → one `{"source": rows, ...}` JSON string per survivor, sources sorted."""
    sources = absorbed.get_column("source").unique().to_list()
    quoted = pl.Series([json.dumps(x, ensure_ascii=False) for x in sources], dtype=pl.String)
    return (absorbed.sort(["survivor", "source"])
            .with_columns(pair=pl.concat_str([pl.col("source").replace_strict(sources, quoted, return_dtype=pl.String),
                                              pl.col("rows").cast(pl.String)], separator=": "))
            .group_by("survivor", maintain_order=True)
            .agg(absorbed=pl.concat_str(pl.lit("{"), pl.col("pair").str.join(", "), pl.lit("}"))))


def resolve(members: pl.DataFrame, sample: int = 0) -> tuple[Resolution, list[list[dict[str, Any]]]]:
    """`members`: one row per clustered row with `cluster` and MEMBER_COLUMNS. Returns the resolution
    and `sample` clusters (survivor first, the ones whose survivor id hashes lowest) for reports."""
    ordered = order_members(members).with_columns(
        survivor=pl.col("_row").first().over("cluster"), first=pl.int_range(pl.len()).over("cluster") == 0)
    absorbed = ordered.filter(~pl.col("first"))
    drop = absorbed.select("_row", "survivor").sort("_row")
    counts = ordered.group_by("survivor").agg(pl.col("dup_count").sum()).sort("survivor")
    by_source = absorbed.group_by("survivor", "source").agg(rows=pl.len())
    carried = [(row["survivor"], source, n)            # what merged members had absorbed earlier
               for row in absorbed.filter(pl.col("dup_count") > 1).select("survivor", "meta").iter_rows(named=True)
               for source, n in _absorbed_of(row["meta"]).items()]
    if carried:
        extra = pl.DataFrame(carried, schema={"survivor": pl.Int64, "source": pl.String, "rows": pl.UInt32},
                             orient="row")
        by_source = pl.concat([by_source, extra]).group_by("survivor", "source").agg(pl.col("rows").sum())
    survivors = counts.join(_absorbed_json(by_source), on="survivor", how="left").sort("survivor")
    resolution = Resolution(
        drop["_row"].to_numpy().astype(np.int64), drop["survivor"].to_numpy().astype(np.int64),
        survivors["survivor"].to_numpy().astype(np.int64), survivors["dup_count"].to_numpy().astype(np.int32),
        survivors["absorbed"].to_arrow().cast(pa.string()), survivors.height)
    return resolution, _sample(ordered, sample)


def apply_resolution(batch: pa.RecordBatch, resolution: Resolution) -> pa.RecordBatch:
    """Drop the absorbed rows; give survivors their dup_count and meta, each only when the batch has
    that column (a narrow re-scan for a later global pass often needs neither, and the meta rewrite,
    JSON per survivor, is the costly part)."""
    rows = batch.column("_row").to_numpy(zero_copy_only=False)
    keep = ~sorted_contains(resolution.drop, rows)
    hits = np.flatnonzero(sorted_contains(resolution.survivor_rows, rows))
    names = batch.schema.names
    if hits.size:
        at = np.searchsorted(resolution.survivor_rows, rows[hits])
        if "dup_count" in names:
            dup_count = batch.column("dup_count").to_numpy(zero_copy_only=False).astype(np.int32)
            dup_count[hits] = resolution.survivor_counts[at]
            batch = batch.set_column(names.index("dup_count"), "dup_count", pa.array(dup_count, type=pa.int32()))
        if "meta" in names:
            meta = batch.column("meta").to_pylist()
            absorbed = resolution.survivor_absorbed.take(pa.array(at)).to_pylist()
            for i, extra in zip(hits.tolist(), absorbed, strict=True):
                meta[i] = _with_absorbed(meta[i], _absorbed_of(meta[i]) + Counter(json.loads(extra)))
            batch = batch.set_column(names.index("meta"), "meta", pa.array(meta, type=batch.schema.field("meta").type))
    return batch if keep.all() else batch.filter(pa.array(keep))


def _sample(ordered: pl.DataFrame, count: int) -> list[list[dict[str, Any]]]:
    """A deterministic spread: the `count` clusters whose survivor id hashes lowest, as member lists."""
    if count <= 0 or ordered.is_empty():
        return []
    heads = ordered.filter(pl.col("first")).select("cluster", "id")
    ranks = np.fromiter((xxhash.xxh3_64_intdigest(i.encode()) for i in heads["id"].to_list()), dtype=np.uint64,
                        count=heads.height)
    chosen = heads["cluster"].gather(np.argsort(ranks, kind="stable")[:count])
    picked = ordered.filter(pl.col("cluster").is_in(chosen.implode())).drop("survivor", "first")
    grouped: dict[int, list[dict[str, Any]]] = {}
    for row in picked.iter_rows(named=True):
        grouped.setdefault(row["cluster"], []).append(row)
    return [grouped[c] for c in chosen.to_list()]


def write_cluster_report(ctx: StageContext, stage: str, scan: Scan, clusters: list[list[dict[str, Any]]],
                         count: int, similarity: Callable[[int, int], float] | None = None) -> None:
    """`report_dir/dup_clusters-<task>-<stage>.jsonl`: sample clusters with the text of each member."""
    sample = clusters[:count]
    path = Path(ctx.report_dir) / f"dup_clusters-{ctx.task}-{stage}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    wanted = {m["_row"] for cluster in sample for m in cluster}
    texts: dict[int, str] = {}
    if wanted:
        for batch in scan(["_row", *text_columns(ctx.task)]):
            rows = batch.column("_row").to_pylist()
            if not wanted.intersection(rows):
                continue
            for row, text in zip(rows, row_texts(batch, ctx.task), strict=True):
                if row in wanted:
                    texts[row] = text[:_SNIPPET]
    with path.open("w", encoding="utf-8") as out:
        for cluster in sample:
            survivor = cluster[0]["_row"]
            members = [{"id": m["id"], "source": m["source"], "priority": m["_priority"], "length": m["_len"],
                        "survivor": i == 0, "text": texts.get(m["_row"], ""),
                        **({"jaccard_to_survivor": round(similarity(survivor, m["_row"]), 3)}
                           if similarity is not None and i else {})}
                       for i, m in enumerate(cluster)]
            out.write(json.dumps({"task": ctx.task, "stage": stage, "size": len(cluster), "members": members},
                                 ensure_ascii=False) + "\n")


def explain_dups(report_dir: str | Path, count: int) -> str:
    """Up to `count` sample clusters per task and stage, as text a person can judge."""
    lines: list[str] = []
    for path in sorted(Path(report_dir).glob("dup_clusters-*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            for i, line in enumerate(handle):
                if i >= count:
                    break
                cluster = json.loads(line)
                lines.append(f"── {cluster['task']} · {cluster['stage']} · {cluster['size']} rows")
                for m in cluster["members"]:
                    mark = "KEEP" if m["survivor"] else "drop"
                    sim = f" J={m['jaccard_to_survivor']}" if "jaccard_to_survivor" in m else ""
                    text = m["text"].replace("\n", " ⏎ ")
                    lines.append(f"  {mark} {m['id']} (priority {m['priority']}, {m['length']} chars{sim}): {text}")
    return "\n".join(lines)


def _fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _slim(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Member columns as clustering needs them: `meta` only where earlier merges are recorded in it."""
    index = batch.schema.get_field_index("meta")
    merged = pc.greater(batch.column("dup_count"), 1)
    meta = pc.if_else(merged, batch.column("meta"), pa.scalar(None, batch.schema.field("meta").type))
    return batch.set_column(index, "meta", meta)


def _member_frame(batches: list[pa.RecordBatch]) -> pl.DataFrame:
    frames = [pl.from_arrow(pa.Table.from_batches([b])) for b in batches if b.num_rows]
    schema = {"_row": pl.Int64, "_priority": pl.Int32, "_len": pl.Int32, "id": pl.String,
              "source": pl.String, "dup_count": pl.Int32, "meta": pl.String}
    if not frames:
        return pl.DataFrame(schema=schema)
    return pl.concat(frames, how="vertical_relaxed").cast(schema)  # type: ignore[arg-type]


def key_hashes(batch: pa.RecordBatch) -> pa.Table:
    """Member columns of a batch with `hash` (xxh3-64 of a non-empty `_key`) instead of the key."""
    hashes = pa.array([xxhash.xxh3_64_intdigest(k.encode()) if k else None for k in batch.column("_key").to_pylist()],
                      type=pa.uint64())
    return pa.Table.from_batches([_slim(batch)]).drop_columns(["_key"]).append_column("hash", hashes)


class ExactDedup(Stage):
    """Rows with the same non-empty `_key` (xxh3-64 of it) are one cluster. An empty key
    (punctuation-only text) matches nothing."""

    name = "exact_dedup"
    reads = ("_key", *MEMBER_COLUMNS)
    writes = ("dup_count", "meta")
    replay_reads = ("_row",)   # dup_count and meta are rewritten only when a re-scan asks for them
    drops_rows = True

    def __init__(self, config: DedupConfig) -> None:
        self.config = config
        self.resolution = Resolution()

    def prepare(self, scan: Scan, ctx: StageContext) -> None:
        spill = _fresh_dir(Path(ctx.work_dir) / "exact_keys")
        for part, table in enumerate(ctx.map(key_hashes, scan(["_key", *MEMBER_COLUMNS]))):
            pl.from_arrow(table).write_parquet(spill / f"part-{part:06d}.parquet")  # type: ignore[union-attr]
        if not any(spill.iterdir()):
            return
        members = (pl.scan_parquet(spill / "*.parquet")
                   .filter(pl.col("hash").is_not_null() & pl.col("hash").is_duplicated())
                   .rename({"hash": "cluster"}).collect())
        self.resolution, clusters = resolve(members, self.config.report_clusters)
        write_cluster_report(ctx, self.name, scan, clusters, self.config.report_clusters)
        shutil.rmtree(spill, ignore_errors=True)

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return apply_resolution(batch, self.resolution)

    def summary(self) -> dict[str, Any]:
        return {"clusters": self.resolution.clusters, "removed": int(self.resolution.drop.size)}


def batch_band_hashes(config: MinHashConfig, bands: int, rows: int,
                      batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
    """(rows with shingles, their (rows, bands) band hashes) of one batch of `_row`, `_key`."""
    hashes, offsets = shingle_hashes(batch.column("_key").to_pylist(), config.ngram)
    has_shingles = np.diff(offsets) > 0
    ordinals = batch.column("_row").to_numpy(zero_copy_only=False)[has_shingles]
    if not ordinals.size:
        return ordinals, np.empty((0, bands), dtype=np.uint64)
    return ordinals, band_hashes(signatures(hashes, offsets, config.num_perm, config.seed)[has_shingles], bands, rows)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:
            parent[x], x = root, parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        self.parent.setdefault(a, a)
        self.parent.setdefault(b, b)
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


KeysOf = Callable[[pa.RecordBatch], list[list[str]]]   # a batch → one key list per view of its rows
Mapper = Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]


Shingled = tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]


def batch_shingles(ngram: int, keys_of: KeysOf, batch: pa.RecordBatch) -> list[Shingled]:
    """Per view of one batch of candidate rows (`keys_of`): (rows, sorted unique 32-bit shingle hashes
    per row, flat; their counts; numbers signatures). Runs on the engine's workers."""
    rows = batch.column("_row").to_numpy(zero_copy_only=False)
    found = []
    for keys in keys_of(batch):
        flat, offsets = shingle_hashes(keys, ngram)
        doc = np.repeat(np.arange(len(keys), dtype=np.uint64), np.diff(offsets))
        unique = unique_counts((doc << np.uint64(32)) | (flat >> np.uint64(32)))[0]
        found.append((rows, (unique & np.uint64(0xFFFFFFFF)).astype(np.uint32),
                      np.bincount((unique >> np.uint64(32)).astype(np.int64), minlength=len(keys)), numbers_of(keys)))
    return found


def whole_keys(batch: pa.RecordBatch) -> list[list[str]]:
    """The one view near-dedup compares first: the whole row's `_key`."""
    return [batch.column("_key").to_pylist()]


def side_keys(task: str, batch: pa.RecordBatch) -> list[list[str]]:
    """The prompt and the response keys of each row (`fields: split`), from one pass over the turns."""
    return [match_keys(side).to_list() for side in side_text_series(batch, task)]


@dataclass
class _CandidateShingles:
    """Sorted unique 32-bit shingle hashes (and number signatures) of the candidate rows only."""

    rows: np.ndarray          # candidate rows, sorted
    position: np.ndarray      # where each sorted row's data sits (read order)
    hashes: np.ndarray        # uint32, per row sorted and unique, in read order
    offsets: np.ndarray
    numbers: np.ndarray       # int64 id of each row's numbers signature, in read order

    @classmethod
    def read(cls, scan: Scan, wanted: np.ndarray, ngram: int, mapper: Mapper, columns: list[str],
             keys_of: KeysOf) -> list[_CandidateShingles]:
        """Shingles of the `wanted` rows (sorted), one set per view `keys_of` gives; the rows are
        picked here in one scan of `columns` and their shingles computed on the engine's workers."""
        def candidates() -> Iterator[pa.RecordBatch]:
            for batch in scan(columns):
                mask = sorted_contains(wanted, batch.column("_row").to_numpy(zero_copy_only=False))
                if mask.any():
                    yield batch.filter(pa.array(mask))

        views: list[list[Shingled]] = []
        for part in mapper(functools.partial(batch_shingles, ngram, keys_of), candidates()):
            views = views or [[] for _ in part]
            for view, shingled in zip(views, part, strict=True):
                view.append(shingled)
        return [cls._joined(view) for view in views]

    @classmethod
    def _joined(cls, parts: list[Shingled]) -> _CandidateShingles:
        rows, hashes, counts, numbers = zip(*parts, strict=True)
        all_rows = np.concatenate(rows)
        order = np.argsort(all_rows, kind="stable")
        offsets = np.zeros(all_rows.size + 1, dtype=np.int64)
        np.cumsum(np.concatenate(counts), out=offsets[1:])
        ids = pl.Series([n for part in numbers for n in part], dtype=pl.String).rank("dense").to_numpy().astype(np.int64)
        return cls(all_rows[order], order, np.concatenate(hashes), offsets, ids)

    def index(self, rows: np.ndarray) -> np.ndarray:
        return self.position[np.searchsorted(self.rows, rows)]

    def jaccard(self, i: int, j: int) -> float:
        a = self.hashes[self.offsets[i]:self.offsets[i + 1]]
        b = self.hashes[self.offsets[j]:self.offsets[j + 1]]
        shared = np.intersect1d(a, b, assume_unique=True).size
        union = a.size + b.size - shared
        return shared / union if union else 1.0   # two empty sides are the same side


class NearDedup(Stage):
    """MinHash LSH over character n-grams of `_key`; every candidate pair is verified by exact
    Jaccard of the n-gram sets (≥ threshold) and, with `match_numbers`, by equal numbers, before
    anything is merged. Clusters are the connected components of verified pairs.

    Memory: band hashes are spilled to `work_dir` per batch and grouped band by band with polars;
    only candidate rows (those sharing a band with another row) are held for verification."""

    name = "near_dedup"
    reads = ("_key", *MEMBER_COLUMNS)
    writes = ("dup_count", "meta")
    replay_reads = ("_row",)   # dup_count and meta are rewritten only when a re-scan asks for them
    drops_rows = True

    def __init__(self, config: MinHashConfig, report_clusters: int = 20, task: str = "pretrain") -> None:
        self.config = config
        self.report_clusters = report_clusters
        self.task = task
        self.split = config.fields == "split" and task in ("sft", "reward")
        if self.split:
            self.reads = (*self.reads, *text_columns(task))
        if config.bands and config.rows:
            self.bands, self.rows = config.bands, config.rows
        else:
            self.bands, self.rows = lsh_params(config.threshold, config.num_perm)
        self.resolution = Resolution()
        self.figures: dict[str, int] = {}

    def prepare(self, scan: Scan, ctx: StageContext) -> None:
        spill = _fresh_dir(Path(ctx.work_dir) / "bands")
        self.spill_band_hashes(scan, spill, ctx)
        pairs = self.candidate_pairs(spill)
        shutil.rmtree(spill, ignore_errors=True)
        self.figures = {"bands": self.bands, "rows": self.rows, "candidate_pairs": int(len(pairs))}
        if not len(pairs):
            return
        members, similarity = self.verify(scan, pairs, ctx.map)
        self.resolution, clusters = resolve(members, self.report_clusters)
        write_cluster_report(ctx, self.name, scan, clusters, self.report_clusters, similarity)

    def spill_band_hashes(self, scan: Scan, spill: Path, ctx: StageContext) -> None:
        """Band hashes of every row with shingles, computed on the engine's workers, spilled per batch."""
        compute = functools.partial(batch_band_hashes, self.config, self.bands, self.rows)
        for part, (rows, bands) in enumerate(ctx.map(compute, scan(["_row", "_key"]))):
            if not rows.size:
                continue
            frame = pl.DataFrame({
                "band": np.repeat(np.arange(self.bands, dtype=np.uint16), rows.size),
                "hash": bands.T.reshape(-1),
                "row": np.tile(rows, self.bands),
            })
            # One row group per band, so reading one band skips the others by their statistics.
            frame.write_parquet(spill / f"part-{part:06d}.parquet", row_group_size=int(rows.size),
                                compression="lz4", statistics=True)

    def candidate_pairs(self, spill: Path) -> np.ndarray:
        """(n, 2) int64 unique row pairs sharing a band: every pair of a bucket of up to
        `_ALL_PAIRS` rows (a near-copy of a near-copy is then still compared with the original), and
        the smallest row with each other member of a larger bucket."""
        if not any(spill.iterdir()):
            return np.empty((0, 2), dtype=np.int64)
        lazy = pl.scan_parquet(spill / "*.parquet")
        found: list[pl.DataFrame] = []
        for band in range(self.bands):
            members = (lazy.filter(pl.col("band") == band)
                       .group_by("hash").agg(pl.col("row"))
                       .filter(pl.col("row").list.len() > 1)
                       .with_row_index("bucket")
                       .select("bucket", pl.col("row").list.len().alias("size"), "row")
                       .explode("row").collect())
            small = members.filter(pl.col("size") <= _ALL_PAIRS).select("bucket", a="row")
            found.append(small.join(small.rename({"a": "b"}), on="bucket")
                         .filter(pl.col("a") < pl.col("b")).select("a", "b"))
            large = members.filter(pl.col("size") > _ALL_PAIRS)
            found.append(large.with_columns(a=pl.col("row").min().over("bucket"))
                         .filter(pl.col("row") != pl.col("a")).select("a", b="row"))
        pairs = pl.concat(found).unique().sort(["a", "b"])
        return pairs.to_numpy().astype(np.int64)

    def verify(self, scan: Scan, pairs: np.ndarray, mapper: Mapper
               ) -> tuple[pl.DataFrame, Callable[[int, int], float]]:
        """Check candidate pairs (numbers, then exact Jaccard) and cluster the verified ones. Only
        candidate rows are held: their sorted unique 32-bit shingle hashes and numbers."""
        cfg = self.config
        wanted = unique_counts(pairs.reshape(-1))[0]
        shingles, = _CandidateShingles.read(scan, wanted, cfg.ngram, mapper, ["_row", "_key"], whole_keys)
        left, right = shingles.index(pairs[:, 0]), shingles.index(pairs[:, 1])
        if cfg.match_numbers:
            same = shingles.numbers[left] == shingles.numbers[right]
            pairs, left, right = pairs[same], left[same], right[same]
        sides = self._side_shingles(scan, wanted, mapper) if self.split else []
        union = _UnionFind()
        verified = split_rejected = 0
        for a, b, ia, ib in zip(pairs[:, 0].tolist(), pairs[:, 1].tolist(), left.tolist(), right.tolist(),
                                strict=True):
            if union.find(a) == union.find(b):
                continue
            if shingles.jaccard(ia, ib) < cfg.threshold:
                continue
            if sides and any(side.jaccard(*side.index(np.array([a, b])).tolist()) < cfg.threshold for side in sides):
                split_rejected += 1   # the whole rows are alike, but the prompts or the responses are not
                continue
            union.union(a, b)
            verified += 1
        self.figures["verified_pairs"] = verified
        if self.split:
            self.figures["rejected_by_side"] = split_rejected
        clustered = np.array(sorted(union.parent), dtype=np.int64)
        kept = [_slim(batch.filter(pa.array(np.isin(batch.column("_row").to_numpy(zero_copy_only=False), clustered))))
                for batch in scan(MEMBER_COLUMNS)]
        members = _member_frame(kept).join(
            pl.DataFrame({"_row": clustered, "cluster": [union.find(r) for r in clustered.tolist()]},
                         schema={"_row": pl.Int64, "cluster": pl.Int64}), on="_row")

        def similarity(a: int, b: int) -> float:
            ia, ib = shingles.index(np.array([a, b]))
            return shingles.jaccard(int(ia), int(ib))

        return members, similarity

    def _side_shingles(self, scan: Scan, wanted: np.ndarray, mapper: Mapper) -> list[_CandidateShingles]:
        """Prompt-side and response-side shingles of the candidate rows (`fields: split`)."""
        columns = ["_row", *text_columns(self.task)]
        return _CandidateShingles.read(scan, wanted, self.config.ngram, mapper, columns,
                                       functools.partial(side_keys, self.task))

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return apply_resolution(batch, self.resolution)

    def summary(self) -> dict[str, Any]:
        return {**self.figures, "fields": "split" if self.split else "whole", "ngram": self.config.ngram, "num_perm": self.config.num_perm,
                "threshold": self.config.threshold, "clusters": self.resolution.clusters,
                "removed": int(self.resolution.drop.size)}
