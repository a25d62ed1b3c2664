"""Which keys a source has already produced, in memory bounded by a setting rather than by the source.

Conversion numbers content-hash ids by order of appearance (`<digest>`, then `<digest>-2`, …) and
rejects a repeated native id, so it must remember every key of a source: Huatuo-26M alone is 26M
rows, which as a Python dict of strings is several GB. Here the newest keys sit in a small dict and,
every `recent_limit` distinct keys, move into sorted NumPy arrays (16 bytes a key and a count): a
lookup checks the dict, then one binary search in the arrays. Sources smaller than `recent_limit`
never leave the dict, so they pay nothing for the arrays.
"""

from __future__ import annotations

import numpy as np
import xxhash

RECENT_LIMIT = 1 << 19   # ≈ 50 MB of dict entries at most; the arrays hold the rest at 12 bytes a key


def digest_key(digest: str) -> int:
    """A content hash (16 hex digits, etl/rows.hash_text) as the 64-bit integer it spells."""
    return int(digest, 16)


class NativeIds:
    """The native ids a source has claimed, as the two 64-bit halves of their xxh3-128 hash, each half
    in its own `SeenKeys`. A new id is taken for a repeat only if both halves were seen before; for
    two different ids that needs a 128-bit clash (or two 64-bit ones), ≈ n³/2¹²⁸ for n ids: never in
    practice, where one 64-bit key alone would clash with probability 2 × 10⁻⁵ at 26M ids."""

    def __init__(self, recent_limit: int | None = None) -> None:
        self._high, self._low = SeenKeys(recent_limit), SeenKeys(recent_limit)

    @staticmethod
    def _halves(native: str) -> tuple[int, int]:
        value = xxhash.xxh3_128_intdigest(native.encode("utf-8", "surrogatepass"))
        return value >> 64, value & 0xFFFF_FFFF_FFFF_FFFF

    def __contains__(self, native: str) -> bool:
        high, low = self._halves(native)
        return self._high.count(high) > 0 and self._low.count(low) > 0

    def add(self, native: str) -> None:
        high, low = self._halves(native)
        self._high.add(high)
        self._low.add(low)


class SeenKeys:
    """Counts of 64-bit keys: `add(key)` returns how many times the key has now been seen (1 the first
    time)."""

    def __init__(self, recent_limit: int | None = None) -> None:
        self.recent_limit = recent_limit or RECENT_LIMIT
        self._recent: dict[int, int] = {}
        self._keys = np.empty(0, dtype=np.uint64)      # sorted, unique
        self._counts = np.empty(0, dtype=np.uint32)

    def _find(self, keys: np.ndarray) -> np.ndarray:
        """Index of each key in the arrays, -1 where absent."""
        at = np.searchsorted(self._keys, keys)
        found = at < self._keys.size
        found[found] = self._keys[at[found]] == keys[found]
        return np.where(found, at, -1)

    def _old_count(self, key: int) -> int:
        if not self._keys.size:
            return 0
        at = int(np.searchsorted(self._keys, np.uint64(key)))
        return int(self._counts[at]) if at < self._keys.size and int(self._keys[at]) == key else 0

    def count(self, key: int) -> int:
        """How many times `key` has been seen so far (0 if never)."""
        return self._old_count(key) + self._recent.get(key, 0)

    def add(self, key: int) -> int:
        """Record one more sighting of `key`; returns its count including this one."""
        recent = self._recent.get(key, 0) + 1
        self._recent[key] = recent
        total = self._old_count(key) + recent
        if len(self._recent) >= self.recent_limit:
            self._spill()
        return total

    def _spill(self) -> None:
        """Move the dict into the sorted arrays (counts of keys already there are added up)."""
        keys = np.fromiter(self._recent, dtype=np.uint64, count=len(self._recent))
        counts = np.fromiter(self._recent.values(), dtype=np.uint32, count=len(self._recent))
        self._recent = {}
        at = self._find(keys)
        present = at >= 0
        self._counts[at[present]] += counts[present]
        keys, counts = keys[~present], counts[~present]
        order = np.argsort(keys)
        keys, counts = keys[order], counts[order]
        where = np.searchsorted(self._keys, keys)
        self._keys = np.insert(self._keys, where, keys)
        self._counts = np.insert(self._counts, where, counts)
