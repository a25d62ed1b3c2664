"""The n-gram window hashes MinHash and decontamination share, against their definition in plain Python
integers: the vectorised, blocked computation must give exactly these values (they feed MinHash
signatures, so any other value would change dedup output)."""

import numpy as np
import pytest

from etl.codepoints import BLOCK, splitmix64
from etl.stages.minhash import shingle_hashes, window_hashes

MASK = (1 << 64) - 1
POLY = 0x100000001B3


def reference_mix(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def reference_windows(documents: list[list[int]], n: int) -> list[list[int]]:
    """Per document: the mixed polynomial of each window of n codes, or of the whole document
    (with its length as a leading term) when it is shorter than n."""
    out = []
    for codes in documents:
        if len(codes) >= n:
            windows = []
            for i in range(len(codes) - n + 1):
                h = 0
                for code in codes[i:i + n]:
                    h = (h * POLY + code) & MASK
                windows.append(reference_mix(h))
            out.append(windows)
        elif codes:
            h = len(codes)
            for code in codes:
                h = (h * POLY + code) & MASK
            out.append([reference_mix(h)])
        else:
            out.append([])
    return out


def flat(documents: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    codes = np.array([c for d in documents for c in d], dtype=np.uint64)
    return codes, np.array([len(d) for d in documents], dtype=np.int64)


def test_splitmix64_gives_the_published_sequence_in_any_shape():
    # SplitMix64 seeded with 0 yields these (the finaliser of 0 + k·golden gamma).
    gamma = 0x9E3779B97F4A7C15
    seeds = np.array([0, gamma, 2 * gamma & MASK], dtype=np.uint64)
    assert splitmix64(seeds).tolist() == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]
    rng = np.random.default_rng(5)
    values = rng.integers(0, MASK, (3, BLOCK + 7), dtype=np.uint64, endpoint=True)
    mixed = splitmix64(values)
    assert mixed.shape == values.shape
    for row in range(3):
        for col in (0, BLOCK - 1, BLOCK, BLOCK + 6):
            assert int(mixed[row, col]) == reference_mix(int(values[row, col]))
    column = values[:, BLOCK]          # not contiguous
    assert splitmix64(column).tolist() == [reference_mix(int(v)) for v in column]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 13])
def test_window_hashes_match_the_definition_for_long_short_and_empty_documents(n):
    rng = np.random.default_rng(n)
    documents = [rng.integers(0, MASK, int(length), dtype=np.uint64, endpoint=True).tolist()
                 for length in [0, 1, n - 1, n, n + 1, 3 * n + 2, 0, 2, 40]]
    documents.append([7] * (n + 4))    # repeated codes: equal windows, equal hashes
    hashes, offsets = window_hashes(*flat(documents), n)
    expected = reference_windows(documents, n)
    assert offsets.tolist() == np.cumsum([0] + [len(e) for e in expected]).tolist()
    assert [hashes[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:], strict=True)] == expected


def test_window_hashes_across_block_boundaries():
    """Documents that straddle the BLOCK-sized steps, end exactly at one, or are shorter than n there."""
    n = 13
    rng = np.random.default_rng(0)
    lengths = [BLOCK - 5, 3, n, BLOCK - n, 2 * BLOCK + 1, 12, 1, 0, 30]
    documents = [rng.integers(0, 1 << 20, length).tolist() for length in lengths]
    hashes, offsets = window_hashes(*flat(documents), n)
    expected = reference_windows(documents, n)
    got = [hashes[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    assert got == expected


def test_shingle_hashes_keep_their_values():
    """Pinned values (as every earlier build computed them): MinHash signatures depend on them."""
    hashes, offsets = shingle_hashes(["头痛欲裂", "ab", ""], 3)
    assert hashes.tolist() == [14366389662662289693, 14986317398612952074, 458333970255020722]
    assert offsets.tolist() == [0, 2, 3, 3]
