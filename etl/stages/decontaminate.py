"""decontaminate: drop training rows that contain a benchmark (eval-role) item.

Eval items are indexed by their asking side (pretrain text, sft/reward user turns: what a benchmark
item is recognised by). A text is cut into matching units (textnorm.match_units: a Han character,
or a word or number); a text whose units are mostly Han is cut into `ngram_zh`-unit n-grams, any other
into `ngram_en`-unit n-grams. A training row (its whole text) is contaminated by an item when it holds
at least `threshold` of the item's n-grams. An item shorter than n is one n-gram of all its units, so
it matches only a training text with exactly those units. N-grams shared by more than `stop_items`
items are boilerplate ("以下哪项是正确的") and left out of the index.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from etl.catalog import DecontamConfig
from etl.stages.base import Scan, Stage, StageContext
from etl.stages.minhash import unique_counts, window_hashes
from etl.stages.text import prompt_texts, row_texts, text_columns
from etl.textnorm import match_units

EVAL_COLUMNS = ["task", "id", "source", "text", "messages", "prompt", "chosen", "rejected"]
_WORD_BIT = np.uint64(1 << 63)
_SNIPPET = 300


def _unit_code(unit: str) -> int:
    if len(unit) == 1 and not unit.isascii() and unit.isalpha():
        return ord(unit)
    return xxhash.xxh3_64_intdigest(unit.encode()) | (1 << 63)


def text_ngrams(texts: list[str], ngram_zh: int, ngram_en: int) -> tuple[np.ndarray, np.ndarray]:
    """Unique n-gram hashes per text: flat uint64 array (sorted within each text) and offsets."""
    unit_codes = [np.fromiter((_unit_code(u) for u in match_units(t)), dtype=np.uint64) for t in texts]
    is_zh = np.array([c.size > 0 and np.count_nonzero(c < _WORD_BIT) * 2 >= c.size for c in unit_codes],
                     dtype=bool)
    per_text: list[np.ndarray] = [np.empty(0, dtype=np.uint64)] * len(texts)
    for flag, n in ((True, ngram_zh), (False, ngram_en)):
        chosen = np.flatnonzero(is_zh == flag)
        if not chosen.size:
            continue
        codes = [unit_codes[i] for i in chosen.tolist()]
        hashes, offsets = window_hashes(np.concatenate(codes), np.array([c.size for c in codes]), n)
        for j, i in enumerate(chosen.tolist()):
            per_text[i] = unique_counts(hashes[offsets[j]:offsets[j + 1]])[0]
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum([a.size for a in per_text], out=offsets[1:])
    flat = np.concatenate(per_text) if texts else np.empty(0, dtype=np.uint64)
    return flat, offsets


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
        grams, offsets = text_ngrams(item_texts, cfg.ngram_zh, cfg.ngram_en)
        owner = np.repeat(np.arange(len(items), dtype=np.int64), np.diff(offsets))
        # Boilerplate n-grams (in too many items) leave the index and the items' denominators.
        order = np.argsort(grams, kind="stable")
        grams, owner = grams[order], owner[order]
        counts = unique_counts(grams)[1]
        common = np.repeat(counts > cfg.stop_items, counts)
        grams, owner = grams[~common], owner[~common]
        item_grams = np.bincount(owner, minlength=len(items))
        self.figures = {"eval_items": len(items), "index_ngrams": int(grams.size)}
        hits: list[dict[str, Any]] = []
        drop: list[int] = []
        if grams.size:
            for batch in scan(list(self.reads)):
                for row, best, coverage in self._match(batch, grams, owner, item_grams):
                    drop.append(row["_row"])
                    hits.append({**row, "item": best, "coverage": coverage})
        self.contaminated = np.sort(np.array(drop, dtype=np.int64))
        self.figures["contaminated"] = len(drop)
        self._report(ctx, hits, items, item_texts)

    def _match(self, batch: pa.RecordBatch, grams: np.ndarray, owner: np.ndarray,
               item_grams: np.ndarray) -> list[tuple[dict[str, Any], int, float]]:
        texts = row_texts(batch, self.task)
        row_grams, offsets = text_ngrams(texts, self.config.ngram_zh, self.config.ngram_en)
        row_of = np.repeat(np.arange(len(texts), dtype=np.int64), np.diff(offsets))
        lo = np.searchsorted(grams, row_grams, side="left")
        hi = np.searchsorted(grams, row_grams, side="right")
        found = hi > lo
        if not found.any():
            return []
        lo, width, row_of = lo[found], (hi - lo)[found], row_of[found]
        positions = np.repeat(lo - np.cumsum(width) + width, width) + np.arange(int(width.sum()))
        pair = np.repeat(row_of, width) * len(item_grams) + owner[positions]
        pairs, shared = unique_counts(pair)
        rows, items = pairs // len(item_grams), pairs % len(item_grams)
        coverage = shared / item_grams[items]
        passing = coverage >= self.config.threshold
        best: dict[int, tuple[float, int]] = {}
        for r, i, c in zip(rows[passing].tolist(), items[passing].tolist(), coverage[passing].tolist(),
                           strict=True):
            if r not in best or c > best[r][0]:
                best[r] = (c, i)
        ids, sources, ordinals = (batch.column(c).to_pylist() for c in ("id", "source", "_row"))
        return [({"_row": ordinals[r], "id": ids[r], "source": sources[r], "text": texts[r][:_SNIPPET]}, i, c)
                for r, (c, i) in sorted(best.items())]

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
        keep = ~np.isin(batch.column("_row").to_numpy(zero_copy_only=False), self.contaminated)
        return batch if keep.all() else batch.filter(pa.array(keep))

    def summary(self) -> dict[str, Any]:
        return {**self.figures, "threshold": self.config.threshold}
