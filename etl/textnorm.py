"""Text normalisation: the matching key (for dedup), matching units (for decontamination) and
stored-text cleaning.

The key is for comparison only and never written: NFKC (which also folds full-width forms to
half-width), lower-casing, Traditional → Simplified Chinese, whitespace and punctuation removed.
Digits and units are kept as they are, and so is a separator between two digits (`7.8`, `1-2`,
`120/80`, as one private-use mark), so "阿司匹林100mg" and "阿司匹林300mg", or "7.8" and "78", never
share a key.

Keys and units are computed a batch at a time. Their definition is the polars string path (Rust:
measured 3× faster than the same steps in Python, `unicodedata` + `str.translate`); most rows take
an exact shortcut instead, per-code-point tables in NumPy (`_Tables`, about 2× less CPU again; tests
compare both paths on every code point). Traditional → Simplified uses OpenCC's own
character table (the one `opencc-python-reimplemented` ships) rather than OpenCC's phrase-level
`convert`, which bench/RESULTS.md measures at two orders of magnitude slower; for a matching key what
matters is that both spellings map to one key, which a character table guarantees.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import opencc
import polars as pl

from etl.charclass import class_table
from etl.codepoints import (
    CODE_POINTS,
    EXAMINED,
    Expansion,
    characters,
    decode,
    encode,
    per_character_nfkc,
    span_hashes,
)

SEPARATOR_MARK = "\ue000"
_SEPARATORS = r"[.\-/:]"
_DIGIT_SEPARATOR = rf"(\d){_SEPARATORS}(\d)"
# Punctuation, separators, controls and whitespace go; `%` and `‰` are units and stay.
_KEY_DROP = r"[[\p{P}\p{Z}\p{Cc}\s]--[%‰]]"

# Stored-text cleaning: C0/C1 controls except tab/newline/CR, BOM and zero-width space.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufeff\u200b]")
_ENTITY = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z][a-zA-Z0-9]{1,31});")

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_WORD = f"[[\\p{{L}}\\p{{N}}]--[{_HAN}]]"
# A unit: one Han character, or a run of other letters and digits, with decimals kept (`7.8`).
_UNITS = f"[{_HAN}]|{_WORD}+(?:[.]\\d+)*"
# One non-ASCII letter (a Han character, a kana) is a "character unit"; anything else (an English
# word, a number) is a word unit.
_CHARACTER_UNIT = r"^[\p{L}--\p{ASCII}]$"
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


def _replace_t2s(texts: pl.Series) -> pl.Series:
    sources, targets = _t2s_patterns()
    return texts.str.replace_many(sources, targets)


def _polars_match_keys(texts: pl.Series) -> pl.Series:
    """The definition of the key on strings, in polars (the path of rows the tables do not cover)."""
    keys = texts.str.normalize("NFKC").str.to_lowercase()
    # Twice, because matches cannot overlap: `1.2.3` needs a second pass for its second dot.
    for _ in range(2):
        keys = keys.str.replace_all(_DIGIT_SEPARATOR, f"${{1}}{SEPARATOR_MARK}${{2}}")
    return _replace_t2s(keys.str.replace_all(_KEY_DROP, ""))


# Bits of `_Tables.kind`: what polars' own regex classes say about one character (charclass.class_table:
# bit i for the i-th class of `_KINDS`).
_DIGIT, _SEPARATOR, _DROP, _HAN_CHAR, _WORD_CHAR, _CHARACTER = 1, 2, 4, 8, 16, 32
_KINDS = (r"\d", _SEPARATORS, _KEY_DROP, f"[{_HAN}]", _WORD, _CHARACTER_UNIT[1:-1])
# Bits of `_Tables.flags`: the character sends its row down the string path; it folds to several.
_UNSAFE, _LONGER = 1, 2


@dataclass(frozen=True)
class _Tables:
    """Per-code-point tables (index = code point) that fold a batch without touching strings.

    A row takes the table path when none of its characters is `_UNSAFE`: NFKC is per character for
    them (codepoints.per_character_nfkc, and polars' NFKC of the character agrees with Python's), and
    their NFKC holds no capital sigma (the one character whose lower case depends on its neighbours).
    For such a row, NFKC + lower case + T→S of the row is the concatenation of `fold` of each
    character, because T→S (replace_many with one-character patterns) is a per-character map; a
    character whose T→S is longer than one character is unsafe too. Every entry is computed by
    running the polars string path on that one character, so the tables follow polars' Unicode
    version, not Python's. `kind` holds polars' own regex classes of each character.
    """

    flags: np.ndarray
    fold: Expansion
    kind: np.ndarray


@cache
def _tables() -> _Tables:
    codes, chars = EXAMINED, characters(EXAMINED)
    nfkc = chars.str.normalize("NFKC")
    lowered = nfkc.str.to_lowercase()
    folded = _replace_t2s(lowered)
    changed = (nfkc != chars).to_numpy()
    python_agrees = np.ones(codes.size, dtype=bool)
    python_agrees[changed] = [unicodedata.normalize("NFKC", chr(code)) == text
                              for code, text in zip(codes[changed].tolist(), nfkc.filter(changed), strict=True)]
    safe = (per_character_nfkc()[codes] & python_agrees
            & (folded.str.len_chars() == lowered.str.len_chars()).to_numpy()
            & ~nfkc.str.contains("\u03a3", literal=True).to_numpy())
    flags = np.full(CODE_POINTS, _UNSAFE, dtype=np.uint8)
    flags[codes] = np.where(safe, 0, _UNSAFE) | np.where((folded.str.len_chars() > 1).to_numpy(), _LONGER, 0)
    return _Tables(flags, Expansion.of(codes, folded), class_table(_KINDS))


class _Switch:
    """Whether this process folds with the tables yet. Building them costs about a second of CPU,
    what the string path spends on some 20M characters, so a process builds them only once it has
    folded that much text the string path's way (a small build never pays for them); both paths give
    the same result, so when the switch happens does not change any output."""

    AFTER_CHARACTERS = 20_000_000

    def __init__(self) -> None:
        self.characters = 0

    def tables(self, texts: pl.Series) -> _Tables | None:
        if self.characters < self.AFTER_CHARACTERS and not _tables.cache_info().currsize:
            self.characters += int(texts.str.len_chars().sum() or 0)
            return None
        return _tables()


_SWITCH = _Switch()


def _fold_rows(texts: pl.Series, tables: _Tables) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NFKC + lower case + T→S of every row by the tables, as code points and row offsets (`decode`'s
    form), and the rows the tables do not cover (a character outside the safe set, or null), which
    the caller must take from the string path."""
    values, offsets = decode(texts)
    flags = tables.flags[values]
    flagged = np.flatnonzero(flags)
    unsafe = flagged[(flags[flagged] & _UNSAFE) != 0]
    fallback = np.union1d(np.searchsorted(offsets, unsafe, side="right") - 1,
                          np.flatnonzero(texts.is_null().to_numpy()))
    folded, offsets = tables.fold.expand(values, offsets, flagged[(flags[flagged] & _LONGER) != 0])
    return folded, offsets, fallback


