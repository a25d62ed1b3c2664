"""Reader `json`: JSON arrays, JSON Lines and their malformed cousins, told apart by content.

Upstream `.json` files are arrays, JSON Lines, or neither, whatever the extension says. The layout is
sniffed from the first non-blank lines of each (decompressed) file:

* `{` and `options["json_object"] == "items"`: one object whose members are the records (PubMedQA,
  keyed by PMID), streamed member by member as `{"__key__": key, "__value__": value}`, location `key K`
  (a member that cannot be read: `after key K`, the last good key);
* the first line is a whole JSON value and more follows (or it is an object): JSON Lines, location
  `line N` (1-based), blank lines skipped; one bad line is a `bad_json` reject and the next go on;
* the first line is an object followed by a comma: the bracket-less pseudo-array, one object per line
  (X-jun harmlessness.json), read as JSON Lines with the trailing comma dropped;
* a broken first line that starts with `{` and ends with `}`, or is followed by a whole JSON object on
  one line, is JSON Lines too; so is a first line longer than the sniffed head that starts with `{`,
  unless its first object ends within the head and a comma follows (a one-line bracket-less array);
* `[`: an array streamed element by element, location `element N` (0-based);
* `{` otherwise (a pretty-printed object, or objects separated by commas without `[ ]`): read as an
  array whose brackets are missing, a trailing comma dropped, so a lone object is one record
  (`element 0`).

Arrays, bracket-less arrays and `items` objects are cut into elements (members) by a small tokenizer
that tracks strings and nesting, and each element is parsed on its own, so a bad element costs only
itself: invalid UTF-8 or a lone surrogate escape (`\\ud800`) is `bad_encoding`, anything else that
does not parse (a raw control character, a missing comma) is `bad_json`, an element longer than
`options["max_line_bytes"]` characters is `record_too_long` (never held whole), and reading goes on at
the next element. A file cut mid-element yields its complete elements, then one `truncated_json`
reject with the partial text. Memory is bounded by one element plus a read chunk. Numbers are int or
float, never Decimal.
"""

from __future__ import annotations

import codecs
import io
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

from etl.read.base import RAW_LIMIT, RawRecord, ReadError, ReadItem, SourceFile, cut, reader
from etl.read.containers import read_members
from etl.read.encoding import decoded_lines, decoded_stream
from etl.read.streams import MAX_LINE_BYTES, SNIFF_BYTES, peek, to_utf8

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SPACE = re.compile(r"[ \t\r\n]*")
_STRUCTURE = re.compile(r'[][{}",]')
_IN_STRING = re.compile(r'["\\]')
_SNIFF_LINES = 3
_READ_SIZE = 1 << 20  # bytes decoded at a time
_MARGIN = 1 << 16     # characters kept ahead of an element, so most elements parse in one go
_scan = json.JSONDecoder().scan_once  # (text, index) -> (value, end); StopIteration when no value starts there


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
        if start == "{" and not any(line.strip() for line in lines[:-1]):
            return _sniff_long_first_line(lines[-1])
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


def _sniff_long_first_line(line: str) -> str:
    """The layout of a document whose first line, starting with `{`, is longer than the sniffed head
    (`line`: as much of it as was read): JSON Lines, unless its first object ends there followed by a
    comma, which makes it a one-line bracket-less array."""
    window = _Window(io.BytesIO(line.encode("utf-8", errors="surrogateescape")))
    window.skip_space()
    end, _ = _cut(window, None, len(line))
    return "objects" if end == "boundary" else "lines"


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


