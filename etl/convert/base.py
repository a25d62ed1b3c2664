"""What a converter is: a small, registered, pure function from one raw record to unified rows.

A converter receives the record a reader produced and a `RecordContext`, and returns a list of
`Row`s (usually one). It raises `Reject` for a record that cannot become a valid row (the build
writes it to the rejects table with the reason code) and `Filtered` for a record that is valid
upstream data but deliberately not training material (counted by reason in the manifest).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from etl.catalog import Source, Task


class Reject(Exception):
    """A record that cannot be converted. `reason` is a short code such as `bad_json` or `empty_output`."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason
        self.message = message

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # rebuilt from its own arguments in a parent process
        return type(self), (self.reason, self.message)


class Filtered(Exception):
    """A well-formed record that is not training material (e.g. a negative answer candidate)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return type(self), (self.reason,)


@dataclass(frozen=True)
class ToolCall:
    """One call an assistant turn makes: the tool's name and its arguments as a JSON object string."""

    name: str
    arguments: str

    def as_dict(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class Turn:
    role: str  # system | user | assistant | tool
    content: str
    tool_calls: tuple[ToolCall, ...] = ()   # only on assistant turns that call tools (content may be "")

    def as_dict(self) -> dict[str, Any]:
        """`{role, content}`, plus `tool_calls` only on a turn that has them (plain turns stay as they were)."""
        turn: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            turn["tool_calls"] = [call.as_dict() for call in self.tool_calls]
        return turn


@dataclass
class Row:
    """A converted row before the build adds the common columns (id, source, license, lang...).

    Exactly the task's fields are set: `text` (pretrain), `messages` (sft), or `prompt`, `chosen`,
    `rejected` (reward; each of the last two one assistant turn). `tools` is the JSON list of tool schemas
    of a tool-calling row (sft or reward), None otherwise. `native_id` makes the id `{source}/{native_id}`; without it the id is a hash
    of the content. `split` overrides the file's split; `meta` collects upstream extras.
    """

    text: str | None = None
    messages: list[Turn] | None = None
    prompt: list[Turn] | None = None
    chosen: Turn | None = None
    rejected: Turn | None = None
    tools: str | None = None
    native_id: str | None = None
    split: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordContext:
    """Where a record came from, and the source's converter settings."""

    source: Source
    file: str          # path relative to the source folder
    location: str      # line 12, row 7, element 3, member x.csv line 4, ...
    split: str         # from the source's `splits:` globs

    @property
    def fields(self) -> dict[str, str]:
        return self.source.fields

    @property
    def options(self) -> dict[str, Any]:
        return self.source.options

    def field(self, name: str, default: str | None = None) -> str:
        """The upstream key for unified name `name`, as mapped by the source's `fields:`."""
        return self.source.fields.get(name, default if default is not None else name)


ConvertFn = Callable[[Any, RecordContext], Iterable[Row]]


@dataclass
class Shaped:
    """What a converter's column-wise twin (`columnwise`) makes of a batch of records.

    `ok[i]`: record i has the plain shape the columns describe; the others take the per-record path.
    For the ok records, in order: sft `lengths` (turns per record) with flat `roles`/`contents`, or
    pretrain `texts`; `natives` (upstream id or None) and `metas` (the `meta` column's JSON text)."""

    ok: list[bool]
    lengths: list[int] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    contents: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    natives: list[str | None] = field(default_factory=list)
    metas: list[str] = field(default_factory=list)

    def skip(self) -> None:
        """The next record takes the per-record path."""
        self.ok.append(False)

    def add_pair(self, question: str, answer: str, native: str | None, meta: str) -> None:
        """The next record is one user turn and its assistant reply (sft)."""
        self.ok.append(True)
        self.lengths.append(2)
        self.roles += ("user", "assistant")
        self.contents += (question, answer)
        self.natives.append(native)
        self.metas.append(meta)


# A batch of records → their flat columns, for converters whose output is a pure function of the
# record and the source's `fields:`/`options:` (see `columnwise`).
ColumnFn = Callable[[list[Any], Source], Shaped]


@dataclass(frozen=True)
class Converter:
    name: str
    fn: ConvertFn
    tasks: tuple[Task, ...]
    reader: str          # default reader name (see etl.read); a source's `reader:` overrides it
    version: int         # bump when output changes: part of the conversion cache key
    doc: str
    columns: ColumnFn | None = None  # the column-wise twin of `fn`, when there is one


_REGISTRY: dict[str, Converter] = {}


def converter(name: str, *, tasks: tuple[Task, ...], reader: str = "auto",
              version: int = 1) -> Callable[[ConvertFn], ConvertFn]:
    """Register a converter under `name` (the catalogue's `format:`)."""

    def register(fn: ConvertFn) -> ConvertFn:
        if name in _REGISTRY:
            raise RuntimeError(f"converter {name!r} registered twice")
        _REGISTRY[name] = Converter(name, fn, tasks, reader, version, (fn.__doc__ or "").strip())
        return fn

    return register


def columnwise(name: str) -> Callable[[ColumnFn], ColumnFn]:
    """Register the column-wise twin of converter `name`: it shapes a batch of records into columns
    and marks the records it cannot shape plainly, which then go through `fn` one by one. Its rows
    must equal `fn`'s (tests/test_convert_columnar.py compares both on every catalogued fixture)."""

    def register(fn: ColumnFn) -> ColumnFn:
        _REGISTRY[name] = replace(_REGISTRY[name], columns=fn)
        return fn

    return register


def registry() -> dict[str, Converter]:
    from etl import convert  # noqa: F401  (importing the package registers every converter module)

    return dict(_REGISTRY)


def get_converter(name: str) -> Converter:
    converters = registry()
    if name not in converters:
        raise KeyError(f"unknown converter {name!r}")
    return converters[name]
