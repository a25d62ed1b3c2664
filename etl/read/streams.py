"""Byte-stream plumbing shared by the readers: look at a stream's head without consuming it, transcode
a non-ASCII-compatible encoding to UTF-8, and split a stream into bounded physical lines."""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

CHUNK = 1 << 16
MAX_LINE_BYTES = 64 * 1024 * 1024  # a longer line is reported, never held whole (options["max_line_bytes"])
SNIFF_BYTES = 1 << 20              # head read to sniff container, format and encoding


class _Replay(io.RawIOBase):
    """`head` followed by the rest of `inner`: what a stream looked like before we read its head."""

    def __init__(self, head: bytes, inner: BinaryIO) -> None:
        self._head = memoryview(head)
        self._inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def buffered(raw: io.RawIOBase) -> BinaryIO:
    return io.BufferedReader(raw, buffer_size=CHUNK)  # type: ignore[return-value]


def peek(stream: BinaryIO, size: int = SNIFF_BYTES) -> tuple[bytes, BinaryIO]:
    """Read up to `size` bytes and return them with a stream that still starts at the beginning."""
    parts: list[bytes] = []
    need = size
    while need > 0:
        data = stream.read(need)
        if not data:
            break
        parts.append(data)
        need -= len(data)
    head = b"".join(parts)
    return head, buffered(_Replay(head, stream))


class _Utf8Transcoder(io.RawIOBase):
    """A stream in `encoding` re-encoded as UTF-8. Undecodable bytes become lone surrogates, which
    re-encode to invalid UTF-8: the line that holds them is then reported as `bad_encoding`."""

    def __init__(self, inner: BinaryIO, encoding: str) -> None:
        self._inner = inner
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="surrogateescape")
        self._pending = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending and not self._eof:
            data = self._inner.read(CHUNK)
            self._eof = not data
            text = self._decoder.decode(data, final=self._eof)
            self._pending = text.encode("utf-8", errors="surrogatepass")
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def to_utf8(stream: BinaryIO, encoding: str) -> BinaryIO:
    return buffered(_Utf8Transcoder(stream, encoding))


class Line(NamedTuple):  # a tuple: millions are made per file
    number: int      # 1-based physical line number
    data: bytes      # the line with its terminator; for a too-long line, only its first bytes
    too_long: bool = False


def iter_lines(stream: BinaryIO, max_bytes: int = MAX_LINE_BYTES) -> Iterator[Line]:
    """Physical lines split on LF (CR stays with the line). A line longer than `max_bytes` is skipped
    to its end while holding at most `max_bytes` of it, and comes back with `too_long` set."""
    number = 0
    while True:
        data = stream.readline(max_bytes + 1)
        if not data:
            return
        number += 1
        if len(data) <= max_bytes or data.endswith(b"\n"):
            yield Line(number, data)
            continue
        head = data[:CHUNK]
        del data
        while True:
            rest = stream.readline(CHUNK)
            if not rest or rest.endswith(b"\n"):
                break
        yield Line(number, head, too_long=True)
