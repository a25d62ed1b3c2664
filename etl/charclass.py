"""Per-text counts of character classes over a string Series, from one pass over the text.

A regex `count_matches` scans the whole text once per class. Here the texts are decoded to code
points once and each character's classes are looked up in a table (one bit per class), so langid's
script counts and the token estimate cost one decode and one lookup however many classes they ask
about. The table is made by asking polars' own regex engine about every code point, so a count here
equals `str.count_matches(cls)` and a run count equals `str.count_matches(cls + "+")`, by
construction (tests/test_charclass.py compares them).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import polars as pl

from etl.codepoints import decode

_CODE_POINTS = 0x110000
_SURROGATES = (0xD800, 0xE000)        # not characters: no string holds them
CHUNK_BYTES = 1 << 24                 # UTF-8 text decoded at a time by char_classes


@functools.cache
def class_table(classes: tuple[str, ...]) -> np.ndarray:
    """Per code point, bit i set when the character matches `classes[i]` (a regex matching exactly
    one character, e.g. r"\\p{Han}" or r"\\s"), as polars' regex engine decides: each class's
    matches in one string of every character. At most 8 classes."""
    if len(classes) > 8:
        raise ValueError(f"at most 8 classes per table, got {len(classes)}")
    codes = np.concatenate([np.arange(_SURROGATES[0]), np.arange(_SURROGATES[1], _CODE_POINTS)]).astype(np.uint32)
    everything = pl.Series([codes.tobytes().decode("utf-32-le")])
    table = np.zeros(_CODE_POINTS, dtype=np.uint8)
    for bit, pattern in enumerate(classes):
        table[decode(everything.str.extract_all(pattern).explode().drop_nulls())[0]] |= np.uint8(1 << bit)
    return table


@dataclass
class CharClasses:
    """The texts' characters one after another, each as its table bits, and each text's length and
    end in that sequence (a null text is empty)."""

    bits: np.ndarray
    lengths: np.ndarray
    ends: np.ndarray

    @functools.cached_property
    def present(self) -> int:
        """The bits of the classes any character belongs to (the others count 0 without a pass)."""
        return int(np.bitwise_or.reduce(self.bits)) if len(self.bits) else 0

    def count(self, bit: int) -> np.ndarray:
        """Per text, its characters of class `bit` (count_matches of the class)."""
        if not self.present & (1 << bit):
            return np.zeros(len(self.ends), dtype=np.int64)
        return self._per_text((self.bits >> bit) & 1)

    def runs(self, bit: int) -> np.ndarray:
        """Per text, its maximal runs of class `bit` (count_matches of the class followed by `+`)."""
        if not self.present & (1 << bit):
            return np.zeros(len(self.ends), dtype=np.int64)
        member = (self.bits >> bit) & 1
        before = np.empty_like(member)              # whether the character before it, in the same text, is one
        before[:1] = 0
        before[1:] = member[:-1]
        before[self.ends[self.lengths > 0] - self.lengths[self.lengths > 0]] = 0
        return self._per_text(member & (1 - before))

    def _per_text(self, flags: np.ndarray) -> np.ndarray:
        """Per text, the sum of its characters' `flags` (0 or 1 each)."""
        counts = np.zeros(len(self.ends), dtype=np.int64)
        filled = self.lengths > 0
        if filled.any():          # each nonempty text's characters run from its start to the next one's
            counts[filled] = np.add.reduceat(flags, (self.ends - self.lengths)[filled], dtype=np.int32)
        return counts


def char_classes(texts: pl.Series, classes: tuple[str, ...]) -> CharClasses:
    """`texts` decoded once (codepoints.decode) and looked up in class_table(classes), about CHUNK_BYTES
    of text at a time so that the decoded copies (4 bytes a character) stay small; the classes take
    one byte a character."""
    lengths = texts.str.len_chars().fill_null(0).to_numpy().astype(np.int64)
    table = class_table(classes)
    sizes = np.cumsum(texts.str.len_bytes().fill_null(0).to_numpy().astype(np.int64))
    cuts = np.unique(np.searchsorted(sizes, np.arange(CHUNK_BYTES, sizes[-1] if len(sizes) else 0, CHUNK_BYTES)))
    bounds = [0, *(int(c) + 1 for c in cuts if c + 1 < len(texts)), len(texts)]
    bits = [table[decode(texts.slice(a, b - a))[0]] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
    return CharClasses(np.concatenate(bits) if bits else np.zeros(0, dtype=np.uint8), lengths, np.cumsum(lengths))
