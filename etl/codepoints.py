"""Texts as NumPy arrays of code points, for folding a whole batch with table look-ups.

A batch of texts becomes one uint32 array of code points plus row offsets (and back), so a per-character mapping is one fancy-indexing step instead of a pass of
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
# The code points tables are made for: all but the surrogates and planes 4-13, where no Unicode
# version has put a character yet (leaving them out halves the work of building a table; a character
# left out only sends its rows down the string path).
EXAMINED = np.r_[0:SURROGATES.start, SURROGATES.stop:0x40000, 0xE0000:CODE_POINTS]
_U64 = np.uint64


def decode(texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """All code points of a string Series (nulls as empty) and each row's offsets into them."""
    texts = texts.fill_null("")
    lengths = texts.str.len_chars().to_numpy()
    offsets = np.zeros(texts.len() + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    array = texts.to_arrow(compat_level=pl.CompatLevel.oldest()).cast(pa.large_string())
    if not offsets[-1]:
        return np.empty(0, dtype=np.uint32), offsets
    bounds = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset:array.offset + len(array) + 1]
    utf8 = memoryview(array.buffers()[2])[bounds[0]:bounds[-1]]
    return np.frombuffer(str(utf8, "utf-8").encode("utf-32-le"), dtype=np.uint32), offsets


def encode(values: np.ndarray, offsets: np.ndarray, name: str) -> pl.Series:
    """The inverse of `decode`: rows `values[offsets[i]:offsets[i + 1]]` as a String Series."""
    text = str(memoryview(np.ascontiguousarray(values, dtype=np.uint32)), "utf-32-le")
    bounds = offsets.tolist()
    return pl.Series(name, [text[start:end] for start, end in zip(bounds[:-1], bounds[1:], strict=True)],
                     dtype=pl.String)


