"""Text normalisation: the matching key (for dedup and decontamination) and stored-text cleaning.

The key is for comparison only and never written: NFKC (which also folds full-width forms to
half-width), case-folding, Traditional → Simplified Chinese, whitespace and punctuation removed.
Digits and units are kept as they are, and so is a separator between two digits (`7.8`, `1-2`,
`120/80`), so "阿司匹林100mg" and "阿司匹林300mg", or "7.8" and "78", never share a key.

Traditional → Simplified uses OpenCC's own character table (the one `opencc-python-reimplemented`
ships) folded into a single `str.translate` table together with punctuation removal. Measured in
bench/RESULTS.md: OpenCC's phrase-level `convert` is two orders of magnitude slower and, for a
matching key, gives the same result except for a handful of phrase-only conversions; what matters
for matching is that both spellings map to one key, which a character table guarantees.
"""

from __future__ import annotations

import html
import re
import sys
import unicodedata
from functools import cache
from pathlib import Path

import opencc

# Kept when between two digits: decimal point, ranges, ratios, times (120/80, 1-2片, 8:30).
_DIGIT_SEPARATOR = re.compile(r"(?<=\d)[.\-/:](?=\d)")
_PROTECTED = {".": "\ue000", "-": "\ue001", "/": "\ue002", ":": "\ue003"}
_UNITS_KEPT = frozenset("%‰")

# Stored-text cleaning: C0/C1 controls except tab/newline/CR, BOM and zero-width space.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufeff\u200b]")
_ENTITY = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z][a-zA-Z0-9]{1,31});")


@cache
def _traditional_to_simplified() -> dict[int, str]:
    """OpenCC's Traditional → Simplified character table (first candidate for ambiguous ones)."""
    path = Path(opencc.__file__).parent / "dictionary" / "TSCharacters.txt"
    table: dict[int, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        source, _, targets = line.partition("\t")
        if len(source) == 1 and targets:
            table[ord(source)] = targets.split(" ")[0]
    return table


@cache
def _key_table() -> dict[int, str | None]:
    """One translate table: T→S mapping plus deletion of whitespace and punctuation."""
    table: dict[int, str | None] = dict(_traditional_to_simplified())
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        category = unicodedata.category(char)
        if (category[0] in "PZ" or char.isspace() or category == "Cc") and char not in _UNITS_KEPT:
            table[code] = None
    return table


def _protect(match: re.Match[str]) -> str:
    return _PROTECTED[match.group()]


def match_key(text: str) -> str:
    """The matching key of a text (see the module docstring); empty for punctuation-only text."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    if any(sep in folded for sep in _PROTECTED):
        folded = _DIGIT_SEPARATOR.sub(_protect, folded)
    return folded.translate(_key_table())


def clean_text(text: str) -> str:
    """Stored-text cleaning only: control characters, stray HTML entities, surrounding whitespace."""
    if "&" in text:
        text = _ENTITY.sub(lambda m: html.unescape(m.group()), text)
    return _CONTROL.sub("", text).strip()


def numbers_in(key: str) -> list[str]:
    """The numbers of a key (digit runs with their kept separators), sorted: two texts that differ in
    a dose or lab value differ here even when nearly every character n-gram is shared."""
    return sorted(_NUMBER.findall(key))


_NUMBER = re.compile(r"\d+(?:[\ue000-\ue003]\d+)*")