class _Window:
    """The decoded text of a UTF-8 byte stream, read ahead chunk by chunk; `buf[pos:]` is not consumed
    yet. Undecodable bytes stay in the text as lone surrogates (`surrogateescape`), so that they cost
    the element holding them, not the file. `escaped`: `buf` may hold such bytes; `escapes`: `buf` holds
    a `\\ud800`-style surrogate escape (most files have neither, and most elements need no check)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.escaped = False
        self.escapes = False

    def more(self) -> bool:
        """Drop the consumed text and append the next chunk; False once the stream is exhausted."""
        if self.eof:
            return False
        data = self._stream.read(_READ_SIZE)
        self.eof = not data
        kept = self.buf[self.pos:]
        self.escaped = self.escaped and _LONE_SURROGATE.search(kept) is not None
        try:
            text = self._decoder.decode(data, final=self.eof)
        except UnicodeDecodeError:  # the decoder's state is unchanged: decode again, keeping the bad bytes
            self._decoder.errors = "surrogateescape"
            text = self._decoder.decode(data, final=self.eof)
            self._decoder.errors = "strict"
            self.escaped = True
        self.buf = kept + text
        self.pos = 0
        self.escapes = _SURROGATE_ESCAPE.search(self.buf) is not None
        return True

    def skip_space(self) -> bool:
        """Move `pos` past white space; False at the end of the text."""
        while True:
            self.pos = _SPACE.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return True
            if not self.more():
                return False


def _cut(window: _Window, closer: str | None, limit: int) -> tuple[str, str]:
    """The element starting at `window.pos`: the text up to the next `,` or `closer` outside strings and
    brackets, where `window.pos` is left. Returns `(end, text)` where `end` is `boundary`, `eof` (the
    text ends after the element, outside any string or bracket), `cut` (the text ends inside it) or
    `too_long` (longer than `limit` characters: `text` is its start, the rest was skipped unread)."""
    depth = 0
    in_string = False
    head: str | None = None
    i = window.pos
    while True:
        buf = window.buf
        n = len(buf)
        while i < n:
            if in_string:
                match = _IN_STRING.search(buf, i)
                if match is None:
                    i = n
                elif match.group() == '"':
                    in_string = False
                    i = match.end()
                elif match.end() < n:
                    i = match.end() + 1  # the escaped character
                else:
                    break  # a backslash at the end of the text read so far: look again with more
                continue
            match = _STRUCTURE.search(buf, i)
            if match is None:
                i = n
                continue
            char = match.group()
            if char == '"':
                in_string = True
            elif char in "[{":
                depth += 1
            elif depth:
                if char != ",":
                    depth -= 1
            elif char == "," or char == closer:
                if head is None and match.start() - window.pos > limit:
                    head = buf[window.pos:window.pos + RAW_LIMIT]
                text = head if head is not None else buf[window.pos:match.start()].rstrip(" \t\r\n")
                window.pos = match.start()
                return ("too_long" if head is not None else "boundary"), text
            i = match.end()
        if head is None and i - window.pos > limit:
            head = buf[window.pos:window.pos + RAW_LIMIT]
        if head is not None:
            window.pos = i  # what was scanned is no longer needed
        offset = i - window.pos
        if not window.more():
            text = head if head is not None else window.buf[window.pos:].rstrip(" \t\r\n")
            window.pos = len(window.buf)
            return ("too_long" if head is not None else "cut" if depth or in_string else "eof"), text
        i = window.pos + offset


def _raw(text: str) -> str:
    """Reject text: undecodable bytes (kept as lone surrogates) shown as replacement characters."""
    return cut(text[:RAW_LIMIT].encode("utf-8", errors="surrogateescape"))


def _undecodable(text: str, encoding: str) -> str:
    """The message for an element holding undecodable bytes (kept in `text` as lone surrogates)."""
    if encoding == "utf-8":
        try:
            text.encode("utf-8", errors="surrogateescape").decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"not valid utf-8: {exc.reason} at byte {exc.start} of the element"
    return f"not valid {encoding}"


class _Elements:
    """Records of an `array`, a bracket-less array (`objects`) or an `items` object (module docstring)."""

    def __init__(self, label: str, stream: BinaryIO, options: Mapping[str, Any], encoding: str,
                 layout: str) -> None:
        self.label = label
        self.window = _Window(stream)
        self.encoding = encoding
        self.items = layout == "items"
        self.opener, self.closer = {"array": ("[", "]"), "items": ("{", "}"), "objects": ("", None)}[layout]
        self.limit = int(options.get("max_line_bytes", MAX_LINE_BYTES))
        self.index = 0
        self.last_key: str | None = None  # items: the key of the last member read
        self.finished = False             # the text ended inside an element

    def where(self) -> str:
        if self.items:
            return f"after key {self.last_key}" if self.last_key is not None else "key 0"
        return f"element {self.index}"

    def error(self, reason: str, message: str, text: str, key: str | None = None) -> ReadError:
        where = f"key {key}" if key is not None else self.where()  # a member whose key could be read
        return ReadError(self.label, where, reason, message, _raw(text))

    def record(self, value: Any) -> RawRecord:
        if not self.items:
            return RawRecord(self.label, f"element {self.index}", value)
        key, member = value
        self.last_key = key
        return RawRecord(self.label, f"key {key}", {"__key__": key, "__value__": member})

    def __iter__(self) -> Iterator[ReadItem]:
        window, closer = self.window, self.closer
        if not window.skip_space():
            return
        if self.opener:
            if window.buf[window.pos] != self.opener:
                yield self.error("bad_json", f"expected {self.opener!r} at the start", window.buf[window.pos:])
                return
            window.pos += 1
        separated = True
        while True:
            if len(window.buf) - window.pos < _MARGIN:
                window.more()
            if not window.skip_space():
                if closer:
                    yield self.error("truncated_json", f"premature EOF: the file ends before the closing {closer!r}", "")
                return
            if window.buf[window.pos] == closer:  # after the last element, a trailing comma, or none
                window.pos += 1
                if window.skip_space():
                    yield self.error("bad_json", f"extra data after the closing {closer!r}", window.buf[window.pos:])
                return
            yield (self.fast() if separated else None) or self.slow(separated)
            if self.finished:
                return
            self.index += 1
            buf, pos = window.buf, window.pos  # past the element and any white space after it
            separated = pos < len(buf) and buf[pos] == ","
            if separated:
                window.pos = pos + 1

    def fast(self) -> ReadItem | None:
        """The element at the window's position if it parses where it stands and is complete, else None."""
        window = self.window
        buf, pos = window.buf, window.pos
        try:
            if self.items:
                key, end = _scan(buf, pos)
                end = _SPACE.match(buf, end).end()  # type: ignore[union-attr]
                if not isinstance(key, str) or not buf.startswith(":", end):
                    return None
                member, end = _scan(buf, _SPACE.match(buf, end + 1).end())  # type: ignore[union-attr]
                value: Any = [key, member]  # a list, as has_lone_surrogate walks lists
            else:
                value, end = _scan(buf, pos)
        except (StopIteration, ValueError, RecursionError):
            return None
        after = _SPACE.match(buf, end).end()  # type: ignore[union-attr]
        if after == len(buf) and not window.eof:
            return None  # it may go on in the next chunk (a number), or no separator can be seen yet
        window.pos = after
        key = value[0] if self.items else None
        if end - pos > self.limit:
            return self.error("record_too_long", f"longer than the reader's bound ({self.limit} characters)",
                              buf[pos:end], key)
        if window.escaped and _LONE_SURROGATE.search(buf, pos, end):
            return self.error("bad_encoding", _undecodable(buf[pos:end], self.encoding), buf[pos:end], key)
        if window.escapes and _SURROGATE_ESCAPE.search(buf, pos, end) and has_lone_surrogate(value):
            return self.error("bad_encoding", "lone UTF-16 surrogate escape", buf[pos:end], key)
        if self.items:
            return self.record(value)
        return RawRecord(self.label, f"element {self.index}", value)

    def slow(self, separated: bool) -> ReadItem:
        """The element at the window's position, cut by the tokenizer and parsed on its own (`separated`:
        a comma came before it)."""
        end, text = _cut(self.window, self.closer, self.limit)
        if end == "too_long":
            return self.error("record_too_long", f"longer than the reader's bound ({self.limit} characters)", text)
        if end == "cut" or (end == "eof" and self.closer):
            self.finished = True
            return self.error("truncated_json", "premature EOF: the file ends inside this element", text)
        if _LONE_SURROGATE.search(text):
            return self.error("bad_encoding", _undecodable(text, self.encoding), text)
        try:
            value = json.loads("{" + text + "}" if self.items else text)
        except (ValueError, RecursionError) as exc:
            return self.error("bad_json", str(exc), text)
        if self.items and len(value) != 1:
            return self.error("bad_json", 'expected one `"key": value` member', text)
        if not separated:
            return self.error("bad_json", "no comma before this element", text)
        if "\\u" in text and has_lone_surrogate(value):
            return self.error("bad_encoding", "lone UTF-16 surrogate escape", text)
        return self.record(next(iter(value.items())) if self.items else value)


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
    yield from _Elements(label, stream, options, encoding, layout)


@reader("json")
def read_json(files: list[SourceFile], options: dict[str, Any]) -> Iterator[ReadItem]:
    """JSON arrays, JSON Lines, keyed objects and bracket-less arrays, by content (module docstring)."""
    return read_members(files, options, parse_json)
