"""MinHash over character n-grams of matching keys, vectorised over whole batches with NumPy.

Everything here is deterministic (no Python `hash`, no process-dependent seeds), so signatures and
band hashes are the same from run to run and from worker to worker.

Shingles: a key's codepoints are hashed as a polynomial over each window of `ngram` characters, then
mixed with the SplitMix64 finaliser. A key shorter than `ngram` becomes one shingle for the whole
key, so short texts still match, but only an identical short text (issue 5: short texts go the exact
way rather than being skipped). An empty key has no shingle and never matches.

Signatures: one-permutation hashing (each shingle hash picks a bin with its top bits and competes
for the bin minimum with its low 32 bits) with optimal densification (Shrivastava 2017) for empty
bins, so a signature costs O(shingles) rather than O(shingles × permutations). The collision
probability of a slot equals the Jaccard similarity as for classic MinHash; bench/RESULTS.md compares
it with datasketch and rensa.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from etl.codepoints import BLOCK
from etl.codepoints import splitmix64 as _mix

_U64 = np.uint64
_MASK32 = _U64(0xFFFFFFFF)
_EMPTY = np.uint32(0xFFFFFFFF)
_POLY = _U64(0x100000001B3)       # FNV-1a 64-bit prime as the polynomial base
_DENSIFY_ROUNDS = 4096


def window_hashes(codes: np.ndarray, lengths: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every window of `n` consecutive codes of every document, flat, with `offsets`
    (documents + 1) into them. `codes` is all documents' uint64 codes concatenated, `lengths` their
    counts. A document shorter than `n` yields one hash of all its codes; an empty one yields none.
    A window's hash is the polynomial `codes[i]·POLY^(n-1) + … + codes[i+n-1]`, mixed; a short
    document's is the same polynomial with its length as an extra leading term."""
    lengths = np.asarray(lengths, dtype=np.int64)
    short = (lengths > 0) & (lengths < n)
    counts = np.where(lengths >= n, lengths - n + 1, short.astype(np.int64))
    offsets = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.uint64)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    if codes.size >= n:
        fits = _window_fits(starts, ends, codes.size - n + 1, n)
        if short.any():
            long_slot = np.ones(out.size, dtype=bool)
            long_slot[offsets[:-1][short]] = False
            out[long_slot] = _long_windows(codes, fits, n, np.empty(out.size - np.count_nonzero(short), np.uint64))
        else:
            _long_windows(codes, fits, n, out)
    if short.any():
        out[offsets[:-1][short]] = _short_documents(codes, starts[short], lengths[short], n)
    return out, offsets


def _window_fits(starts: np.ndarray, ends: np.ndarray, windows: int, n: int) -> np.ndarray:
    """Whether the window starting at each position lies inside one document: all but each
    document's last n - 1 starts (all of a shorter document's)."""
    fits = np.ones(windows, dtype=bool)
    first = np.maximum(starts, ends - n + 1)
    tail = ends - first
    behind = np.cumsum(tail) - tail
    at = np.repeat(first - behind, tail) + np.arange(int(tail.sum()))
    fits[at[at < windows]] = False
    return fits


def _long_windows(codes: np.ndarray, fits: np.ndarray, n: int, out: np.ndarray) -> np.ndarray:
    """The mixed polynomial of every window that `fits`, into `out`, BLOCK window starts at a time
    so that the intermediate arrays stay in cache. A block's polynomials are built by doubling
    (width w → 2w: h(i)·POLY^w + h(i + w)) and extending (w → w + 1: h(i)·POLY + codes[i + w]) along
    the bits of n: about 2·log2(n) passes instead of n - 1, with the same wrapping arithmetic."""
    steps = bin(n)[3:]
    powers = np.cumprod(np.full(n, _POLY, dtype=np.uint64))       # powers[w - 1] = POLY^w
    buffers = np.empty((2, min(BLOCK + n, codes.size)), dtype=np.uint64)
    done = 0
    with np.errstate(over="ignore"):
        for start in range(0, fits.size, BLOCK):
            block = codes[start:min(start + BLOCK, fits.size) + n - 1]
            current, width, size, spare = block, 1, block.size, 0
            for step in steps:
                size -= width
                target = buffers[spare, :size]
                np.multiply(current[:size], powers[width - 1], out=target)
                np.add(target, current[width:width + size], out=target)
                current, width, spare = target, 2 * width, 1 - spare
                if step == "1":
                    size -= 1
                    current = current[:size]
                    current *= _POLY
                    current += block[width:width + size]
                    width += 1
            kept = current[:size][fits[start:start + size]]
            out[done:done + kept.size] = _mix(kept)
            done += kept.size
    return out


def _short_documents(codes: np.ndarray, starts: np.ndarray, lengths: np.ndarray, n: int) -> np.ndarray:
    """The mixed hash of each whole document shorter than n: its length·POLY^length + its codes'
    polynomial, as the Horner loop `h = length; h = h·POLY + code` gives it."""
    powers = np.ones(n + 1, dtype=np.uint64)
    firsts = np.cumsum(lengths) - lengths
    step = np.arange(int(lengths.sum())) - np.repeat(firsts, lengths)
    with np.errstate(over="ignore"):
        np.cumprod(np.full(n, _POLY, dtype=np.uint64), out=powers[1:])
        terms = codes[np.repeat(starts, lengths) + step] * powers[np.repeat(lengths - 1, lengths) - step]
        return _mix(np.add.reduceat(terms, firsts) + lengths.astype(np.uint64) * powers[lengths])