@dataclass(frozen=True)
class Expansion:
    """A mapping of each code point to a string (index = code point), for `expand`."""

    lengths: np.ndarray     # uint8: characters each code point becomes (at least one; NFKC: at most 18)
    first: np.ndarray       # uint32: the first of them
    starts: np.ndarray      # int32: where all of them start in `pool`
    pool: np.ndarray        # uint32

    @classmethod
    def of(cls, codes: np.ndarray, mapped: pl.Series) -> Expansion:
        """The mapping `codes[i]` → `mapped[i]` (not empty); every other code point maps to itself."""
        pool, offsets = decode(mapped)
        if (np.diff(offsets) == 0).any():
            raise ValueError("a code point mapped to an empty string")
        lengths, first = np.ones(CODE_POINTS, dtype=np.uint8), np.arange(CODE_POINTS, dtype=np.uint32)
        starts = np.zeros(CODE_POINTS, dtype=np.int32)
        lengths[codes], starts[codes] = np.diff(offsets), offsets[:-1]
        first[codes] = pool[offsets[:-1]]
        return cls(lengths, first, starts, pool)

    def expand(self, values: np.ndarray, offsets: np.ndarray, longer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of code points (`decode`'s form) with every code point replaced by its string;
        `longer` are the positions of the code points that map to more than one character (the
        caller finds them together with its other look-ups)."""
        mapped = self.first[values]
        if not longer.size:
            return mapped, offsets
        extra = self.lengths[values[longer]].astype(np.int64) - 1
        owner = np.repeat(np.arange(longer.size), extra)
        step = 1 + np.arange(owner.size) - np.repeat(np.cumsum(extra) - extra, extra)
        mapped = np.insert(mapped, longer[owner] + 1, self.pool[self.starts[values[longer[owner]]] + step])
        shift = np.zeros(longer.size + 1, dtype=np.int64)
        np.cumsum(extra, out=shift[1:])
        return mapped, offsets + shift[np.searchsorted(longer, offsets)]


def characters(codes: np.ndarray) -> pl.Series:
    """Each code point (no surrogates) as a one-character string."""
    codes = np.ascontiguousarray(codes, dtype=np.uint32)
    utf8 = str(memoryview(codes), "utf-32-le").encode("utf-8")
    ends = np.cumsum(1 + (codes >= 0x80).astype(np.int64) + (codes >= 0x800) + (codes >= 0x10000))
    array = pa.LargeStringArray.from_buffers(codes.size, pa.py_buffer(np.append(0, ends)), pa.py_buffer(utf8))
    return pl.Series("char", array)


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
    version are unassigned here and left out, and so is everything outside EXAMINED.
    """
    chars = list(map(chr, EXAMINED.tolist()))
    decomposed = [(char, d.split()) for char, d in zip(chars, map(unicodedata.decomposition, chars), strict=True)
                  if d]
    unsafe = np.zeros(CODE_POINTS, dtype=bool)
    unsafe[0x1161:0x1176] = unsafe[0x11A8:0x11C3] = True
    unsafe[[int(parts[1], 16) for _, parts in decomposed if len(parts) == 2 and not parts[0].startswith("<")]] = True
    unsafe[EXAMINED] |= np.fromiter(map(unicodedata.combining, chars), dtype=bool, count=EXAMINED.size)
    safe = np.zeros(CODE_POINTS, dtype=bool)
    safe[EXAMINED] = np.fromiter(map("Cn".__ne__, map(unicodedata.category, chars)), dtype=bool, count=EXAMINED.size)
    safe &= ~unsafe
    for char, _ in decomposed:
        safe[ord(char)] &= not unsafe[[ord(p) for p in unicodedata.normalize("NFKD", char)]].any()
    return safe


# Elements per step of the element-wise hash loops: a few arrays of this many uint64 stay in the L2
# cache, where a whole batch's would go through memory once per operation (splitmix64 on 2.2M values: about 2x).
BLOCK = 1 << 15


def splitmix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (wrapping arithmetic): the one mixing step of every
    hash over code points here and in etl/stages/minhash.py. A new array of `values`' shape; the
    steps run in place, BLOCK values at a time."""
    out = np.empty(np.shape(values), dtype=np.uint64)
    source, target = np.ravel(values), out.reshape(-1)
    shifted = np.empty(min(BLOCK, source.size), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for start in range(0, source.size, BLOCK):
            z = target[start:start + BLOCK]
            t = shifted[:z.size]
            np.add(source[start:start + BLOCK], _U64(0x9E3779B97F4A7C15), out=z)
            for shift, factor in ((30, _U64(0xBF58476D1CE4E5B9)), (27, _U64(0x94D049BB133111EB))):
                np.right_shift(z, _U64(shift), out=t)
                z ^= t
                z *= factor
            np.right_shift(z, _U64(31), out=t)
            z ^= t
    return out


@cache
def _character_mix() -> np.ndarray:
    return splitmix64(np.arange(CODE_POINTS, dtype=np.uint64))


def _polynomial(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        positions = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))
        steps = positions - np.repeat(starts, lengths)
        powers = np.cumprod(np.full(int(lengths.max()), _U64(0x100000001B3), dtype=np.uint64)) * _U64(0x9E3779B1)
        terms = _character_mix()[values[positions]] * powers[steps]
        return splitmix64(np.add.reduceat(terms, np.cumsum(lengths) - lengths) ^ lengths.astype(np.uint64))


@cache
def _character_hashes() -> np.ndarray:
    """`span_hashes` of every one-character span, by code point."""
    codes = np.arange(CODE_POINTS, dtype=np.uint32)
    return _polynomial(codes, np.arange(CODE_POINTS, dtype=np.int64), np.ones(CODE_POINTS, dtype=np.int64))


def span_hashes(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """A uint64 hash of each span `values[starts[i]:starts[i] + lengths[i]]` of code points (lengths
    > 0): a polynomial over each character's own 64-bit hash, with the length, mixed. Equal spans give
    equal hashes in every process; distinct spans collide with probability about 2⁻⁶⁴. One-character
    spans (most units) are looked up in a table made by the same formula."""
    lengths = np.asarray(lengths, dtype=np.int64)
    hashes = _character_hashes()[values[starts]]
    longer = np.flatnonzero(lengths > 1)
    if longer.size:
        hashes[longer] = _polynomial(values, starts[longer], lengths[longer])
    return hashes
