"""Texts to compare a faster definition against the one it replaced: every line of the fixture and demo
mirror files, the same lines joined into multi-line documents (some lines repeated), adversarial
strings and seeded random code points."""

from __future__ import annotations

import functools
import random
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
ADVERSARIAL = [
    "", None, " ", "\u00a0\u3000\u2028\u2029\u0085\t\r\n\x0b\x0c", "\u200b\u200d\ufeff\u180e", "a", "中", "𠀀𪚥𰀀",
    "😀👍🏽🇨🇳", "e\u0301 n\u0303", "ﬁ ǅ Ⅻ ª º", "Ａｂｃ１２３ ｶﾀｶﾅ ｰ", "、。「」〆々〇ー・", "ひらがな カタカナ 漢字",
    "한국어 각 ㄱ", "Ελληνικά µ μ ϐ", "Кириллица ёЁ Ѐ", "العربية ١٢٣ ـ ﷺ", "\x00\x7f\x80\x9f", "\ue000\U000f0000\U0010ffff",
    "abc中def", "中abc中", "ab\ncd", "a1b2c3", "ab" * 50 + "中" * 50 + "ab", "CT示右肺下叶结节，5mm", "Is 布洛芬 safe?",
    "哈" * 10, "哈" * 9, "ab" * 5, "abcdefghij", "\n\n\n", "a\n\na\n a \n", "x\r\ny\r\nx\r\n", "锟斤拷" * 3, "Ã¤Ã", "åŒ»ç”Ÿ",
    "\ufffd", "烫烫烫烫", "é\u2122\u20ac", "ä\u0080", "<PHONE> <SOCIAL_ID>", "加微信 call now", "\ue00f_123",
]


@functools.cache
def fixture_lines() -> tuple[str, ...]:
    lines: list[str] = []
    for folder in (ROOT / "tests" / "fixtures", ROOT / "examples" / "mirror"):
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            lines += path.read_bytes().decode("utf-8", errors="replace").splitlines()
    return tuple(lines)


def documents(lines: tuple[str, ...], seed: int = 14) -> list[str]:
    """`lines` joined a few at a time into documents, some lines said twice."""
    rng = random.Random(seed)
    out, at = [], 0
    while at < len(lines):
        size = rng.randrange(1, 9)
        chunk = list(lines[at:at + size])
        at += size
        if chunk and rng.random() < 0.3:
            chunk.insert(rng.randrange(len(chunk) + 1), rng.choice(chunk))
        out.append("\n".join(chunk))
    return out


def random_texts(n: int = 3000, seed: int = 14) -> list[str | None]:
    rng = random.Random(seed)
    pool = [c for s in ADVERSARIAL if s for c in s]

    def char() -> str:
        if rng.random() < 0.5:
            return rng.choice(pool)
        code = rng.randrange(0x110000 - 0x800)
        return chr(code if code < 0xD800 else code + 0x800)      # no surrogates

    return [("".join(char() for _ in range(rng.randrange(16))) if rng.random() > 0.05 else None) for _ in range(n)]


def all_texts() -> pl.Series:
    lines = fixture_lines()
    return pl.Series([*ADVERSARIAL, *lines, *documents(lines), *random_texts()], dtype=pl.String)