def shingle_hashes(keys: list[str], ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every character n-gram of every key (see `window_hashes`)."""
    lengths = np.fromiter((len(k) for k in keys), dtype=np.int64, count=len(keys))
    codes = np.frombuffer("".join(keys).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    return window_hashes(codes, lengths, ngram)


@cache
def _probe_bins(num_perm: int, seed: int) -> np.ndarray:
    """The fixed densification probe sequence: for round t and empty bin j, the bin to borrow from."""
    rounds = np.arange(_DENSIFY_ROUNDS, dtype=np.uint64)[:, None]
    bins = np.arange(num_perm, dtype=np.uint64)[None, :]
    probes = _mix(_mix(rounds * _U64(num_perm) + bins) ^ _U64(seed)) % _U64(num_perm)
    return probes.astype(np.int64)


def signatures(hashes: np.ndarray, offsets: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """(docs, num_perm) uint32 signatures; a document without shingles gets a row of 0xFFFFFFFF."""
    docs = offsets.size - 1
    sig = np.full((docs, num_perm), _EMPTY, dtype=np.uint32)
    if hashes.size == 0:
        return sig
    salted = _mix(hashes ^ _U64(seed))
    doc = np.repeat(np.arange(docs, dtype=np.int64), np.diff(offsets))
    slot = doc * num_perm + (salted % _U64(num_perm)).astype(np.int64)
    value = ((salted >> _U64(32)) & _MASK32).astype(np.uint32)
    np.minimum.at(sig.reshape(-1), slot, value)
    _densify(sig, np.diff(offsets) > 0, seed)
    return sig


def _densify(sig: np.ndarray, has_shingles: np.ndarray, seed: int) -> None:
    """Fill every empty bin of a non-empty document from the first filled bin its probe sequence hits."""
    num_perm = sig.shape[1]
    flat = sig.reshape(-1)
    original = flat.copy()
    filled = original != _EMPTY
    empty = np.flatnonzero(~filled & np.repeat(has_shingles, num_perm))
    base = empty - empty % num_perm
    cols = empty - base
    probes = _probe_bins(num_perm, seed)
    for round_ in range(_DENSIFY_ROUNDS):
        if empty.size == 0:
            return
        source = base + probes[round_][cols]
        hit = filled[source]
        flat[empty[hit]] = original[source[hit]]
        miss = ~hit
        empty, base, cols = empty[miss], base[miss], cols[miss]
    # Astronomically unlikely; deterministic all the same.
    for slot in empty.tolist():
        row = original[slot - slot % num_perm:slot - slot % num_perm + num_perm]
        flat[slot] = row[row != _EMPTY].min()


def band_hashes(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(docs, bands) uint64: one hash per band of `rows` consecutive signature slots."""
    out = np.empty((sig.shape[0], bands), dtype=np.uint64)
    wide = sig.astype(np.uint64)
    with np.errstate(over="ignore"):
        for band in range(bands):
            h = np.full(sig.shape[0], _U64(band), dtype=np.uint64)
            for j in range(band * rows, (band + 1) * rows):
                h = _mix(h ^ wide[:, j])
            out[:, band] = h
    return out


@cache
def lsh_params(threshold: float, num_perm: int, false_positive_weight: float = 0.1,
               false_negative_weight: float = 0.9) -> tuple[int, int]:
    """Bands × rows (bands·rows ≤ num_perm) minimising the weighted areas of false positives (pairs
    below `threshold` that become candidates) and false negatives (pairs above it that do not), for
    the S-curve 1 − (1 − s^r)^b. Every candidate is verified by exact Jaccard afterwards, so a false
    positive costs only verification time while a false negative is a missed duplicate: hence 1:9."""

    def area(b: int, r: int, low: float, high: float, above: bool) -> float:
        s = np.linspace(low, high, 201)
        p = 1.0 - (1.0 - s**r) ** b
        y = 1.0 - p if above else p
        return float(np.trapezoid(y, s))

    best: tuple[float, int, int] | None = None
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            error = (false_positive_weight * area(b, r, 0.0, threshold, False)
                     + false_negative_weight * area(b, r, threshold, 1.0, True))
            if best is None or error < best[0] - 1e-12:
                best = (error, b, r)
    assert best is not None
    return best[1], best[2]


def unique_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and how often each occurs. Sort-based: NumPy 2.x's `np.unique` takes a
    hash-table path for 64-bit integers that measured 25× slower here."""
    ordered = np.sort(values)
    if ordered.size == 0:
        return ordered, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    return ordered[starts], np.diff(np.append(starts, ordered.size))


def collision_probability(similarity: float, bands: int, rows: int) -> float:
    """Chance that a pair with this Jaccard similarity shares at least one band."""
    return 1.0 - (1.0 - similarity**rows) ** bands


def sorted_contains(ordered: np.ndarray, values: np.ndarray) -> np.ndarray:
    """`np.isin(values, ordered)` for a sorted `ordered`, by binary search: O(len(values) · log n)
    per batch instead of a pass over all of `ordered`."""
    if not ordered.size:
        return np.zeros(values.size, dtype=bool)
    at = np.minimum(np.searchsorted(ordered, values), ordered.size - 1)
    return ordered[at] == values
