"""decontaminate: drop training rows that contain a benchmark (eval-role) item.

Eval items are indexed by their asking side (pretrain text, sft/reward user turns: what a benchmark
item is recognised by). A text is cut into matching units (textnorm.match_unit_codes: a Han character,
or a word or number); a text whose units are mostly Han is cut into `ngram_zh`-unit n-grams, any other
into `ngram_en`-unit n-grams. A training row (its whole text) is contaminated by an item when it holds
at least `threshold` of the item's n-grams. An item shorter than n is one n-gram of all its units, so
it matches only a training text with exactly those units. N-grams shared by more than `stop_items`
items are boilerplate ("以下哪项是正确的") and left out of the index.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from etl.catalog import DecontamConfig
from etl.stages.base import Scan, Stage, StageContext
from etl.stages.minhash import sorted_contains, unique_counts, window_hashes
from etl.stages.text import prompt_texts, row_text_series, text_columns
from etl.textnorm import match_unit_codes

EVAL_COLUMNS = ["task", "id", "source", "text", "messages", "prompt", "chosen", "rejected"]
_SNIPPET = 300


def unit_windows(texts: list[str] | pl.Series, ngram_zh: int, ngram_en: int) -> tuple[np.ndarray, np.ndarray]:
    """Every n-gram hash of every text (repeats kept), flat, with the text each belongs to. A text
    whose units are mostly character units (one non-ASCII letter: Han, kana) gets `ngram_zh`-unit
    n-grams, any other `ngram_en`-unit n-grams. Units are compared by their 64-bit codes
    (textnorm.match_unit_codes): only equality matters, so matches do not depend on the hash."""
    codes, character, lengths = match_unit_codes(texts)
    count = lengths.size
    owner = np.repeat(np.arange(count, dtype=np.int64), lengths)
    han = np.bincount(owner, weights=character, minlength=count)
    is_zh = (lengths > 0) & (han * 2 >= lengths)
    parts_hashes, parts_text = [np.empty(0, dtype=np.uint64)], [np.empty(0, dtype=np.int64)]
    for flag, n in ((True, ngram_zh), (False, ngram_en)):
        chosen = np.flatnonzero(is_zh == flag)
        if not chosen.size:
            continue
        hashes, offsets = window_hashes(codes[np.repeat(is_zh == flag, lengths)], lengths[chosen], n)
        parts_hashes.append(hashes)
        parts_text.append(np.repeat(chosen, np.diff(offsets)))
    return np.concatenate(parts_hashes), np.concatenate(parts_text)


def text_ngrams(texts: list[str] | pl.Series, ngram_zh: int, ngram_en: int) -> tuple[np.ndarray, np.ndarray]:
    """Unique n-gram hashes per text: flat uint64 array (sorted within each text) and offsets."""
    hashes, text = unit_windows(texts, ngram_zh, ngram_en)
    count = len(texts)
    order = np.lexsort((hashes, text))
    hashes, text = hashes[order], text[order]
    first = np.ones(hashes.size, dtype=bool)
    first[1:] = (hashes[1:] != hashes[:-1]) | (text[1:] != text[:-1])
    hashes, text = hashes[first], text[first]
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(np.bincount(text, minlength=count), out=offsets[1:])
    return hashes, offsets


def top_bits(hashes: np.ndarray, size: int) -> np.ndarray:
    """The top log2(size) bits of each uint64 hash, as indices into a table of `size` (a power of 2)."""
    return (hashes >> np.uint64(65 - size.bit_length())).view(np.int64)


def prefilter(grams: np.ndarray) -> np.ndarray:
    """`EvalIndex.present` for these n-gram hashes: 16 to 32 flags per n-gram (2¹⁶ to 2²⁴ in all),
    so that at most one flag in 16 is set and a training n-gram not in the index passes with about
    that chance (beyond 1M n-grams, more often). The table travels with the index to the workers:
    at most 32 bytes per n-gram, as much as the index itself. The hashes are mixed, so their top
    bits are as good as any."""
    present = np.zeros(1 << min(max((16 * grams.size).bit_length(), 16), 24), dtype=bool)
    present[top_bits(grams, present.size)] = True
    return present


@dataclass(frozen=True)
class EvalIndex:
    """The eval items' n-grams: distinct hashes sorted, and for each the items holding it
    (`items[starts[k]:starts[k] + counts[k]]`), plus each item's n-gram count. `present` is a
    prefilter: one flag per value of a hash's top bits, set where an indexed n-gram has them, so
    that a probe binary-searches only the few training n-grams whose flag is set."""

    grams: np.ndarray
    starts: np.ndarray
    counts: np.ndarray
    items: np.ndarray
    item_grams: np.ndarray
    present: np.ndarray

    @classmethod
    def build(cls, texts: list[str], config: DecontamConfig) -> EvalIndex:
        grams, offsets = text_ngrams(texts, config.ngram_zh, config.ngram_en)
        owner = np.repeat(np.arange(len(texts), dtype=np.int64), np.diff(offsets))
        order = np.argsort(grams, kind="stable")
        grams, owner = grams[order], owner[order]
        distinct, counts = unique_counts(grams)
        # Boilerplate n-grams (in too many items) leave the index and the items' denominators.
        common = np.repeat(counts > config.stop_items, counts)
        owner = owner[~common]
        distinct, counts = distinct[counts <= config.stop_items], counts[counts <= config.stop_items]
        starts = np.zeros(counts.size, dtype=np.int64)
        np.cumsum(counts[:-1], out=starts[1:])
        return cls(distinct, starts, counts, owner, np.bincount(owner, minlength=len(texts)), prefilter(distinct))

    def probe(self, hashes: np.ndarray, text: np.ndarray, texts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(text, item, shared n-grams) for every text sharing an n-gram with an item; each distinct
        n-gram of a text counts once."""
        empty = np.empty(0, dtype=np.int64)
        if not self.grams.size or not hashes.size:
            return empty, empty, empty
        maybe = np.flatnonzero(self.present[top_bits(hashes, self.present.size)])
        at = np.minimum(np.searchsorted(self.grams, hashes[maybe]), self.grams.size - 1)
        found = self.grams[at] == hashes[maybe]
        keys = unique_counts(text[maybe[found]] * self.grams.size + at[found])[0]   # distinct (text, n-gram)
        text, at = keys // self.grams.size, keys % self.grams.size
        width = self.counts[at]
        positions = np.repeat(self.starts[at], width) + np.arange(int(width.sum())) - np.repeat(
            np.cumsum(width) - width, width)
        pairs, shared = unique_counts(np.repeat(text, width) * self.item_grams.size + self.items[positions])
        return pairs // self.item_grams.size, pairs % self.item_grams.size, shared


