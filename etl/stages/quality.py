"""quality: drop broken and spam rows, each under a named reason (docs/PRIVACY.md, "Quality").

Measures are computed per row over whole columns (polars, numpy), then compared with the row's
source's thresholds (`build.quality`, overridden by a source's `quality:`). A row that fails several
checks is counted under the first reason of REASONS:

- `mojibake`: characters of mojibake (锟斤拷, 烫烫烫, U+FFFD, UTF-8 read as Latin-1/cp1252 such as
  `Ã¤` or `åŒ»ç”Ÿ`) per character of the row above `max_mojibake_ratio`;
- `line_repetition`: the share of non-empty lines that repeat an earlier line of the row above
  `max_line_repetition`, for rows of at least 3 lines;
- `char_repetition`: the share of the answer's characters equal to the character p places before
  (the best p in 1-10: a wall of one character or of a short phrase) above `max_char_repetition`, for
  answers of at least 10 characters (a wall of repeated lines is counted as `line_repetition`, checked first);
- `short_answer`: the answer (assistant turns; reward `chosen`; pretrain `text`) has fewer than
  `min_answer_chars` characters once punctuation, spaces and placeholders are removed;
- `filler_answer`: the answer only says 同上 / 谢谢 / 不知道 / "thanks" and the like;
- `advertising`: the answer holds more than `max_ad_hits` advertising or contact cues (加微信,
  咨询热线, 我院专家, a redacted <PHONE>/<SOCIAL_ID>, "call now"...; links alone do not count);
- `echo`: an SFT/reward answer that repeats the question (same text once case, spaces and
  punctuation are ignored).

The stage keeps no state: it marks a dropped row's reason in `_drop`, which the executor counts per
source and removes (etl.stages.base.settle), keeping `report_samples` rows per reason for the
drops report (`stats/reports/<task>/drops-quality.jsonl`, `medcorpus build --explain-drops N`).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from etl.catalog import QualityConfig, QualityThresholds
from etl.codepoints import decode
from etl.stages.base import DROP, Stage
from etl.stages.text import column_text, row_text_series, text_columns

REASONS = ("mojibake", "line_repetition", "char_repetition", "short_answer", "filler_answer", "advertising", "echo")

_MOJIBAKE = ("锟斤拷|烫烫烫|屯屯屯|\ufffd|[ÃÂ][\u0080-\u00bf]|"
             "[äåæçèé][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013\u2014"
             "\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122]{2}")
_CLEAN = r"<[A-Z_]+>|[\p{P}\p{S}\p{Z}\s]"
_FILLER = (r"^(?:同上|同楼上|谢谢|多谢|感谢|谢谢医生|谢谢大夫|不知道|不清楚|呵呵|如题|顶|你好|您好|"
           r"thanks?|thankyou|thx|idk|idontknow|sameasabove|noidea)+$")
_ADS = (r"(?i)加微信|加我微信|加v信|加[vV]|私信我|咨询热线|热线电话|免费咨询|在线咨询|预约电话|挂号电话|咨询电话|"
        r"详情请?咨询|我院专家|我院|专治|包治|无效退款|点击链接|点击咨询|扫码|扫一扫|关注公众号|优惠|特价|客服|"
        r"<PHONE>|<SOCIAL_ID>|call now|visit our (?:website|clinic)|contact us|click here|buy now|"
        r"free consultation|whatsapp")
_PERIODS = range(1, 11)
_SHORT = 64                     # answers up to this long are checked for short_answer / filler_answer


def _cleaned(texts: pl.Series) -> pl.Series:
    """Without placeholders, punctuation, symbols and spaces, lower-cased: what "short", "filler"
    and "echo" are judged on."""
    return texts.str.replace_all(_CLEAN, "").str.to_lowercase()


def row_parts(batch: pa.RecordBatch, task: str) -> tuple[pl.Series, pl.Series, pl.Series | None]:
    """(whole row text, answer text, question text or None) per row: the turns' contents, tool calls
    left out (a call's arguments are data, not prose; calls_tools covers a reply that is a call)."""
    if task == "pretrain":
        text = column_text(batch.column("text"))
        return text, text, None
    if task == "sft":
        messages = batch.column("messages")
        return (column_text(messages, calls=False), column_text(messages, "assistant", calls=False),
                column_text(messages, "user", calls=False))
    return (row_text_series(batch, task, calls=False), column_text(batch.column("chosen"), calls=False),
            column_text(batch.column("prompt"), "user", calls=False))


def calls_tools(batch: pa.RecordBatch, task: str) -> np.ndarray:
    """Per row: whether an answer turn (sft assistant turns, reward `chosen`) calls a tool. Such a turn
    may carry no text at all: its answer is the call, so it is never a short or filler answer."""
    column = {"sft": "messages", "reward": "chosen"}.get(task)
    if column is None or column not in batch.schema.names:
        return np.zeros(batch.num_rows, dtype=bool)
    turns = pl.Series(batch.column(column))
    if not isinstance(turns.dtype, pl.List) or "tool_calls" not in {f.name for f in turns.dtype.inner.fields}:
        return np.zeros(batch.num_rows, dtype=bool)
    calls = turns.list.eval(pl.element().struct.field("tool_calls").list.len().fill_null(0)).list.sum()
    return (calls.fill_null(0) > 0).to_numpy()


def char_repetition(texts: pl.Series, min_chars: int = 10) -> np.ndarray:
    """Per text, the largest share of characters equal to the character p places before (p in 1-10).
    Texts shorter than `min_chars` get 0."""
    lengths = texts.str.len_chars().to_numpy().astype(np.int64)
    result = np.zeros(len(texts))
    index = np.flatnonzero(lengths >= min_chars)
    if not index.size:
        return result
    codes = decode(texts.gather(index))[0]
    size = lengths[index]
    starts = np.cumsum(size) - size
    best = np.zeros(index.size, dtype=np.int32)
    same = np.zeros(len(codes) + 1, dtype=bool)                 # the pad keeps every bound a valid index
    bounds = np.empty(2 * index.size, dtype=np.int64)
    bounds[0::2] = starts
    for p in _PERIODS:
        # pair (i - p, i) for i in start + p .. end - 1 of each text, i.e. same[start .. end - p - 1]
        np.equal(codes[p:], codes[:-p], out=same[:len(codes) - p])
        same[len(codes) - p:] = False
        bounds[1::2] = starts + size - p
        sums = np.add.reduceat(same[:len(codes) - p + 1], bounds, dtype=np.int32)[0::2]
        sums[size - p <= 0] = 0
        np.maximum(best, sums, out=best)
    result[index] = best / size
    return result


def line_repetition(texts: pl.Series, min_lines: int = 3) -> np.ndarray:
    """Per text, the share of its non-empty lines that repeat an earlier line (texts of fewer than
    `min_lines` lines get 0, and are not split)."""
    result = np.zeros(len(texts))
    rows = np.flatnonzero(texts.str.count_matches("\n", literal=True).fill_null(0).to_numpy() >= min_lines - 1)
    if not rows.size:
        return result
    frame = (pl.DataFrame({"row": rows, "line": texts.gather(rows).str.split("\n")})
             .explode("line").with_columns(pl.col("line").str.strip_chars())
             .filter(pl.col("line").is_not_null() & (pl.col("line") != ""))
             .group_by("row").agg(pl.len().alias("n"), pl.col("line").n_unique().alias("unique")))
    frame = frame.filter(pl.col("n") >= min_lines)
    if frame.height:
        result[frame["row"].to_numpy()] = (1 - frame["unique"] / frame["n"]).to_numpy()
    return result


def _threshold(sources: pl.Series, values: dict[str, object], default: object, dtype: type[pl.DataType]) -> np.ndarray:
    if not values:
        return np.full(len(sources), default)
    return sources.replace_strict(values, default=default, return_dtype=dtype).to_numpy()


class Quality(Stage):
    """Reads the task's text columns and `source`; writes `_drop` (a reason from REASONS, or null)."""

    name = "quality"

    def __init__(self, task: str, config: QualityConfig,
                 overrides: dict[str, QualityThresholds] | None = None) -> None:
        self.task = task
        self.config = config
        self.per_source = {sid: config.for_source(o) for sid, o in sorted((overrides or {}).items())}
        self.reads = (*text_columns(task), "source")
        self.writes = (DROP,)
        self.drop_samples = config.report_samples

    def _limits(self, sources: pl.Series, key: str, dtype: type[pl.DataType]) -> np.ndarray:
        default = getattr(self.config, key)
        values = {sid: getattr(c, key) for sid, c in self.per_source.items() if getattr(c, key) != default}
        return _threshold(sources, values, default, dtype)

    def measures(self, batch: pa.RecordBatch) -> dict[str, np.ndarray]:
        """Every measure per row (also what the benchmark and tests look at)."""
        whole, answer, question = row_parts(batch, self.task)
        lengths = whole.str.len_chars().to_numpy()
        mojibake = np.zeros(batch.num_rows, dtype=np.int64)
        broken = np.flatnonzero(whole.str.contains(_MOJIBAKE).to_numpy())      # removed only where it occurs
        if broken.size:
            some = whole.gather(broken)
            mojibake[broken] = (some.str.len_chars() - some.str.replace_all(_MOJIBAKE, "").str.len_chars()).to_numpy()
        answer_lengths = answer.str.len_chars().to_numpy().astype(np.int64)
        # Cleaning is the costly part: only answers short enough to be short or filler are cleaned (a
        # longer answer's length counts as it is), and for echo only pairs of similar length.
        limit = max(_SHORT, 2 * max([self.config.min_answer_chars, *(c.min_answer_chars for c in self.per_source.values())]))
        short = np.flatnonzero(answer_lengths <= limit)
        answer_chars = answer_lengths.copy()
        filler = np.zeros(batch.num_rows, dtype=bool)
        if short.size:
            cleaned = _cleaned(answer.gather(short))
            answer_chars[short] = cleaned.str.len_chars().to_numpy()
            filler[short] = cleaned.str.contains(_FILLER).to_numpy()
        echo = np.zeros(batch.num_rows, dtype=bool)
        if question is not None:
            asked_lengths = question.str.len_chars().to_numpy().astype(np.int64)
            alike = np.flatnonzero((np.abs(answer_lengths - asked_lengths) <= 0.3 * asked_lengths + 10) & (answer_lengths > 0))
            if alike.size:
                said = _cleaned(answer.gather(alike))
                echo[alike] = ((_cleaned(question.gather(alike)) == said) & (said.str.len_chars() > 0)).to_numpy()
        return {
            "mojibake": mojibake / np.maximum(lengths, 1),
            "char_repetition": char_repetition(answer),
            "line_repetition": line_repetition(whole),
            "answer_chars": answer_chars,
            "filler": filler,
            "ad_hits": answer.str.count_matches(_ADS).to_numpy(),
            "echo": echo,
            "calls_tools": calls_tools(batch, self.task),
        }

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        m = self.measures(batch)
        sources = pl.Series(batch.column("source"))
        failed = {
            "mojibake": m["mojibake"] > self._limits(sources, "max_mojibake_ratio", pl.Float64),
            "char_repetition": m["char_repetition"] > self._limits(sources, "max_char_repetition", pl.Float64),
            "line_repetition": m["line_repetition"] > self._limits(sources, "max_line_repetition", pl.Float64),
            "short_answer": (m["answer_chars"] < self._limits(sources, "min_answer_chars", pl.Int64)) & ~m["calls_tools"],
            "filler_answer": m["filler"] & self._limits(sources, "drop_filler", pl.Boolean) & ~m["calls_tools"],
            "advertising": m["ad_hits"] > self._limits(sources, "max_ad_hits", pl.Int64),
            "echo": m["echo"] & self._limits(sources, "drop_echo", pl.Boolean),
        }
        reason = np.full(batch.num_rows, None, dtype=object)
        for name in reversed(REASONS):                  # the first failing reason wins
            reason[failed[name].astype(bool)] = name
        values = pa.array(reason.tolist(), type=pa.string())
        index = batch.schema.get_field_index(DROP)
        return batch.set_column(index, DROP, values) if index >= 0 else batch.append_column(DROP, values)

    def summary(self) -> dict[str, object]:
        return {"reasons": list(REASONS), "defaults": self.config.model_dump(),
                "per_source": {sid: c.model_dump() for sid, c in self.per_source.items()}}
