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
import os
import shutil
from collections import Counter
from collections.abc import Iterator
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
                         count: int, ngram: int | None = None) -> None:
    """`report_dir/dup_clusters-<task>-<stage>.jsonl`: sample clusters with the text of each member
    and, given the `ngram`, each member's Jaccard to the survivor over `_key` n-grams."""
    sample = clusters[:count]
    path = Path(ctx.report_dir) / f"dup_clusters-{ctx.task}-{stage}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    wanted = np.array(sorted({m["_row"] for cluster in sample for m in cluster}), dtype=np.int64)
    texts: dict[int, str] = {}
    keys: dict[int, str] = {}
    if wanted.size:
        columns = ["_row", *text_columns(ctx.task), *(["_key"] if ngram else [])]
        for picked in ctx.map_rows(functools.partial(pick_rows, wanted), scan, columns):
            if picked.num_rows:   # the text of the sampled rows only
                rows = picked.column("_row").to_pylist()
                for row, text in zip(rows, row_texts(picked, ctx.task), strict=True):
                    texts[row] = text[:_SNIPPET]
                if ngram:
                    keys.update(zip(rows, picked.column("_key").to_pylist(), strict=True))
    similar: dict[tuple[int, int], float] = {}
    if ngram:
        shown = np.array([(c[0]["_row"], m["_row"]) for c in sample for m in c[1:]], dtype=np.int64).reshape(-1, 2)
        if shown.size:
            at = np.searchsorted(wanted, shown)
            found = text_jaccards(pa.array([keys[r] for r in wanted.tolist()], pa.string()), at[:, 0], at[:, 1], ngram)
            similar = dict(zip(map(tuple, shown.tolist()), found.tolist(), strict=True))
    with path.open("w", encoding="utf-8") as out:
        for cluster in sample:
            survivor = cluster[0]["_row"]
            members = [{"id": m["id"], "source": m["source"], "priority": m["_priority"], "length": m["_len"],
                        "survivor": i == 0, "text": texts.get(m["_row"], ""),
                        **({"jaccard_to_survivor": round(similar[(survivor, m["_row"])], 3)} if ngram and i else {})}
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


def pick_rows(rows: np.ndarray, batch: pa.RecordBatch) -> pa.RecordBatch:
    """The rows of `batch` whose `_row` is in `rows` (sorted). Runs on the engine's workers."""
    return batch.filter(pa.array(sorted_contains(rows, batch.column("_row").to_numpy(zero_copy_only=False))))


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
        for part, table in enumerate(ctx.map_rows(key_hashes, scan, ["_key", *MEMBER_COLUMNS])):
            pl.from_arrow(table).write_parquet(spill / f"part-{part:06d}.parquet")  # type: ignore[union-attr]
        if not any(spill.iterdir()):
            return
        # Two passes over the spill: the repeated hashes from the hash column alone, then the member
        # rows holding one. `is_duplicated` over the member table would load every row's id, source
        # and meta at once (618 → 255 MiB peak on a 3M-row spill, bench/RESULTS.md). The repeated
        # hashes by sorting the column: a polars group-by took +205 MiB for 4.3M rows, the sort +116.
        parts = pl.scan_parquet(spill / "*.parquet")
        hashes, counts = unique_counts(parts.select("hash").drop_nulls().collect().get_column("hash").to_numpy())
        repeated = hashes[counts > 1]
        del hashes, counts
        members = (parts.filter(pl.col("hash").is_in(pl.Series(repeated).implode()))
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


_LOW = np.uint64(0xFFFFFFFF)


def bucket_pairs(hashes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The candidate pairs of one band as sorted unique keys `a << 32 | b` (a < b, rows below 2³²),
    where rows with the same hash form a bucket: every pair of a bucket of up to `_ALL_PAIRS` rows (a
    near-copy of a near-copy is then still compared with the original), and the smallest row with
    each other member of a larger bucket. Vectorised: buckets are runs of the rows sorted by hash;
    only the rows of buckets of two or more are then sorted by (bucket, row) and gathered per size."""
    if rows.size and int(rows.max()) >= 1 << 32:
        raise ValueError("near dedup numbers a task's rows in 32 bits: this task has 2^32 rows or more")
    order = np.argsort(hashes)
    sizes = unique_counts(hashes[order])[1]   # the buckets, as runs of the sorted hashes
    shared = sizes > 1
    members = rows[order[np.repeat(shared, sizes)]].astype(np.uint64)
    sizes = sizes[shared]
    bucket_of = np.repeat(np.arange(sizes.size), sizes)
    members = np.sort((bucket_of.astype(np.uint64) << np.uint64(32)) | members) & _LOW   # rows ascending per bucket
    starts = np.cumsum(sizes) - sizes
    found: list[np.ndarray] = []
    for size in range(2, _ALL_PAIRS + 1):
        bucket = members[starts[sizes == size][:, None] + np.arange(size)]
        first, second = np.triu_indices(size, 1)
        found.append((bucket[:, first] << np.uint64(32)) | bucket[:, second])
    large = (sizes > _ALL_PAIRS)[bucket_of] & (np.arange(members.size) != starts[bucket_of])   # not the head
    found.append((members[starts[bucket_of[large]]] << np.uint64(32)) | members[large])
    return unique_counts(np.concatenate([part.reshape(-1) for part in found]))[0]


# Verification runs in work units of a bounded size, whatever the corpus size: the candidate rows are
# written to `work_dir` as blocks of about this many key characters (a row has at most as many
# shingles as characters), and one verification task compares pairs with about this many shingles
# in all. At 2M a task's arrays stay near 100 MB on a worker (8-byte sort keys and their copies) and
# a block's rows a few MB in the driver. The unit size never changes the result.
UNIT_SHINGLES = 2_000_000


def cuts(sizes: np.ndarray, budget: int) -> np.ndarray:
    """End indices of consecutive runs of `sizes` summing to at most `budget` (at least one item each)."""
    total = np.cumsum(sizes)
    ends: list[int] = []
    start, base = 0, 0
    while start < sizes.size:
        end = max(start + 1, int(np.searchsorted(total, base + budget, side="right")))
        ends.append(end)
        base, start = int(total[end - 1]), end
    return np.array(ends, dtype=np.int64)


def row_shingles(keys: list[str], ngram: int) -> pa.LargeListArray:
    """Sorted unique 32-bit shingle hashes (the top half of `shingle_hashes`) of each key."""
    flat, offsets = shingle_hashes(keys, ngram)
    doc = np.repeat(np.arange(len(keys), dtype=np.uint64), np.diff(offsets))
    unique = unique_counts((doc << np.uint64(32)) | (flat >> np.uint64(32)))[0]
    bounds = np.zeros(len(keys) + 1, dtype=np.int64)
    np.cumsum(np.bincount((unique >> np.uint64(32)).astype(np.int64), minlength=len(keys)), out=bounds[1:])
    return pa.LargeListArray.from_arrays(pa.array(bounds), pa.array((unique & np.uint64(0xFFFFFFFF)).astype(np.uint32)))


def window_counts(texts: pa.Array, ngram: int) -> np.ndarray:
    """Shingles each text can have at most (`shingle_hashes`: one per window, one for a short text)."""
    chars = _chars(texts)
    return np.where(chars >= ngram, chars - ngram + 1, (chars > 0).astype(np.int64))


SIDES = ("prompt", "response")
# A block's columns in file order (`write_block`): a whole row's view, or the two sides' views.
WHOLE_BLOCK = ("_row", "numbers", "whole")
SIDE_BLOCK = ("_row", *SIDES)
# Blocks hold the matching text a view is shingled from, not its shingles: zstd text takes a third
# (real text) to a twelfth (templated text) of the bytes of the 4-byte hashes of its n-grams, and the
# verification tasks shingle only the rows of the pairs whose numbers agree (bench/RESULTS.md,
# "Near-dedup verification blocks (measured by hand)").
_BLOCK_FORMAT = pa.ipc.IpcWriteOptions(compression="zstd")


def block_path(directory: str, block: int) -> str:
    return f"{directory}/block-{block:06d}.arrow"


def write_block(ngram: int, task: str | None, item: tuple[str, pa.Table]) -> tuple[np.ndarray, np.ndarray]:
    """One block of rows → a zstd Arrow file at the item's path with each row's `_row` and, without a
    `task`, its `numbers` and `whole` text (`_key`), or, given the `task` of `fields: split`, the
    matching keys of its `prompt` and `response`. Returns the block's rows and the most shingles each
    can have (all views), which sizes the verification tasks. Runs on the engine's workers."""
    path, table = item
    batch = table.combine_chunks().to_batches()[0]
    columns: dict[str, pa.Array] = {"_row": batch.column("_row")}
    if task is None:
        keys = batch.column("_key")
        columns |= {"numbers": pa.array(numbers_of(keys.to_pylist()), pa.string()), "whole": keys}
    else:
        for name, side in zip(SIDES, side_text_series(batch, task), strict=True):
            columns[name] = match_keys(side).to_arrow().cast(pa.string())
    written = pa.RecordBatch.from_pydict(columns)
    assert tuple(written.schema.names) == (SIDE_BLOCK if task else WHOLE_BLOCK)   # read_rows relies on it
    temporary = f"{path}.tmp"
    with pa.OSFile(temporary, "wb") as sink, pa.ipc.new_file(sink, written.schema, options=_BLOCK_FORMAT) as writer:
        writer.write_batch(written)
    os.replace(temporary, path)
    counts = sum(window_counts(written.column(name), ngram) for name in written.schema.names
                 if name not in ("_row", "numbers"))
    return batch.column("_row").to_numpy(zero_copy_only=False), np.asarray(counts, dtype=np.int64)


Located = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]   # block and position of each pair's two rows


def read_rows(directory: str, located: np.ndarray, column: str) -> pa.Array:
    """`column` of the rows at `located` (block << 32 | position, sorted), reading one block at a time
    and only that column: a block's column is decompressed whole, so one is held at once."""
    blocks, counts = unique_counts(located >> 32)
    layout = WHOLE_BLOCK if column in WHOLE_BLOCK else SIDE_BLOCK
    options = pa.ipc.IpcReadOptions(included_fields=[layout.index(column)])
    parts: list[pa.Array] = []
    for block, end, count in zip(blocks.tolist(), np.cumsum(counts).tolist(), counts.tolist(), strict=True):
        reader = pa.ipc.open_file(pa.memory_map(block_path(directory, block)), options=options)
        parts.append(reader.get_batch(0).column(0).take(pa.array(located[end - count:end] & 0xFFFFFFFF)))
    return pa.concat_arrays(parts) if parts else pa.array([], pa.string())


def jaccards(a: pa.Array, b: pa.Array) -> np.ndarray:
    """Exact Jaccard of each pair of sorted unique shingle lists, all pairs at once: a shingle both
    rows of pair i hold is the key (i, shingle) twice. Two empty lists are the same (1.0)."""
    count = len(a)

    def keyed(lists: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        sizes = pc.list_value_length(lists).to_numpy(zero_copy_only=False).astype(np.int64)
        pair = np.repeat(np.arange(count, dtype=np.uint64), sizes)
        return (pair << np.uint64(32)) | lists.flatten().to_numpy(zero_copy_only=False).astype(np.uint64), sizes

    (keys_a, sizes_a), (keys_b, sizes_b) = keyed(a), keyed(b)
    keys = np.sort(np.concatenate([keys_a, keys_b]))
    twice = keys[1:][keys[1:] == keys[:-1]]
    shared = np.bincount((twice >> np.uint64(32)).astype(np.int64), minlength=count)
    union = sizes_a + sizes_b - shared
    return np.divide(shared, union, out=np.ones(count), where=union > 0)


def text_jaccards(texts: pa.Array, a: np.ndarray, b: np.ndarray, ngram: int) -> np.ndarray:
    """Jaccard of the n-gram sets of `texts[a[i]]` and `texts[b[i]]`, each text shingled once."""
    used, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
    lists = row_shingles(texts.take(pa.array(used)).to_pylist(), ngram)
    return jaccards(lists.take(pa.array(inverse[:a.size])), lists.take(pa.array(inverse[a.size:])))


def verify_pairs(threshold: float, match_numbers: bool, views: tuple[str, ...], ngram: int, directory: str,
                 pairs: Located) -> np.ndarray:
    """One verification task: for each pair, whether its numbers agree (`match_numbers`) and the
    Jaccard of each of the `views` reaches `threshold`, each check only where the earlier ones
    passed, reading (and shingling) only the rows that check needs. Runs on the engine's workers."""
    block_a, position_a, block_b, position_b = pairs
    count = block_a.size
    located = (np.concatenate([block_a, block_b]).astype(np.int64) << 32) | np.concatenate([position_a, position_b])
    rows, inverse = np.unique(located, return_inverse=True)   # each row of the task once, by block
    side_a, side_b = inverse[:count], inverse[count:]
    passed = np.ones(count, dtype=bool)
    if match_numbers:
        numbers = read_rows(directory, rows, "numbers")
        passed = pc.equal(numbers.take(pa.array(side_a)), numbers.take(pa.array(side_b))).to_numpy(
            zero_copy_only=False, writable=True)
    for view in views:
        at = np.flatnonzero(passed)
        if at.size:
            used, back = np.unique(np.concatenate([side_a[at], side_b[at]]), return_inverse=True)
            texts = read_rows(directory, rows[used], view)
            passed[at] = text_jaccards(texts, back[:at.size], back[at.size:], ngram) >= threshold
    return passed


@dataclass
class TextBlocks:
    """Where some candidate rows' texts (`views`) were written: block files in `directory`, and per
    row (`rows`, sorted) its block, its position there and the most shingles it can have. Arrays,
    not objects."""

    directory: str
    rows: np.ndarray
    block: np.ndarray
    position: np.ndarray
    shingles: np.ndarray
    views: tuple[str, ...]
    ngram: int

    @classmethod
    def write(cls, scan: Scan, rows: np.ndarray, directory: Path, ctx: StageContext, ngram: int,
              task: str | None, unit: int) -> TextBlocks:
        """Pick the `rows` (sorted) out of one scan, cut them into blocks of about `unit` key
        characters, and have the workers write each block: the whole row and its numbers, or, given
        a `task`, its two sides (`write_block`)."""
        where = str(directory.absolute())   # the workers may not share the driver's working directory
        columns = ["_row", "_key", *(text_columns(task) if task else [])]

        def blocks() -> Iterator[tuple[str, pa.Table]]:
            pending: list[pa.Table] = []
            size = block = 0
            for batch in ctx.map_rows(functools.partial(pick_rows, rows), scan, columns):
                if not batch.num_rows:
                    continue
                picked = pa.Table.from_batches([batch])
                pending.append(picked)
                size += _key_chars(picked).sum()
                if size < unit:
                    continue
                table = pa.concat_tables(pending)
                ends = cuts(_key_chars(table), unit)
                for start, end in zip([0, *ends[:-2].tolist()], ends[:-1].tolist(), strict=True):
                    yield block_path(where, block), table.take(pa.array(np.arange(start, end)))
                    block += 1
                start = int(ends[-2]) if ends.size > 1 else 0
                pending = [table.take(pa.array(np.arange(start, table.num_rows)))]
                size = _key_chars(pending[0]).sum()
            if pending:
                yield block_path(where, block), pa.concat_tables(pending)

        found = cls(where, rows, np.zeros(rows.size, dtype=np.int32), np.zeros(rows.size, dtype=np.int32),
                    np.zeros(rows.size, dtype=np.int64), SIDES if task else ("whole",), ngram)
        for block, (block_rows, counts) in enumerate(ctx.map(functools.partial(write_block, ngram, task), blocks())):
            at = np.searchsorted(rows, block_rows)
            found.block[at] = block
            found.position[at] = np.arange(block_rows.size, dtype=np.int32)
            found.shingles[at] = counts
        return found

    def locate(self, pairs: np.ndarray) -> Located:
        at = np.searchsorted(self.rows, pairs)
        return self.block[at[:, 0]], self.position[at[:, 0]], self.block[at[:, 1]], self.position[at[:, 1]]

    def check(self, pairs: np.ndarray, ctx: StageContext, threshold: float, match_numbers: bool,
              unit: int) -> np.ndarray:
        """`verify_pairs` over these blocks for every pair, on the workers: the pairs grouped by
        their two blocks and cut into tasks of about `unit` shingles. A task reads every block it
        touches whole, so the block pairs are taken in square tiles of about one task each: a
        task then reads about 2·√k blocks for its k block pairs, not k + 1 as along a row."""
        at = np.searchsorted(self.rows, pairs)
        block_a, block_b = self.block[at[:, 0]], self.block[at[:, 1]]
        low, high = np.minimum(block_a, block_b).astype(np.int64), np.maximum(block_a, block_b).astype(np.int64)
        sizes = self.shingles[at[:, 0]] + self.shingles[at[:, 1]]
        block_pairs = unique_counts(low * (int(high.max(initial=0)) + 1) + high)[0].size
        per_task = unit / max(float(sizes.mean()), 1.0) if sizes.size else 1.0
        tile = max(1, int(np.sqrt(per_task * block_pairs / max(len(pairs), 1))))
        order = np.lexsort((high, low, high // tile, low // tile))
        ends = cuts(sizes[order], unit)
        spans = list(zip([0, *ends[:-1].tolist()], ends.tolist(), strict=True))
        task = functools.partial(verify_pairs, threshold, match_numbers, self.views, self.ngram, self.directory)
        passed = np.zeros(len(pairs), dtype=bool)
        units = (self.locate(pairs[order[start:end]]) for start, end in spans)
        for (start, end), result in zip(spans, ctx.map(task, units), strict=True):
            passed[order[start:end]] = result
        return passed


def _chars(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Characters of each text (0 for a null)."""
    return pc.utf8_length(texts).fill_null(0).to_numpy().astype(np.int64)


def _key_chars(table: pa.Table) -> np.ndarray:
    return _chars(table.column("_key"))


def connect(pairs: np.ndarray, side_ok: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Clusters of the `pairs` (sorted; their whole rows passed) taken in order: a pair whose rows are
    not connected yet merges them if `side_ok`, else it counts as rejected by a side. Returns the
    clustered rows (sorted), the cluster of each (its smallest row), merges and side rejections."""
    nodes = unique_counts(pairs.reshape(-1))[0]
    parent = np.arange(nodes.size)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = int(parent[root])
        while x != root:
            parent[x], x = root, int(parent[x])
        return root

    merged = rejected = 0
    for (a, b), ok in zip(np.searchsorted(nodes, pairs).tolist(), side_ok.tolist(), strict=True):
        root_a, root_b = find(a), find(b)
        if root_a == root_b:
            continue
        if not ok:
            rejected += 1   # the whole rows are alike, but the prompts or the responses are not
            continue
        parent[max(root_a, root_b)] = min(root_a, root_b)
        merged += 1
    while not np.array_equal(parent[parent], parent):
        parent = parent[parent]
    clustered = np.bincount(parent, minlength=nodes.size)[parent] > 1
    return nodes[clustered], nodes[parent[clustered]], merged, rejected


class NearDedup(Stage):
    """MinHash LSH over character n-grams of `_key`; every candidate pair is verified by exact
    Jaccard of the n-gram sets (≥ threshold) and, with `match_numbers`, by equal numbers, before
    anything is merged. Clusters are the connected components of verified pairs.

    Memory: band hashes are spilled to `work_dir` per batch and grouped band by band with polars; the
    matching texts of the candidate rows (those sharing a band with another row) are written to
    `work_dir` in zstd blocks and verified on the workers, which shingle them, in units of a bounded
    size (UNIT_SHINGLES). The driver holds the candidate pairs and a few numbers per candidate row,
    as arrays."""

    name = "near_dedup"
    reads = ("_key", *MEMBER_COLUMNS)
    writes = ("dup_count", "meta")
    replay_reads = ("_row",)   # dup_count and meta are rewritten only when a re-scan asks for them
    drops_rows = True

    def __init__(self, config: MinHashConfig, report_clusters: int = 20, task: str = "pretrain",
                 unit: int = UNIT_SHINGLES) -> None:
        self.config = config
        self.unit = unit   # work unit size of verification (UNIT_SHINGLES); tests make it tiny
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
        blocks = _fresh_dir(Path(ctx.work_dir) / "blocks")
        members = self.verify(scan, pairs, ctx, blocks)
        shutil.rmtree(blocks, ignore_errors=True)
        self.resolution, clusters = resolve(members, self.report_clusters)
        write_cluster_report(ctx, self.name, scan, clusters, self.report_clusters, self.config.ngram)

    def spill_band_hashes(self, scan: Scan, spill: Path, ctx: StageContext) -> None:
        """Band hashes of every row with shingles, computed on the engine's workers, spilled per batch."""
        compute = functools.partial(batch_band_hashes, self.config, self.bands, self.rows)
        for part, (rows, bands) in enumerate(ctx.map_rows(compute, scan, ["_row", "_key"])):
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
        """(n, 2) int64 unique row pairs sharing a band (`bucket_pairs`), sorted, one band at a time:
        a band's hashes and rows are two arrays (16 bytes a row), and the pairs found so far (one
        8-byte key each) are merged with each band's, so the driver never holds every band's pairs. (A polars
        group-by with row lists per band peaked at 1,094 MiB in the driver on a 4.3M-row task.)"""
        if not any(spill.iterdir()):
            return np.empty((0, 2), dtype=np.int64)
        lazy = pl.scan_parquet(spill / "*.parquet")
        keys = np.empty(0, dtype=np.uint64)
        for band in range(self.bands):
            table = lazy.filter(pl.col("band") == band).select("hash", "row").collect()
            found = bucket_pairs(table.get_column("hash").to_numpy(), table.get_column("row").to_numpy())
            del table
            keys = unique_counts(np.concatenate([keys, found]))[0]
        return np.stack([keys >> np.uint64(32), keys & _LOW], axis=1).astype(np.int64)

    def verify(self, scan: Scan, pairs: np.ndarray, ctx: StageContext, directory: Path) -> pl.DataFrame:
        """Check candidate pairs on the workers (numbers and the whole row's exact Jaccard; then,
        with `fields: split`, each side's, for the pairs whose whole rows passed: usually few) and
        cluster the verified ones here. Clusters are connected components, so the pairs are checked
        independently; the figures follow the sorted pair order as a sequential loop that skips
        pairs already connected would count them (`connect`). Each set of blocks is deleted once
        checked, so the whole rows' blocks are gone before the sides' are written."""
        cfg = self.config
        whole = TextBlocks.write(scan, unique_counts(pairs.reshape(-1))[0], _fresh_dir(directory / "whole"),
                                 ctx, cfg.ngram, None, self.unit)
        alike = pairs[whole.check(pairs, ctx, cfg.threshold, cfg.match_numbers, self.unit)]
        shutil.rmtree(whole.directory, ignore_errors=True)
        side_ok = np.ones(len(alike), dtype=bool)
        if self.split and len(alike):
            sides = TextBlocks.write(scan, unique_counts(alike.reshape(-1))[0], _fresh_dir(directory / "sides"),
                                     ctx, cfg.ngram, self.task, self.unit)
            side_ok = sides.check(alike, ctx, cfg.threshold, False, self.unit)
            shutil.rmtree(sides.directory, ignore_errors=True)
        clustered, cluster, merged, rejected = connect(alike, side_ok)
        self.figures["verified_pairs"] = merged
        if self.split:
            self.figures["rejected_by_side"] = rejected
        kept = [_slim(batch) for batch in ctx.map_rows(functools.partial(pick_rows, clustered), scan, MEMBER_COLUMNS)]
        members = _member_frame(kept).join(
            pl.DataFrame({"_row": clustered, "cluster": cluster}, schema={"_row": pl.Int64, "cluster": pl.Int64}),
            on="_row")
        return members

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return apply_resolution(batch, self.resolution)

    def summary(self) -> dict[str, Any]:
        return {**self.figures, "fields": "split" if self.split else "whole", "ngram": self.config.ngram, "num_perm": self.config.num_perm,
                "threshold": self.config.threshold, "clusters": self.resolution.clusters,
                "removed": int(self.resolution.drop.size)}
