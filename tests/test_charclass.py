"""etl.charclass against the regex counts it stands for (polars `str.count_matches`) on the texts of
tests/helpers_texts.py (fixture and demo mirror lines and documents, adversarial strings, random code
points); and the token estimate and langid's script counts against their regex definitions."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from etl import charclass
from etl.charclass import char_classes, class_table
from etl.stages.langid import SCRIPTS, WORD_SCRIPTS
from etl.tokens import _CLASSES, CharEstimate
from tests.helpers_texts import all_texts


@pytest.fixture(scope="module")
def texts() -> pl.Series:
    return all_texts()


@pytest.mark.parametrize("classes", [tuple(SCRIPTS.values()), _CLASSES, (r"\w", r"\d", r"[a-z]", r"\p{Lu}")])
def test_counts_and_runs_equal_the_regex_counts(texts: pl.Series, classes: tuple[str, ...]) -> None:
    assert len(texts) > 10_000
    for series in (texts, texts.slice(7, 5000), pl.concat([texts.slice(0, 3000), texts.slice(3000)], rechunk=False)):
        chars = char_classes(series, classes)
        for bit, pattern in enumerate(classes):
            assert chars.count(bit).tolist() == series.str.count_matches(pattern).fill_null(0).to_list(), pattern
            assert chars.runs(bit).tolist() == series.str.count_matches(f"(?:{pattern})+").fill_null(0).to_list(), pattern
        assert chars.lengths.tolist() == series.str.len_chars().fill_null(0).to_list()


def test_runs_stop_at_the_end_of_a_text() -> None:
    chars = char_classes(pl.Series(["ab", "cd", "", None, "e中f", "g"]), (r"\p{Latin}",))
    assert chars.runs(0).tolist() == [1, 1, 0, 0, 2, 1]
    assert chars.count(0).tolist() == [2, 2, 0, 0, 2, 1]
    assert char_classes(pl.Series([], dtype=pl.String), (r"\p{Latin}",)).count(0).tolist() == []


def test_a_table_holds_at_most_eight_classes() -> None:
    assert class_table((r"\s",))[[ord(" "), ord("\u3000"), ord("a")]].tolist() == [1, 1, 0]
    with pytest.raises(ValueError, match="at most 8 classes"):
        class_table(tuple(f"[{c}]" for c in "abcdefghi"))


def test_token_estimate_equals_its_regex_definition(texts: pl.Series) -> None:
    """The estimate as it was written with two regex counts per text."""
    cjk = pl.col("t").str.count_matches(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]")
    other = pl.col("t").str.len_chars() - pl.col("t").str.count_matches(r"\s") - cjk
    expected = pl.DataFrame({"t": texts}).select((cjk + (other + 3) // 4).cast(pl.Int64)).to_series()
    assert CharEstimate().count(texts).to_list() == expected.to_list()
    assert expected.null_count() > 0 and expected.drop_nulls().sum() > 100_000


def test_langid_script_units_equal_their_regex_definition(texts: pl.Series) -> None:
    """A letter of a script is a unit, a word (a run of letters) of a word-spaced script is one."""
    chars = char_classes(texts, tuple(SCRIPTS.values()))
    for bit, (name, pattern) in enumerate(SCRIPTS.items()):
        unit = f"{pattern}+" if name in WORD_SCRIPTS else pattern
        counted = chars.runs(bit) if name in WORD_SCRIPTS else chars.count(bit)
        assert counted.tolist() == texts.str.count_matches(unit).fill_null(0).to_list(), name
        assert counted.sum() > 0, name


@pytest.mark.parametrize("chunk", [1, 100, 5000])
def test_texts_decoded_a_chunk_at_a_time_count_the_same(texts: pl.Series, chunk: int,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    whole = char_classes(texts, tuple(SCRIPTS.values()))
    monkeypatch.setattr(charclass, "CHUNK_BYTES", chunk)
    chunked = char_classes(texts, tuple(SCRIPTS.values()))
    assert np.array_equal(chunked.bits, whole.bits) and len(whole.bits) == whole.lengths.sum()
    assert chunked.runs(3).tolist() == texts.str.count_matches(r"\p{Latin}+").fill_null(0).to_list()
