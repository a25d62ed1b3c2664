"""Decoding whole upstream text files whose encoding varies per file (MedDialog years, webMedQA)."""

from __future__ import annotations


def decode_guess(data: bytes) -> tuple[str, str]:
    """`(text, encoding)`: UTF-8 (BOM dropped) when the bytes are valid UTF-8, else GB18030, the
    superset of the GB2312/GBK encodings the Chinese sources use. GBK text is essentially never
    valid UTF-8, so the first strict decode that succeeds is the file's encoding."""
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("gb18030"), "gb18030"
