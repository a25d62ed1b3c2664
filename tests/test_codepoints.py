"""The table path of textnorm (code points in NumPy) against the polars string path it replaces:
on every code point, on seeded random strings of the characters where they could differ, and on
every string of the fixtures."""

import json
import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from etl import textnorm
from etl.codepoints import SURROGATES, characters, decode, encode, span_hashes
from etl.textnorm import match_keys, match_unit_codes, match_unit_lists

FIXTURES = Path(__file__).parent / "fixtures"

# Characters where per-character folding could go wrong, and the characters around them.
TRICKY = [
    *"abcXYZ0189....--//::%‰ \t\r\n\x00_", *"１２９．：／－ＡＢｚ", *"體頭暈發嚴头晕中國後臺乾",
    "\u0301", "\u0308", "\u0327", "\u1100", "\u1161", "\u11a8", "\u3131", "\u314f", "가", "각", "ﬁ", "ﬀ",
    "㍿", "㎎", "℃", "ℓ", "İ", "Σ", "σ", "ς", "ϲ", "α", "\U0001d6ba", "٣", "۴", "३", "১", "\U0001d7ce", "Ⅻ", "①",
    "²", "½", "⁄", "😀", "\u200d", "\ue000", "\uf8ff", "µ", "ß", "K", "Ω", "ǅ", "\u0b3e", "\u0b47", "\u0cd5",
    "ｶ", "ﾞ", "\u3099", "\u309a", "か", "𠀀", "\U0003134a", "\U00031350", "\U0002fa1d", "\ufdfa", "\u0345",
    "\u0390", "ΐ", "\u1e9e", "\u2126", "\u00ad", "\u3000", "\u0660", "٫", "\u0f33", "𝟘",
]


def random_texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(TRICKY) for _ in range(rng.randint(0, 24))) for _ in range(count)]


def fixture_texts() -> list[str]:
    """Every string value of every JSON/JSONL fixture and every line of the other text fixtures."""
    def strings(value: object) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, dict):
            value = list(value.values())
        return [s for v in value for s in strings(v)] if isinstance(value, list) else []

    def parsed(text: str) -> list[str] | None:
        try:
            return strings(json.loads(text))
        except ValueError:
            return None

    texts: list[str] = []
    for path in sorted(p for p in FIXTURES.rglob("*") if p.is_file()):
        try:
            raw = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        whole = parsed(raw) if path.suffix == ".json" else None
        texts += whole if whole is not None else [
            s for line in raw.splitlines() for s in (parsed(line) or [line] if path.suffix in (".json", ".jsonl")
                                                     else [line])]
    return texts

@pytest.fixture(autouse=True, scope="module")
def tables_on() -> None:
    """The table path from the first text on (a process otherwise starts with the string path)."""
    textnorm._tables()


def reference_unit_codes(texts: list[str] | pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit codes as decontamination made them before: the units as strings (polars regex over the
    folded text), each hashed, and `str.contains` of the character-unit class."""
    units = match_unit_lists(texts)
    flat = units.explode().drop_nulls()
    values, offsets = decode(flat)
    return (span_hashes(values, offsets[:-1], np.diff(offsets)), flat.str.contains(textnorm._CHARACTER_UNIT).to_numpy(),
            units.list.len().to_numpy())


def assert_same_units(texts: list[str] | pl.Series) -> None:
    codes, character, counts = match_unit_codes(texts)
    expected_codes, expected_character, expected_counts = reference_unit_codes(texts)
    assert np.array_equal(textnorm._string_unit_codes(pl.Series(texts, dtype=pl.String))[0], expected_codes)
    assert counts.tolist() == expected_counts.tolist()
    assert np.array_equal(codes, expected_codes)
    assert np.array_equal(character, expected_character)


@pytest.fixture(scope="module")
def every_character() -> pl.Series:
    return characters(np.r_[0:SURROGATES.start, SURROGATES.stop:0x110000])


def test_the_tables_cover_the_common_characters():
    safe = (textnorm._tables().flags & textnorm._UNSAFE) == 0
    assert safe.sum() > 270_000
    assert all(safe[ord(c)] for c in "aZ0.%頭头가ｶ１℃㎎ﬁ😀\ue000\x00\n")
    assert not any(safe[ord(c)] for c in "\u0301\u1161\u11a8\u3099Σ\U0001d6ba\u0b3e\ud800\U00050000")


def test_t2s_commutes_with_marking_and_dropping():
    """The tables apply T→S first: exact only while no character T→S touches is a digit, a
    separator or a dropped character, and the separator mark is left alone."""
    kind = textnorm._tables().kind
    sources, targets = textnorm._t2s_patterns()
    touched = np.array([ord(c) for c in sources + targets], dtype=np.int64)
    assert not (kind[touched] & (textnorm._DIGIT | textnorm._SEPARATOR | textnorm._DROP)).any()
    assert textnorm.SEPARATOR_MARK not in sources
    assert all(len(t) == 1 for t in targets)


def test_every_code_point_keys_as_polars(every_character):
    assert match_keys(every_character).to_list() == textnorm._polars_match_keys(every_character).to_list()


def test_every_code_point_units_as_polars(every_character):
    assert_same_units(every_character)


def test_random_strings_of_tricky_characters_fold_as_polars():
    texts = random_texts(20_000, seed=14) + [None, "", "Σ", "ΟΔΟΣ ΟΔΟΣ.", "1.2.3.4.5", "１．２．３", "7.8%",
                                            "a.1b.2.c", ".5 5. x..1", "v1.2-3/4:5", "℃.5", "5.℃"]
    series = pl.Series(texts, dtype=pl.String)
    assert match_keys(series).to_list() == textnorm._polars_match_keys(series).to_list()
    assert_same_units(series)


def test_fixture_texts_fold_as_polars():
    texts = fixture_texts()
    assert len(texts) > 1000
    assert match_keys(texts).to_list() == textnorm._polars_match_keys(pl.Series(texts)).to_list()
    assert_same_units(texts)


def test_decode_and_encode_round_trip_rows():
    texts = ["ab", None, "", "中文😀\x00", "é"]
    values, offsets = decode(pl.Series(texts))
    assert values.tolist() == [97, 98, 0x4E2D, 0x6587, 0x1F600, 0, 0xE9]
    assert offsets.tolist() == [0, 2, 2, 2, 6, 7]
    assert encode(values, offsets, "x").to_list() == ["ab", "", "", "中文😀\x00", "é"]


def test_a_process_switches_to_the_tables_after_enough_text(monkeypatch):
    switch = textnorm._Switch()
    monkeypatch.setattr(textnorm._tables, "cache_info", lambda: type("Info", (), {"currsize": 0})())
    monkeypatch.setattr(switch, "AFTER_CHARACTERS", 10)
    texts = pl.Series(["頭暈 7.8", "Rash."])
    assert switch.tables(texts) is None and switch.characters == 11
    assert switch.tables(texts) is textnorm._tables()


def test_span_hashes_depend_on_characters_order_and_length():
    values, offsets = decode(pl.Series(["ab", "ba", "ab", "a", "b", "aba", "中"]))
    codes = span_hashes(values, offsets[:-1], np.diff(offsets)).tolist()
    assert codes[0] == codes[2]
    assert len(set(codes)) == 6
