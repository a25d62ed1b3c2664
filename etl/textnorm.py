"""Text normalisation: the matching key (for dedup), matching units (for decontamination) and
stored-text cleaning.

The key is for comparison only and never written: NFKC (which also folds full-width forms to
half-width), lower-casing, Traditional → Simplified Chinese, whitespace and punctuation removed.
Digits and units are kept as they are, and so is a separator between two digits (`7.8`, `1-2`,
`120/80`, as one private-use mark), so "阿司匹林100mg" and "阿司匹林300mg", or "7.8" and "78", never
share a key.

Keys are computed a batch at a time with polars (Rust, multi-threaded): measured 3× faster than the
same steps in Python (`unicodedata` + `str.translate`). Traditional → Simplified uses OpenCC's own
character table (the one `opencc-python-reimplemented` ships) rather than OpenCC's phrase-level
`convert`, which bench/RESULTS.md measures at two orders of magnitude slower; for a matching key what
matters is that both spellings map to one key, which a character table guarantees.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import opencc
import polars as pl

SEPARATOR_MARK = "\ue000"
_DIGIT_SEPARATOR = r"(\d)[.\-/:](\d)"
# Punctuation, separators, controls and whitespace go; `%` and `‰` are units and stay.
_KEY_DROP = r"[[\p{P}\p{Z}\p{Cc}\s]--[%‰]]"

# Stored-text cleaning: C0/C1 controls except tab/newline/CR, BOM and zero-width space.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufeff\u200b]")
_ENTITY = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z][a-zA-Z0-9]{1,31});")

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
# A unit: one Han character, or a run of other letters and digits, with decimals kept (`7.8`).
_UNITS = f"[{_HAN}]|[[\\p{{L}}\\p{{N}}]--[{_HAN}]]+(?:[.]\\d+)*"
# A number's unit: a letter (mg, mmol) or a sign. Not a Chinese counter (3天, 2次): a typo next to
# a number would then hide a duplicate, which the benchmark measured as the larger loss.
_NUMBER = re.compile(f"\\d+(?:{SEPARATOR_MARK}\\d+)*[a-zμ%‰°]?")


@cache
def opencc_character_table(name: str) -> dict[int, str]:
    """One of OpenCC's character tables (`TSCharacters`, `STCharacters`) as a `str.translate` map,
    taking the first candidate where a character has several."""
    path = Path(opencc.__file__).parent / "dictionary" / f"{name}.txt"
    table: dict[int, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        source, _, targets = line.partition("\t")
        if len(source) == 1 and targets:
            table[ord(source)] = targets.split(" ")[0]
    return table


@cache
def _t2s_patterns() -> tuple[list[str], list[str]]:
    table = opencc_character_table("TSCharacters")
    return [chr(code) for code in table], list(table.values())


def match_keys(texts: Sequence[str] | pl.Series) -> pl.Series:
    """Matching keys of many texts at once (see the module docstring); empty for punctuation only."""
    sources, targets = _t2s_patterns()
    keys = pl.Series("key", texts, dtype=pl.String).str.normalize("NFKC").str.to_lowercase()
    # Twice, because matches cannot overlap: `1.2.3` needs a second pass for its second dot.
    for _ in range(2):
        keys = keys.str.replace_all(_DIGIT_SEPARATOR, f"${{1}}{SEPARATOR_MARK}${{2}}")
    return keys.str.replace_all(_KEY_DROP, "").str.replace_many(sources, targets)


def match_key(text: str) -> str:
    """The matching key of one text."""
    return match_keys([text])[0]


def fold_texts(texts: Sequence[str] | pl.Series) -> pl.Series:
    """NFKC, lower-cased, Traditional → Simplified; spacing and punctuation left in place."""
    sources, targets = _t2s_patterns()
    folded = pl.Series("text", texts, dtype=pl.String).str.normalize("NFKC").str.to_lowercase()
    return folded.str.replace_many(sources, targets)


def fold(text: str) -> str:
    """`fold_texts` of one text."""
    return fold_texts([text])[0]


def match_unit_lists(texts: Sequence[str] | pl.Series) -> pl.Series:
    """Each text as matching units for decontamination (a list per text): each Han character is a
    unit, and so is each run of other letters or digits (an English word, `7.8`, `mmol`). Whitespace
    and punctuation go. Computed in polars over the whole batch."""
    return fold_texts(texts).str.extract_all(_UNITS).fill_null([])


def match_units(text: str) -> list[str]:
    """`match_unit_lists` of one text."""
    return list(match_unit_lists([text])[0])


def numbers_in(key: str) -> list[str]:
    """The numbers of a key, each with the unit letter or sign after it (`100m`, `7.8%`, `38°`),
    sorted so that sentence order does not matter: two texts that differ in a dose or lab value, or
    swap two values of different units, differ here even when nearly every n-gram is shared."""
    return sorted(_NUMBER.findall(key))


def numbers_of(keys: Sequence[str]) -> list[str]:
    """`numbers_in` of many keys at once, each as one comparable string."""
    found = pl.Series(keys, dtype=pl.String).str.extract_all(_NUMBER.pattern).list.sort()
    return found.list.join("|").fill_null("").to_list()


def clean_texts(texts: Sequence[str | None] | pl.Series) -> pl.Series:
    """`clean_text` over many texts at once (polars; Python only for texts holding an entity)."""
    series = pl.Series("text", texts, dtype=pl.String).str.replace_all(_CONTROL.pattern, "").str.strip_chars()
    has_entity = series.str.contains(_ENTITY.pattern).fill_null(False)
    if has_entity.any():
        fixed = [clean_text(t) for t in series.filter(has_entity).to_list()]
        series = series.scatter(has_entity.arg_true(), fixed)
    return series


def clean_text(text: str) -> str:
    """Stored-text cleaning only: control characters, stray HTML entities, surrounding whitespace."""
    if "&" in text:
        text = _ENTITY.sub(lambda m: html.unescape(m.group()), text)
    return _CONTROL.sub("", text).strip()
