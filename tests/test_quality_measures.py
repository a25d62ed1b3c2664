"""The quality measures against the definitions they replaced (kept here as they were written), on
the texts of tests/helpers_texts.py: the same values, exactly."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from etl.catalog import QualityConfig
from etl.stages.quality import _MOJIBAKE, _PERIODS, Quality, char_repetition, line_repetition
from tests import stage_rows
from tests.helpers_texts import all_texts


def old_char_repetition(texts: pl.Series, min_chars: int = 10) -> np.ndarray:
    lengths = texts.str.len_chars().to_numpy().astype(np.int64)
    result = np.zeros(len(texts))
    index = np.flatnonzero(lengths >= min_chars)
    if not index.size:
        return result
    codes = np.frombuffer("".join(texts.gather(index).to_list()).encode("utf-32-le"), dtype=np.uint32)
    size = lengths[index]
    starts = np.cumsum(size) - size
    for p in _PERIODS:
        same = np.append(codes[p:] == codes[:-p], False)
        bounds = np.empty(2 * index.size, dtype=np.int64)
        bounds[0::2], bounds[1::2] = starts, starts + size - p
        sums = np.add.reduceat(same, bounds, dtype=np.int64)[0::2]
        sums[size - p <= 0] = 0
        result[index] = np.maximum(result[index], sums / size)
    return result


def old_line_repetition(texts: pl.Series, min_lines: int = 3) -> np.ndarray:
    frame = (pl.DataFrame({"row": np.arange(len(texts)), "line": texts.str.split("\n")})
             .explode("line").with_columns(pl.col("line").str.strip_chars())
             .filter(pl.col("line").is_not_null() & (pl.col("line") != ""))
             .group_by("row").agg(pl.len().alias("n"), pl.col("line").n_unique().alias("unique")))
    result = np.zeros(len(texts))
    frame = frame.filter(pl.col("n") >= min_lines)
    if frame.height:
        result[frame["row"].to_numpy()] = (1 - frame["unique"] / frame["n"]).to_numpy()
    return result


@pytest.fixture(scope="module")
def texts() -> pl.Series:
    return all_texts()


def test_char_repetition_equals_its_old_definition(texts: pl.Series) -> None:
    texts = texts.fill_null("")                          # answers are never null (quality.row_parts)
    for series in (texts, texts.slice(11, 4000)):
        new = char_repetition(series)
        assert np.array_equal(new, old_char_repetition(series))
        assert (new > 0.5).sum() > 10 and (new > 0).sum() > 1000
    for min_chars in (11, 25):
        assert np.array_equal(char_repetition(texts, min_chars), old_char_repetition(texts, min_chars))


def test_line_repetition_equals_its_old_definition(texts: pl.Series) -> None:
    for min_lines in (1, 2, 3, 4):
        new = line_repetition(texts, min_lines)
        assert np.array_equal(new, old_line_repetition(texts, min_lines))
    assert (line_repetition(texts) > 0).sum() > 100


def test_mojibake_share_equals_its_old_definition(texts: pl.Series) -> None:
    """Quality.measures removes mojibake only from the rows that hold some; the share is the same."""
    whole = texts.fill_null("")
    table = stage_rows.pretrain(whole.to_list())
    measured = Quality("pretrain", QualityConfig()).measures(table.to_batches(max_chunksize=len(whole))[0])["mojibake"]
    lengths = whole.str.len_chars().to_numpy()
    old = (lengths - whole.str.replace_all(_MOJIBAKE, "").str.len_chars().to_numpy()) / np.maximum(lengths, 1)
    assert np.array_equal(measured, old) and (old > 0).sum() > 10