def _eval_items(scan_eval: Scan) -> tuple[list[dict[str, str]], list[str]]:
    """Every eval item (task, id, source) with its asking-side text."""
    items: list[dict[str, str]] = []
    texts: list[str] = []
    for batch in scan_eval(EVAL_COLUMNS):
        tasks = batch.column("task")
        for task in pc.unique(tasks).to_pylist():
            part = batch.filter(pc.equal(tasks, task))
            for id_, source, text in zip(part.column("id").to_pylist(), part.column("source").to_pylist(),
                                         prompt_texts(part, task), strict=True):
                items.append({"task": task, "id": id_, "source": source})
                texts.append(text)
    return items, texts


def match_batch(task: str, config: DecontamConfig, index: EvalIndex, batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """The contaminated rows of one batch, each with its best eval item and coverage: every row's
    n-grams probed against the sorted eval index at once. Runs on the engine's workers."""
    texts = row_text_series(batch, task)
    rows, items, shared = index.probe(*unit_windows(texts, config.ngram_zh, config.ngram_en), texts.len())
    coverage = shared / index.item_grams[items]
    passing = coverage >= config.threshold
    best: dict[int, tuple[float, int]] = {}
    for r, i, c in zip(rows[passing].tolist(), items[passing].tolist(), coverage[passing].tolist(), strict=True):
        if r not in best or c > best[r][0]:
            best[r] = (c, i)
    ids, sources, ordinals = (batch.column(c).to_pylist() for c in ("id", "source", "_row"))
    return [{"_row": ordinals[r], "id": ids[r], "source": sources[r], "text": texts[r][:_SNIPPET], "item": i,
             "coverage": c} for r, (c, i) in sorted(best.items())]


class Decontaminate(Stage):
    """Reads the text columns, `_row`, `id`, `source`; drops contaminated rows. `prepare` needs
    `ctx.scan_eval` (columns EVAL_COLUMNS) and writes `report_dir/decontamination-<task>.json`."""

    name = "decontaminate"
    writes = ()
    replay_reads = ("_row",)
    drops_rows = True

    def __init__(self, task: str, config: DecontamConfig) -> None:
        self.task = task
        self.config = config
        self.reads = (*text_columns(task), "_row", "id", "source")
        self.contaminated = np.empty(0, dtype=np.int64)
        self.figures: dict[str, int] = {}

    def prepare(self, scan: Scan, ctx: StageContext) -> None:
        cfg = self.config
        items, item_texts = _eval_items(ctx.scan_eval)
        index = EvalIndex.build(item_texts, cfg)
        self.figures = {"eval_items": len(items), "index_ngrams": int(index.items.size)}
        hits: list[dict[str, Any]] = []
        if index.grams.size:
            probe = functools.partial(match_batch, self.task, cfg, index)
            for found in ctx.map_rows(probe, scan, list(self.reads)):
                hits.extend(found)
        self.contaminated = np.sort(np.array([h["_row"] for h in hits], dtype=np.int64))
        self.figures["contaminated"] = len(hits)
        self._report(ctx, hits, items, item_texts)

    def _report(self, ctx: StageContext, hits: list[dict[str, Any]], items: list[dict[str, str]],
                item_texts: list[str]) -> None:
        by_eval: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for hit in hits:
            by_eval[items[hit["item"]]["source"]].append(hit)
        report = {"task": self.task, "ngram_zh": self.config.ngram_zh, "ngram_en": self.config.ngram_en,
                  "threshold": self.config.threshold, **self.figures, "eval_sources": {}}
        for source, source_hits in sorted(by_eval.items()):
            report["eval_sources"][source] = {
                "matched_training_rows": len(source_hits),
                "by_training_source": dict(sorted(
                    {s: sum(1 for h in source_hits if h["source"] == s) for s in {h["source"] for h in source_hits}}
                    .items())),
                "samples": [{"training_id": h["id"], "training_source": h["source"], "training_text": h["text"],
                             "eval_id": items[h["item"]]["id"], "eval_text": item_texts[h["item"]][:_SNIPPET],
                             "overlap": round(h["coverage"], 3)}
                            for h in source_hits[:self.config.report_samples]],
            }
        path = Path(ctx.report_dir) / f"decontamination-{self.task}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if not self.contaminated.size:
            return batch
        keep = ~sorted_contains(self.contaminated, batch.column("_row").to_numpy(zero_copy_only=False))
        return batch if keep.all() else batch.filter(pa.array(keep))

    def summary(self) -> dict[str, Any]:
        return {**self.figures, "threshold": self.config.threshold}
