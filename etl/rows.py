"""From a converter's `Row` to a validated output row: ids, common columns, and the semantic checks
JSON Schema cannot express (role order, tool-call turns, chosen ≠ rejected). A row that fails becomes a reject."""

from __future__ import annotations

import hashlib
import json
import re
from json.encoder import encode_basestring  # what json.dumps(ensure_ascii=False) quotes a string with
from typing import Any

from etl.catalog import Source
from etl.convert.base import Reject, Row, Turn
from etl.convert.fieldtools import meta_json
from etl.schemas import schema_problem
from etl.seen import NativeIds, SeenKeys, digest_key

TASK_FIELDS = {"pretrain": ("text",), "sft": ("messages", "tools"), "reward": ("prompt", "chosen", "rejected", "tools")}

# Visible content: anything but white space and C0/C1 control characters, which normalisation removes
# from stored text; a turn made only of those would be empty in the output.
_VISIBLE = re.compile(r"[^\s\x00-\x1f\x7f-\x9f]")


def has_content(text: str) -> bool:
    return _VISIBLE.search(text) is not None


def _turns(turns: list[Turn]) -> list[dict[str, Any]]:
    return [t.as_dict() for t in turns]


# What may follow each kind of turn; a `call` is an assistant turn with tool calls.
_NEXT = {"user": ("assistant", "call"), "assistant": ("user",), "call": ("tool",), "tool": ("tool", "assistant", "call")}


def _kind(turn: Turn) -> str:
    return "call" if turn.tool_calls else turn.role


def _check_order(turns: list[Turn], where: str, last: tuple[str, ...], offset: int = 0) -> None:
    """The turn grammar after the optional system turn: user, then an assistant reply; an assistant turn with
    tool calls (a `call`) is followed by one or more `tool` turns (the results), then the assistant goes on.
    `last` names the kinds the conversation may end on; `offset` numbers turns as in the whole list."""
    expected: tuple[str, ...] = ("user",)
    for index, turn in enumerate(turns):
        if turn.tool_calls and turn.role != "assistant":
            raise Reject("bad_tool_call", f"{where}turn {index + offset} is {turn.role} but holds tool calls")
        if _kind(turn) not in expected:
            shown = [k for k in expected if k != "call"]  # an assistant reply may be a call: say assistant
            raise Reject("bad_role_order", f"{where}turn {index + offset} is {_kind(turn)}, expected {' or '.join(shown)}")
        expected = _NEXT.get(_kind(turn), ())
    end = _kind(turns[-1])
    if end not in last:
        if last == ("assistant",):
            raise Reject("ends_without_answer", f"the conversation ends on a {end} turn")
        raise Reject("bad_role_order", f"the {where.strip()} must end on a {' or '.join(last)} turn")


def _body(turns: list[Turn]) -> list[Turn]:
    return turns[1:] if turns and turns[0].role == "system" else turns


def _check_sft(messages: list[Turn]) -> None:
    if not messages:
        raise Reject("empty_conversation", "no turns")
    body = _body(messages)
    if not body:
        raise Reject("empty_conversation", "only a system turn")
    _check_order(body, "", ("assistant",), len(messages) - len(body))
    _check_contents(messages)


def _check_contents(turns: list[Turn]) -> None:
    for index, turn in enumerate(turns):
        if turn.tool_calls:  # a call may come without text
            for call in turn.tool_calls:
                if not has_content(call.name):
                    raise Reject("bad_tool_call", f"turn {index} calls a tool with no name")
            continue
        if not has_content(turn.content):
            reason = "empty_output" if turn.role == "assistant" else "empty_input"
            raise Reject(reason, f"turn {index} ({turn.role}) is empty")


def _check_reward(prompt: list[Turn], chosen: Turn, rejected: Turn) -> None:
    body = _body(prompt)
    if not body:
        raise Reject("empty_prompt", "the prompt has no user turn")
    _check_order(body, "prompt ", ("user", "tool"))
    _check_contents(prompt)
    for which, reply in (("chosen", chosen), ("rejected", rejected)):
        if reply.role != "assistant":
            raise Reject("bad_role_order", f"{which} is a {reply.role} turn, expected assistant")
        if not reply.tool_calls and not has_content(reply.content):
            raise Reject("empty_output", f"{which} is empty")
        _check_contents([reply])
    if chosen.content.strip() == rejected.content.strip() and chosen.tool_calls == rejected.tool_calls:
        raise Reject("chosen_equals_rejected", "chosen and rejected are the same reply")


def task_payload(task: str, row: Row) -> dict[str, Any]:
    """The task columns of `row`, checked for meaning. Raises Reject."""
    if task == "pretrain":
        if row.text is None or not has_content(row.text):
            raise Reject("empty_text", "the document is empty")
        return {"text": row.text}
    if task == "sft":
        _check_sft(row.messages or [])
        return {"messages": _turns(row.messages or []), "tools": row.tools}
    if task == "reward":
        if row.prompt is None or row.chosen is None or row.rejected is None:
            raise Reject("missing_field", "a preference row needs prompt, chosen and rejected")
        _check_reward(row.prompt, row.chosen, row.rejected)
        return {"prompt": _turns(row.prompt), "chosen": [row.chosen.as_dict()], "rejected": [row.rejected.as_dict()],
                "tools": row.tools}
    raise ValueError(f"unknown task {task!r}")


