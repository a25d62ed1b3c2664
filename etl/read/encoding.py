"""Text encodings: one guess per file from a sample, then line-by-line decoding so that a bad line costs
one record, not the file.

Detection order: a declared encoding (`options["encoding"]`) wins; then a BOM; then UTF-8 when the
sample is mostly valid UTF-8; then charset-normalizer; then GB18030 when the sample decodes strictly in it. Any GB2312/GBK guess is widened to
GB18030, a superset: Toyhom's "GBK" CSVs hold characters (`—`, `·`, 黃) that GB2312 cannot decode.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

from charset_normalizer import from_bytes

from etl.read.base import ReadError, SourceFileError, cut
from etl.read.streams import MAX_LINE_BYTES, iter_lines, peek, to_utf8

_BOMS = (  # UTF-32 LE first: its BOM starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_GB_FAMILY = {"gb2312", "gbk", "gb18030"}  # codecs.lookup names; cp936 and euc-cn map onto these
_UTF8_NAMES = {"utf-8", "utf-8-sig"}
ENCODING_SAMPLE = 1 << 16  # bytes from a file's head that decide its encoding
_ESCAPED = re.compile("[\udc80-\udcff]")
_WIDE = re.compile("[^\x00-\x7f]")


def canonical(name: str) -> str:
    """Python's name for an encoding, GB2312/GBK widened to gb18030. Raises LookupError if unknown."""
    codec = codecs.lookup(name).name
    return "gb18030" if codec in _GB_FAMILY else codec


def _mostly_utf8(sample: bytes) -> bool:
    """Valid UTF-8, allowing a character cut at the end of the sample and corrupt bytes when valid
    multi-byte characters outnumber them (one bad line should not flip a file to a legacy codec).
    GBK text read as UTF-8 has three to four invalid bytes per accidentally valid character."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
    text = decoder.decode(sample, final=False)  # holds back a character cut by the sample's end
    bad = len(_ESCAPED.findall(text))
    if bad == 0:
        return True
    wide = len(_WIDE.findall(text)) - bad
    return bad < wide


def detect_encoding(sample: bytes, declared: str | None = None) -> str:
    """The encoding of a file whose first bytes are `sample` (see the module docstring)."""
    if declared:
        return canonical(declared)
    for bom, name in _BOMS:
        if sample.startswith(bom):
            return name
    if _mostly_utf8(sample):
        return "utf-8"
    best = from_bytes(sample).best()
    if best is not None:
        return canonical(best.encoding)
    # charset-normalizer gives up on some long mixed Chinese/English GBK lines (its "chaos" measure);
    # a sample that is strict GB18030 throughout is GB18030, far likelier than anything else here.
    return "gb18030" if _strict(sample, "gb18030") else "utf-8"


def _strict(sample: bytes, encoding: str) -> bool:
    """`sample` decodes in `encoding` without an error, allowing a character cut at its end."""
    try:
        codecs.getincrementaldecoder(encoding)().decode(sample, final=False)
    except UnicodeDecodeError:
        return False
    return True


def decoded_stream(label: str, stream: BinaryIO, options: Mapping[str, Any]) -> tuple[str, BinaryIO]:
    """Detect the encoding of `stream` and return `(encoding, bytes)` where the bytes start after any
    BOM and are in an ASCII-compatible encoding (UTF-16/32 are transcoded to UTF-8), so that they can
    be split on b"\\n" and decoded line by line with `encoding`."""
    head, stream = peek(stream, ENCODING_SAMPLE)
    try:
        encoding = detect_encoding(head, options.get("encoding"))
    except LookupError as exc:
        raise SourceFileError(label, "unknown_encoding", str(exc)) from exc
    if encoding in _UTF8_NAMES:
        if head.startswith(codecs.BOM_UTF8):
            stream.read(len(codecs.BOM_UTF8))
        return "utf-8", stream
    if encoding.startswith(("utf-16", "utf-32")):
        return "utf-8", to_utf8(stream, encoding)
    return encoding, stream


def strip_eol(text: str) -> str:
    return text.rstrip("\r\n")


def decoded_lines(label: str, encoding: str, stream: BinaryIO,
                  options: Mapping[str, Any]) -> Iterator[tuple[int, str] | ReadError]:
    """Lines of a stream prepared by `decoded_stream`, without their terminators, as `(number, text)`.
    A line that is too long or not valid in `encoding` becomes a ReadError (`line_too_long`,
    `bad_encoding`) and the next lines go on."""
    for line in iter_lines(stream, int(options.get("max_line_bytes", MAX_LINE_BYTES))):
        where = f"line {line.number}"
        if line.too_long:
            yield ReadError(label, where, "line_too_long", "line longer than the reader's bound", cut(line.data))
            continue
        try:
            text = line.data.decode(encoding)
        except UnicodeDecodeError as exc:
            yield ReadError(label, where, "bad_encoding", f"not valid {encoding}: {exc.reason} at byte {exc.start}",
                            cut(line.data))
            continue
        yield line.number, strip_eol(text)


def text_lines(label: str, stream: BinaryIO, options: Mapping[str, Any]) -> Iterator[tuple[int, str] | ReadError]:
    """`decoded_lines` of a raw byte stream, its encoding detected (or declared)."""
    encoding, stream = decoded_stream(label, stream, options)
    return decoded_lines(label, encoding, stream, options)
