"""Reader `json`: JSON arrays, JSON Lines and their malformed cousins, told apart by content.

Upstream `.json` files are arrays, JSON Lines, or neither, whatever the extension says. The layout is
sniffed from the first non-blank lines of each (decompressed) file:

* `{` and `options["json_object"] == "items"`: one object whose members are the records (PubMedQA,
  keyed by PMID), streamed member by member as `{"__key__": key, "__value__": value}`, location `key K`;
* the first line is a whole JSON value and more follows (or it is an object): JSON Lines, location
  `line N` (1-based), blank lines skipped; one bad line is a `bad_json` reject and the next go on;
* the first line is an object followed by a comma: the bracket-less pseudo-array, one object per line
  (X-jun harmlessness.json), read as JSON Lines with the trailing comma dropped;
* a broken first line that starts with `{` and ends with `}`, or is followed by a whole JSON object on
  one line, is JSON Lines too;
* `[`: an array streamed element by element with ijson, location `element N` (0-based);
* `{` otherwise (a pretty-printed object, or objects separated by commas without `[ ]`): read as the
  array `[` + text + `]`, trailing comma dropped, so a lone object is one record (`element 0`).

An array cut mid-record yields its complete elements, then one `truncated_json` reject. Numbers are
int or float, never Decimal.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

import ijson

from etl.read.base import RawRecord, ReadError, ReadItem, SourceFile, cut, reader
from etl.read.containers import read_members
from etl.read.encoding import decoded_lines, decoded_stream
from etl.read.streams import CHUNK, SNIFF_BYTES, buffered, peek, to_utf8

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_SNIFF_LINES = 3


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def sniff_layout(head: str, complete: bool, options: Mapping[str, Any]) -> str:
    """`items`, `lines`, `comma_lines`, `array` or `objects` for a document starting with `head`
    (`complete`: head is the whole document)."""
    start = head.lstrip()[:1]
    if start == "{" and options.get("json_object") == "items":
        return "items"
    lines = head.split("\n")
    if not complete:
        lines = lines[:-1]  # may be cut
    first, *rest = [line.strip() for line in lines if line.strip()][:_SNIFF_LINES] or [""]
    if first[:1] in ("{", "[") and _parses(first):
        return "array" if first.startswith("[") and complete and not rest else "lines"
    if first.startswith("{") and first.endswith("},"):
        return "comma_lines"
    if first.startswith("{") and (first.endswith("}") or (first != "{" and rest and rest[0].startswith("{") and _parses(rest[0]))):
        return "lines"  # one object per line, the first one broken
    if start == "[":
        return "array"
    return "objects" if start == "{" else "lines"


def has_lone_surrogate(value: Any) -> bool:
    """A `\\ud800`-style escape without its pair: valid JSON, but text no UTF-8 writer can store."""
    if isinstance(value, str):
        return _LONE_SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(has_lone_surrogate(k) or has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_lone_surrogate(v) for v in value)
    return False


def _json_lines(label: str, encoding: str, stream: BinaryIO, options: Mapping[str, Any],
                trailing_comma: bool) -> Iterator[ReadItem]:
    for item in decoded_lines(label, encoding, stream, options):
        if isinstance(item, ReadError):
            yield item
            continue
        number, text = item
        if not text.strip():
            continue
        where = f"line {number}"
        body = text.rstrip()
        if trailing_comma and body.endswith(","):
            body = body[:-1]
        try:
            value = json.loads(body)
        except (ValueError, RecursionError) as exc:
            yield ReadError(label, where, "bad_json", str(exc), cut(text))
            continue
        if "\\u" in body and has_lone_surrogate(value):
            yield ReadError(label, where, "bad_encoding", "lone UTF-16 surrogate escape", cut(text))
            continue
        yield RawRecord(label, where, value)


class _Bracketed(io.RawIOBase):
    """`[` + the inner bytes + `]`, one trailing comma dropped: a bracket-less array as an array."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner
        self._out = b"["
        self._held = b""  # trailing whitespace and commas, released when more data follows
        self._done = False
        self.last = b""   # the last significant byte: `}` unless the text was cut

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._out and not self._done:
            data = self._inner.read(CHUNK)
            if data:
                data = self._held + data
                body = data.rstrip(b" \t\r\n,")
                self._held = data[len(body):]
                self._out = body
                self.last = body[-1:] or self.last
            else:
                self._done = True
                tail = self._held.rstrip()
                self._out = tail.removesuffix(b",") + b"]"
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n


def _error_reason(exc: Exception, truncated: bool) -> str:
    message = str(exc)
    if "invalid bytes in UTF8" in message:
        return "bad_encoding"
    return "truncated_json" if truncated or "premature EOF" in message else "bad_json"


def _array(label: str, stream: BinaryIO) -> Iterator[ReadItem]:
    index = 0
    try:
        for value in ijson.items(stream, "item", use_float=True):
            yield RawRecord(label, f"element {index}", value)
            index += 1
    except ijson.JSONError as exc:
        yield ReadError(label, f"element {index}", _error_reason(exc, False), str(exc).strip(), "")


def _objects(label: str, stream: BinaryIO) -> Iterator[ReadItem]:
    bracketed = _Bracketed(stream)
    index = 0
    try:
        for value in ijson.items(buffered(bracketed), "item", use_float=True):
            yield RawRecord(label, f"element {index}", value)
            index += 1
    except ijson.JSONError as exc:
        reason = _error_reason(exc, bracketed.last not in (b"}", b"]"))
        yield ReadError(label, f"element {index}", reason, str(exc).strip(), "")


def _items(label: str, stream: BinaryIO) -> Iterator[ReadItem]:
    key = None
    try:
        for key, value in ijson.kvitems(stream, "", use_float=True):
            yield RawRecord(label, f"key {key}", {"__key__": key, "__value__": value})
    except ijson.JSONError as exc:
        where = f"after key {key}" if key is not None else "key 0"
        yield ReadError(label, where, _error_reason(exc, False), str(exc).strip(), "")


def parse_json(label: str, stream: BinaryIO, options: Mapping[str, Any]) -> Iterator[ReadItem]:
    """Records of one (decompressed) JSON-family stream; see the module docstring."""
    encoding, stream = decoded_stream(label, stream, options)
    head, stream = peek(stream)
    layout = sniff_layout(head.decode(encoding, errors="replace"), len(head) < SNIFF_BYTES, options)
    if layout in ("lines", "comma_lines"):
        yield from _json_lines(label, encoding, stream, options, layout == "comma_lines")
        return
    if encoding != "utf-8":
        stream = to_utf8(stream, encoding)
    if layout == "items":
        yield from _items(label, stream)
    elif layout == "array":
        yield from _array(label, stream)
    else:
        yield from _objects(label, stream)


@reader("json")
def read_json(files: list[SourceFile], options: dict[str, Any]) -> Iterator[ReadItem]:
    """JSON arrays, JSON Lines, keyed objects and bracket-less arrays, by content (module docstring)."""
    return read_members(files, options, parse_json)
