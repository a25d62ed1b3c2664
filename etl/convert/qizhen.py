"""QiZhenGPT's drug-indication evaluation CSV: the indication column is an HTML fragment."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from etl.convert.base import RecordContext, Reject, Row, Turn, converter
from etl.convert.fieldtools import get_str, require_mapping, rest_as_meta

_BLOCK_TAGS = {"p", "br", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"}


class _CellText(HTMLParser):
    """Text of an HTML fragment, one line per block element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_cell_text(fragment: str) -> str:
    """`<p>a</p><p>b&amp;c</p>` → `a\\nb&c`: tags dropped, entities decoded, blank lines removed."""
    parser = _CellText()
    parser.feed(fragment)
    parser.close()
    lines = (line.strip() for line in "".join(parser.parts).split("\n"))
    return "\n".join(line for line in lines if line)


@converter("qizhen_drug_eval", tasks=("sft",), reader="csv")
def qizhen_drug_eval(record: Any, ctx: RecordContext) -> list[Row]:
    """`instruction` (`{药品}的适应病症`) → the label text of `药品适应症` (HTML → text); the drug and
    the expert-annotated indications (`|`-joined) go to meta."""
    record = require_mapping(record)
    question = get_str(record, "instruction").strip()
    answer = html_cell_text(get_str(record, "药品适应症"))
    if not answer:
        raise Reject("empty_answer", "the indication cell has no text")
    gold = [x.strip() for x in get_str(record, "医学专家标注的适应病症", required=False).split("|") if x.strip()]
    meta = {"drug": get_str(record, "药品").strip(), "expert_indications": gold,
            **rest_as_meta(record, ("instruction", "药品适应症", "医学专家标注的适应病症", "药品"))}
    return [Row(messages=[Turn("user", question), Turn("assistant", answer)], meta=meta)]
