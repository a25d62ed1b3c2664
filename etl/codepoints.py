"""Texts as NumPy arrays of code points, for folding a whole batch with table look-ups.

A batch of texts becomes one uint32 array of code points plus row offsets (and back, straight into an
Arrow string array), so a per-character mapping is one fancy-indexing step instead of a pass of
Unicode normalisation over strings. That is only exact for characters whose normalisation does not
depend on their neighbours: `per_character_nfkc` is that set, and textnorm sends every row holding any
other character down its string path unchanged.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import cache

import numpy as np
import polars as pl
import pyarrow as pa

CODE_POINTS = 0x110000
SURROGATES = range(0xD800, 0xE000)
_U64 = np.uint64


def decode(texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """All code points of a string Series (nulls as empty) and each row's offsets into them."""
    lengths = texts.str.len_chars().fill_null(0).to_numpy()
    offsets = np.zeros(texts.len() + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    joined = texts.str.join("", ignore_nulls=True).item() or ""
    return np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32), offsets


def encode(values: np.ndarray, offsets: np.ndarray, name: str) -> pl.Series:
    """The inverse of `decode`: rows `values[offsets[i]:offsets[i + 1]]` as a String Series."""
    data = values.astype(np.uint32, copy=False).tobytes().decode("utf-32-le").encode("utf-8")
    width = 1 + (values >= 0x80).astype(np.int64) + (values >= 0x800) + (values >= 0x10000)
    byte_ends = np.zeros(values.size + 1, dtype=np.int64)
    np.cumsum(width, out=byte_ends[1:])
    array = pa.LargeStringArray.from_buffers(offsets.size - 1, pa.py_buffer(byte_ends[offsets]), pa.py_buffer(data))
    return pl.Series(name, array, dtype=pl.String)


@dataclass(frozen=True)
class Expansion:
    """A mapping of each code point to a string (index = code point), for `expand`."""

    lengths: np.ndarray     # int64: characters each code point becomes
    first: np.ndarray       # uint32: the first of them
    starts: np.ndarray      # int64: where all of them start in `pool`
    pool: np.ndarray        # uint32

    @classmethod
    def of(cls, codes: np.ndarray, mapped: pl.Series) -> Expansion:
        """The mapping `codes[i]` → `mapped[i]`; every other code point maps to itself."""
        pool, offsets = decode(mapped)
        lengths, first = np.ones(CODE_POINTS, dtype=np.int64), np.arange(CODE_POINTS, dtype=np.uint32)
        starts = np.zeros(CODE_POINTS, dtype=np.int64)
        lengths[codes], starts[codes] = np.diff(offsets), offsets[:-1]
        present = lengths[codes] > 0
        first[codes[present]] = pool[starts[codes[present]]]
        return cls(lengths, first, starts, pool)

    def expand(self, values: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of code points (`decode`'s form) with every code point replaced by its string."""
        lengths = self.lengths[values]
        mapped = self.first[values]
        if (lengths == 1).all():
            return mapped, offsets
        ends = np.zeros(values.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=ends[1:])
        mapped = np.repeat(mapped, lengths)
        longer = np.flatnonzero(lengths > 1)
        extra = lengths[longer] - 1
        owner = np.repeat(longer, extra)
        step = 1 + np.arange(owner.size) - np.repeat(np.cumsum(extra) - extra, extra)
        mapped[ends[owner] + step] = self.pool[self.starts[values[owner]] + step]
        return mapped, ends[offsets]


def all_characters() -> tuple[np.ndarray, pl.Series]:
    """Every code point except the surrogates, and each as a one-character string."""
    codes = np.arange(CODE_POINTS, dtype=np.uint32)
    codes = codes[(codes < SURROGATES.start) | (codes >= SURROGATES.stop)]
    return codes, encode(codes, np.arange(codes.size + 1, dtype=np.int64), "char")


@cache
def per_character_nfkc() -> np.ndarray:
    """Code points `c` for which NFKC of any string of such characters is the concatenation of each
    character's own NFKC (boolean table over all code points, Python's Unicode data).

    NFKC is NFKD (a per-character mapping) followed by canonical reordering and canonical composition,
    the only steps that look at neighbours. Reordering only moves characters of combining class ≠ 0,
    and composition only joins a starter with a following character that is the second half of some
    canonical decomposition (incl. Hangul medial and final jamo). A character is kept only when it is
    assigned and nothing in its NFKD is either kind, so with such characters neither step can reach
    across a character boundary. Both properties are frozen by Unicode's stability policy for assigned
    characters, so a newer Unicode in polars cannot change them; characters assigned since Python's
    version are unassigned here and left out.
    """
    chars = list(map(chr, range(CODE_POINTS)))
    decompositions = {code: d for code, d in enumerate(map(unicodedata.decomposition, chars)) if d}
    seconds = np.zeros(CODE_POINTS, dtype=bool)
    seconds[0x1161:0x1176] = seconds[0x11A8:0x11C3] = True
    for parts in (d.split() for d in decompositions.values()):
        if len(parts) == 2 and not parts[0].startswith("<"):
            seconds[int(parts[1], 16)] = True
    unsafe = seconds | np.fromiter(map(unicodedata.combining, chars), dtype=bool, count=CODE_POINTS)
    safe = np.fromiter(map("Cn".__ne__, map(unicodedata.category, chars)), dtype=bool, count=CODE_POINTS)
    safe[SURROGATES.start:SURROGATES.stop] = False
    safe &= ~unsafe
    for code in decompositions:
        safe[code] &= not unsafe[[ord(p) for p in unicodedata.normalize("NFKD", chars[code])]].any()
    return safe


def _mix(values: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (wrapping uint64 arithmetic)."""
    with np.errstate(over="ignore"):
        z = values + _U64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
        return z ^ (z >> _U64(31))


@cache
def _character_hashes() -> np.ndarray:
    return _mix(np.arange(CODE_POINTS, dtype=np.uint64))


def span_hashes(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """A uint64 hash of each span of code points (`values` is the spans concatenated, `lengths` their
    sizes, all > 0): a polynomial over each character's own 64-bit hash, with the length, mixed. Equal
    spans give equal hashes in every process; distinct spans collide with probability about 2⁻⁶⁴."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if not lengths.size:
        return np.empty(0, dtype=np.uint64)
    starts = np.zeros(lengths.size, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    position = np.arange(values.size, dtype=np.int64) - np.repeat(starts, lengths)
    with np.errstate(over="ignore"):
        powers = np.cumprod(np.full(int(lengths.max()), _U64(0x100000001B3), dtype=np.uint64)) * _U64(0x9E3779B1)
        terms = _character_hashes()[values] * powers[position]
        return _mix(np.add.reduceat(terms, starts) ^ lengths.astype(np.uint64))