_CANONICAL = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def canonical_turns(turns: list[dict[str, str]]) -> str:
    """`[{role, content}, ...]` as `json.dumps(..., ensure_ascii=False, sort_keys=True, separators=(",", ":"))`
    writes it, without the general encoder's per-call cost."""
    return "[" + ",".join('{"content":' + encode_basestring(t["content"]) + ',"role":' + encode_basestring(t["role"]) + "}"
                          for t in turns) + "]"


def canonical_json(payload: dict[str, Any]) -> str:
    """The canonical JSON text of a task payload, the input of its content hash. The common payloads
    (`{text}`, `{messages}`) take a direct route that yields the same text as the general encoder."""
    if len(payload) == 1:
        if type(payload.get("text")) is str:
            return '{"text":' + encode_basestring(payload["text"]) + "}"
        turns = payload.get("messages")
        if type(turns) is list and all(type(t) is dict and len(t) == 2 and type(t.get("role")) is str
                                       and type(t.get("content")) is str for t in turns):
            return '{"messages":' + canonical_turns(turns) + "}"
    return _CANONICAL.encode(payload)


def hash_text(canonical: str) -> str:
    """The 16-hex content hash of a canonical text; Reject `bad_encoding` when it is not storable UTF-8."""
    try:
        data = canonical.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: not text that Parquet (UTF-8) can store
        raise Reject("bad_encoding", f"text holds a lone surrogate {canonical[exc.start]!r}") from None
    return hashlib.sha1(data).hexdigest()[:16]


def content_hash(payload: dict[str, Any]) -> str:
    """Hash of the task columns; a null `tools` is left out, so plain rows keep the ids they always had."""
    return hash_text(canonical_json({key: value for key, value in payload.items() if value is not None}))


_SPLITS = frozenset(("train", "validation", "test"))
_ROLES = frozenset(("system", "user", "assistant", "tool"))


def _plain_turns(turns: Any, least: int, most: int | None = None) -> bool:
    return (type(turns) is list and least <= len(turns) <= (most or len(turns))
            and all(type(t) is dict and len(t) == 2 and t.get("role") in _ROLES and type(t.get("content")) is str
                    and has_content(t["content"]) for t in turns))


def plain_row(task: str, out: dict[str, Any]) -> bool:
    """The columns of `out` that vary from row to row have, by hand, the shape its JSON Schema asks for,
    with plain turns only (no tool calls). Then the schema holds for the row if it held for another row of
    the same source and split (the other columns are the same), and `RowBuilder.build` skips the validator,
    which is most of a row's cost. Anything else (a tool call, an odd value) is validated in full."""
    if type(out["id"]) is not str or not out["id"] or out["split"] not in _SPLITS or type(out["meta"]) is not str:
        return False
    if task == "pretrain":
        return type(out["text"]) is str and has_content(out["text"])   # has_content implies minLength 1 and the pattern \S
    if out["tools"] is not None and type(out["tools"]) is not str:
        return False
    if task == "sft":
        return _plain_turns(out["messages"], 2)
    return task == "reward" and _plain_turns(out["prompt"], 1) and all(
        _plain_turns(out[side], 1, 1) for side in ("chosen", "rejected"))


class RowBuilder:
    """Turns converter rows of one source into output rows, keeping ids unique within the source.

    `log`: keep, in order, every content hash that numbered an id (`hash_log`) and every native id
    that was claimed (`native_log`), so that the ids of a source converted in pieces can be renumbered
    as one pass would have numbered them (etl/conversion.py, `merge_units`)."""

    def __init__(self, source: Source, log: bool = False) -> None:
        self.source = source
        self._native_seen = NativeIds()
        self._hash_seen = SeenKeys()
        self.hash_log: list[str] | None = [] if log else None
        self.native_log: list[str] | None = [] if log else None
        self._validated_splits: set[str] = set()

    def has_native(self, native: str) -> bool:
        return native in self._native_seen

    def assign_id(self, digest: str, native: Any) -> str:
        """The row's id from its native id or its content hash. Raises Reject `duplicate_id`."""
        source = self.source
        if native is not None:
            native = str(native)
            if native in self._native_seen:
                raise Reject("duplicate_id", f"native id {native!r} already seen in this source")
            self._native_seen.add(native)
            if self.native_log is not None:
                self.native_log.append(native)
            return f"{source.id}/{native}"
        # Identical content repeats inside sources (Toyhom ships 378 duplicate rows); ids stay
        # unique by order of appearance, and dedup later collapses the copies.
        count = self._hash_seen.add(digest_key(digest))
        if self.hash_log is not None:
            self.hash_log.append(digest)
        return f"{source.id}/{digest}" if count == 1 else f"{source.id}/{digest}-{count}"

    def build(self, row: Row, file_split: str) -> dict[str, Any]:
        source = self.source
        payload = task_payload(source.task, row)
        digest = content_hash(payload)  # also rejects text that cannot be stored as UTF-8
        row_id = self.assign_id(digest, row.native_id)
        split = row.split or file_split
        out = {
            "id": row_id,
            "source": source.id,
            "split": split,
            **payload,
            "lang": "und",
            "lang_score": 0.0,
            "license": source.license,
            "dup_count": 1,
            "meta": meta_json(row.meta),
        }
        if split in self._validated_splits and plain_row(source.task, out):
            return out  # the constant columns passed the schema on this split's first row
        problem = schema_problem(source.task, out)
        if problem:
            raise Reject("schema_violation", problem)
        self._validated_splits.add(split)
        return out
