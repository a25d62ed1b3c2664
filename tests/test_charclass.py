"""etl.charclass against the regex counts it stands for (polars `str.count_matches`), on every line of
the fixture and demo mirror files, adversarial strings and random code points; and the token estimate
and langid's script counts against their regex definitions."""

from __future__ import annotations

import random
from pathlib import Path

import polars as pl
import pytest

from etl.charclass import char_classes, class_table
from etl.stages.langid import SCRIPTS, WORD_SCRIPTS
from etl.tokens import _CLASSES, CharEstimate

ROOT = Path(__file__).resolve().parent.parent
ADVERSARIAL = [
    "", None, " ", "\u00a0\u3000\u2028\u2029\u0085\t\r\n\x0b\x0c", "\u200b\u200d\ufeff\u180e", "a", "中", "𠀀𪚥𰀀",
    "😀👍🏽🇨🇳", "e\u0301 n\u0303", "ﬁ ǅ Ⅻ ª º", "Ａｂｃ１２３ ｶﾀｶﾅ ｰ", "、。「」〆々〇ー・", "ひらがな カタカナ 漢字",
    "한국어 각 ㄱ", "Ελληνικά µ μ ϐ", "Кириллица ёЁ Ѐ", "العربية ١٢٣ ـ ﷺ", "\x00\x7f\x80\x9f", "\ue000\U000f0000\U0010ffff",
    "abc中def", "中abc中", "ab\ncd", "a1b2c3", "ab" * 50 + "中" * 50 + "ab", "CT示右肺下叶结节，5mm", "Is 布洛芬 safe?",
]


def _fixture_lines() -> list[str]:
    lines = []
    for folder in (ROOT / "tests" / "fixtures", ROOT / "examples" / "mirror"):
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            lines += path.read_bytes().decode("utf-8", errors="replace").splitlines()
    return lines


def _random_texts(n: int = 3000) -> list[str]:
    rng = random.Random(14)
    pool = [c for s in ADVERSARIAL if s for c in s]

    def char() -> str:
        if rng.random() < 0.5:
            return rng.choice(pool)
        code = rng.randrange(0x110000 - 0x800)
        return chr(code if code < 0xD800 else code + 0x800)      # no surrogates

    return [("".join(char() for _ in range(rng.randrange(12))) if rng.random() > 0.05 else None) for _ in range(n)]


@pytest.fixture(scope="module")
def texts() -> pl.Series:
    return pl.Series([*ADVERSARIAL, *_fixture_lines(), *_random_texts()], dtype=pl.String)


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
