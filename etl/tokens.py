"""Token counts of the written rows, per source and per config/split, for the manifest and the card.

With `--tokenizer NAME_OR_PATH` a Hugging Face tokenizer counts them: a folder holding `tokenizer.json`
(read with the `tokenizers` library), else a name or folder `transformers.AutoTokenizer` loads with
`local_files_only=True` — nothing is ever downloaded. Without one the count is an estimate, labelled as
such everywhere it is shown: one token per CJK character plus one per four other non-space characters (the
usual ratios of BPE tokenizers trained on Chinese and English). Either way the text counted is every turn's
content (`batch_texts`; tool calls and tool schemas are not counted, and neither is a chat template's
markup), a batch at a time: the estimate with polars expressions on the workers, a tokenizer through its
batch encoder in the build process.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from etl.charclass import char_classes
from etl.stages.text import row_text_series

# What the estimate tells apart: a CJK character (one token each) and a space (none).
_CLASSES = (r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]", r"\s")
ESTIMATE_LABEL = "estimate (no tokenizer given): 1 token per CJK character + 1 per 4 other non-space characters"


class TokenizerError(ValueError):
    """The tokenizer named by --tokenizer cannot be loaded locally."""


class CharEstimate:
    method = "estimate"
    label = ESTIMATE_LABEL

    def count(self, texts: pl.Series) -> pl.Series:
        """Per text: its CJK characters + its other non-space characters / 4, rounded up (null stays null)."""
        chars = char_classes(texts, _CLASSES)
        cjk = chars.count(0)
        other = chars.lengths - chars.count(1) - cjk
        counts = pl.Series(cjk + (other + 3) // 4, dtype=pl.Int64)
        return counts.set(texts.is_null(), None) if texts.null_count() else counts


@dataclass
class HFTokenizer:
    name: str
    encode_batch: Any
    method: str = "tokenizer"

    @property
    def label(self) -> str:
        return f"tokenizer {self.name} (no special tokens, no chat template)"

    def count(self, texts: pl.Series) -> pl.Series:
        return pl.Series([len(ids) for ids in self.encode_batch(texts.to_list())], dtype=pl.Int64)


def load_counter(name_or_path: str | None) -> CharEstimate | HFTokenizer:
    """The counter for `--tokenizer`; raises TokenizerError naming what was tried."""
    if not name_or_path:
        return CharEstimate()
    folder = Path(name_or_path)
    if (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        return HFTokenizer(folder.name, lambda texts: [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)])
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise TokenizerError(f"--tokenizer {name_or_path}: no tokenizer.json in that folder, and `transformers` "
                             "is not installed to load it by name") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise TokenizerError(f"--tokenizer {name_or_path}: not a tokenizer folder and not in the local Hugging "
                             f"Face cache (nothing is downloaded): {exc}") from None
    return HFTokenizer(name_or_path, lambda texts: tokenizer(texts, add_special_tokens=False)["input_ids"])


def batch_texts(batch: pa.RecordBatch, task: str) -> pl.Series:
    """What is counted of each row: its turns' contents (etl.stages.text, tool calls left out); null
    columns of the eval config count as empty."""
    return row_text_series(batch, task, calls=False)


TOKENS_COLUMN = "_tokens"  # a row's token count, when a worker counted it (internal: never written)


def with_token_counts(counter: CharEstimate, task: str, batch: pa.RecordBatch) -> pa.RecordBatch:
    """`batch` plus each row's token count, so that the estimate runs on the engine's workers with the
    stages (TaskRun `finish`) instead of in the process that writes the shards."""
    return batch.append_column(TOKENS_COLUMN, counter.count(batch_texts(batch, task)).to_arrow().cast(pa.int64()))


@dataclass
class TokenTally:
    counter: CharEstimate | HFTokenizer
    by_source: Counter[str] = field(default_factory=Counter)
    by_config: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, config: str, split: str, batch: pa.RecordBatch, task: str | None = None) -> None:
        """Count one written batch of `config` (a task, or `eval` with the rows' `task` given)."""
        if batch.num_rows == 0:
            return
        index = batch.schema.get_field_index(TOKENS_COLUMN)
        counts = (pl.Series(batch.column(index)) if index >= 0
                  else self.counter.count(batch_texts(batch, task or config)))
        if config != "eval":  # per source: training rows (a source's eval split is counted under `eval`)
            frame = pl.DataFrame({"source": pl.Series(batch.column("source")), "n": counts})
            for source, n in frame.group_by("source").agg(pl.col("n").sum()).iter_rows():
                self.by_source[source] += int(n)
        self.by_config.setdefault(config, Counter())[split] += int(counts.sum())

    def on_workers(self, task: str) -> Callable[[pa.RecordBatch], pa.RecordBatch] | None:
        """What counts a task's rows on the workers (`with_token_counts`), or None when the counter
        stays here: a tokenizer is too heavy to send with every batch."""
        if isinstance(self.counter, CharEstimate):
            return functools.partial(with_token_counts, self.counter, task)
        return None

    def as_manifest(self) -> dict[str, Any]:
        return {"method": self.counter.method, "label": self.counter.label,
                "configs": {c: dict(sorted(s.items())) for c, s in sorted(self.by_config.items())},
                "sources": dict(sorted(self.by_source.items()))}
