"""The one check for "an HTML page where data was expected", shared by every reader and every fetcher.

A login wall, an error or quota page, or a page saved from a browser ends up under a data file's name more
often than one would think. It is recognised from the first `SNIFF_HTML_BYTES`: after any byte order mark,
blank space, XML declaration and ordinary comments, the text starts with an HTML tag (`<!DOCTYPE html`,
`<html`, `<head`, `<body`, `<meta`, `<title`, `<script`, `<link`, `<style`) or with the comment browsers put on
saved pages (`<!-- saved from url=...`). Sources whose data are web pages read them with the `html` reader,
which skips the check.
"""

from __future__ import annotations

import codecs
import re

SNIFF_HTML_BYTES = 4096
_TAG = re.compile(rb"<(!doctype\s+html|html|head|body|meta|title|script|link|style)[\s>/]", re.IGNORECASE)
_SAVED_FROM = re.compile(rb"<!--\s*saved from url", re.IGNORECASE)
_XML_DECLARATION = re.compile(rb"<\?xml[^>]*\?>", re.IGNORECASE)
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_BLANK = b" \t\r\n\f\v"


def html_instead_of_data(head: bytes) -> bool:
    """True when `head` (the first bytes of a file) starts like an HTML page."""
    head = head[:SNIFF_HTML_BYTES]
    if head.startswith(_UTF16_BOMS):
        head = head.decode("utf-16", errors="ignore").encode("utf-8", errors="ignore")
    text = head.removeprefix(codecs.BOM_UTF8).lstrip(_BLANK)
    while True:
        if _SAVED_FROM.match(text):
            return True
        if text.startswith(b"<!--"):
            end = text.find(b"-->")
            if end < 0:
                return False
            text = text[end + 3:].lstrip(_BLANK)
            continue
        declaration = _XML_DECLARATION.match(text)
        if declaration:
            text = text[declaration.end():].lstrip(_BLANK)
            continue
        return _TAG.match(text + b" ") is not None
