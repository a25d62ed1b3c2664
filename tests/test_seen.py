"""etl/seen.py: key counts that spill from a dict into sorted arrays give the counts a dict gives."""

from __future__ import annotations

import random
from collections import Counter

from etl.seen import NativeIds, SeenKeys, digest_key


def test_counts_across_many_spills_equal_a_counter():
    rng = random.Random(3)
    values = [0, 2**64 - 1, *(rng.getrandbits(64) for _ in range(700))]
    seen, reference = SeenKeys(recent_limit=3), Counter()
    for _ in range(5_000):
        key = rng.choice(values)
        reference[key] += 1
        assert seen.add(key) == reference[key]
    assert seen._keys.size > 600 and len(seen._recent) < 3          # most keys really went to the arrays
    assert all(seen.count(k) == reference[k] for k in values)
    assert seen.count(12345) == 0


def test_native_ids_are_recognised_after_spilling_and_others_are_not():
    natives = NativeIds(recent_limit=2)
    claimed = [f"id-{i}" for i in range(50)] + ["", "病例 7", "\ud800lone"]
    for native in claimed:
        assert native not in natives
        natives.add(native)
    assert all(native in natives for native in claimed)
    assert not any(f"id-{i}" in natives for i in range(50, 120))


def test_a_digest_key_is_the_integer_the_hex_spells():
    assert digest_key("00000000000000ff") == 255 and digest_key("ffffffffffffffff") == 2**64 - 1