def _inside_rows(positions: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Whether each position has a neighbour on both sides in its own row."""
    row = np.searchsorted(offsets, positions, side="right") - 1
    return (offsets[row] < positions) & (positions + 1 < offsets[row + 1])


def match_keys(texts: Sequence[str] | pl.Series) -> pl.Series:
    """Matching keys of many texts at once (see the module docstring); empty for punctuation only.

    Rows the tables cover (`_Tables`) are folded with them, the rest with the polars string path;
    both give the same key. The tables apply T→S before the separators are marked and punctuation
    dropped, which is the same because T→S maps characters that are no digit, separator or dropped
    character to such characters (a test checks the whole table). The digit separators: the regex
    replaces every separator with a digit on both sides, because a separator it skips in the first
    pass (its left digit ended the previous match, `1.2.3`) is matched in the second, and marking
    never turns a non-digit into a digit; so marking every separator between two digits of the same
    row is the same."""
    series = pl.Series("key", texts, dtype=pl.String)
    tables = _SWITCH.tables(series)
    if tables is None:
        return _polars_match_keys(series)
    folded, offsets, fallback = _fold_rows(series, tables)
    kind = tables.kind[folded]
    special = np.flatnonzero(kind & (_SEPARATOR | _DROP))
    between = special[(kind[special] & _SEPARATOR) != 0]
    between = between[_inside_rows(between, offsets)]
    between = between[(kind[between - 1] & kind[between + 1] & _DIGIT) != 0]
    folded[between] = ord(SEPARATOR_MARK)
    drop = (kind[special] & _DROP) != 0
    drop[np.searchsorted(special, between)] = (tables.kind[ord(SEPARATOR_MARK)] & _DROP) != 0
    dropped = special[drop]
    keys = encode(np.delete(folded, dropped), offsets - np.searchsorted(dropped, offsets), "key")
    if fallback.size:
        keys.scatter(fallback, _polars_match_keys(series.gather(fallback)))
    return keys


def match_key(text: str) -> str:
    """The matching key of one text."""
    return match_keys([text])[0]


def fold_texts(texts: Sequence[str] | pl.Series) -> pl.Series:
    """NFKC, lower-cased, Traditional → Simplified; spacing and punctuation left in place."""
    return _replace_t2s(pl.Series("text", texts, dtype=pl.String).str.normalize("NFKC").str.to_lowercase())


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


def match_unit_codes(texts: Sequence[str] | pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""The units of `match_unit_lists` without making strings: a uint64 code of every unit of every
    text, flat and in order (codepoints.span_hashes of the unit: equal units, equal codes), whether
    each is a character unit (one non-ASCII letter), and each text's unit count.

    Rows the tables cover (`_Tables`) are folded with them and cut by the rule `_UNITS` spells,
    read as a scan: a Han character is a unit; a letter or digit that does not continue the unit
    before it starts one; it continues it when it follows another letter or digit of the run, or a
    decimal point, or is a digit after a decimal's digits. A `.` is a decimal point when a letter or
    digit precedes it and a digit follows: whatever unit holds the preceding character is then at the
    end of its run (or of its decimal's digits), where the regex tries `[.]\d+`. The other rows go
    through `match_unit_lists` and the same hash."""
    series = pl.Series("text", texts, dtype=pl.String)
    tables = _SWITCH.tables(series)
    if tables is None:
        return _string_unit_codes(series)
    folded, offsets, fallback = _fold_rows(series, tables)
    kind = tables.kind[folded]
    word = (kind & _WORD_CHAR) != 0
    start = word.copy()
    start[1:] &= ~word[:-1]
    firsts = offsets[:-1][offsets[:-1] < folded.size]
    start[firsts] = word[firsts]
    # Decimal points and the digits after each (sparse: looked up by position).
    point = np.flatnonzero(folded == ord("."))
    point = point[_inside_rows(point, offsets)]
    point = point[word[point - 1] & ((kind[point + 1] & _DIGIT) != 0)]
    digits = np.flatnonzero(kind & _DIGIT)
    runs_on = (digits[1:] == digits[:-1] + 1) & (np.searchsorted(offsets, digits[1:], side="right")
                                                  == np.searchsorted(offsets, digits[:-1], side="right"))
    run_ends = np.append(np.flatnonzero(~runs_on), digits.size - 1)
    last = digits[run_ends[np.searchsorted(run_ends, np.searchsorted(digits, point + 1))]]
    start[point + 1] = False
    after = last + 1
    after = after[after < folded.size]
    after = after[word[after] & (np.searchsorted(offsets, after, side="right")
                                 == np.searchsorted(offsets, after - 1, side="right"))]
    start[after] = True
    start |= (kind & _HAN_CHAR) != 0
    member = word | start
    member[point] = True
    unit_starts = np.flatnonzero(start)
    lengths = np.diff(np.append(np.flatnonzero(start[member]), np.count_nonzero(member)))
    codes = span_hashes(folded, unit_starts, lengths)
    character = (lengths == 1) & ((kind[unit_starts] & _CHARACTER) != 0)
    counts = np.diff(np.searchsorted(unit_starts, offsets))
    if not fallback.size:
        return codes, character, counts
    *replaced, replaced_counts = _string_unit_codes(series.gather(fallback))
    return _replace_rows((codes, character), counts, fallback, tuple(replaced), replaced_counts)


def _string_unit_codes(texts: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`match_unit_codes` by the string path: the units as strings, each hashed by its code points."""
    units = match_unit_lists(texts)
    flat = units.explode().drop_nulls()
    values, offsets = decode(flat)
    return (span_hashes(values, offsets[:-1], np.diff(offsets)), flat.str.contains(_CHARACTER_UNIT).to_numpy(),
            units.list.len().to_numpy().astype(np.int64))


def _replace_rows(columns: tuple[np.ndarray, ...], counts: np.ndarray, rows: np.ndarray,
                  replacements: tuple[np.ndarray, ...], replacement_counts: np.ndarray,
                  ) -> tuple[np.ndarray, ...]:
    """Flat per-row arrays (`counts` entries per row) with the entries of `rows` replaced by
    `replacements` (`replacement_counts` entries for each of `rows`), and the new counts last."""
    new_counts = counts.astype(np.int64)
    new_counts[rows] = replacement_counts
    new_starts = np.cumsum(new_counts) - new_counts
    owner = np.repeat(np.arange(counts.size), counts)
    kept = np.ones(counts.size, dtype=bool)
    kept[rows] = False
    kept = kept[owner]
    old_places = new_starts[owner] + np.arange(owner.size) - (np.cumsum(counts) - counts)[owner]
    moved_owner = np.repeat(rows, replacement_counts)
    moved_places = new_starts[moved_owner] + np.arange(moved_owner.size) - np.repeat(
        np.cumsum(replacement_counts) - replacement_counts, replacement_counts)
    out = []
    for column, replacement in zip(columns, replacements, strict=True):
        merged = np.empty(int(new_counts.sum()), dtype=column.dtype)
        merged[old_places[kept]] = column[kept]
        merged[moved_places] = replacement
        out.append(merged)
    return (*out, new_counts)


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
