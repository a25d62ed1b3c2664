"""Identity Q&A (who am I, who made me) for the model being trained, from templates shipped in the package
(`etl/data/persona/identity.jsonl`, Chinese and English) with `<NAME>` and `<AUTHOR>` placeholders.

Contract with the build: it copies `build.persona` (`{name, author}`) into this source's
`options["persona"]`. With neither set, every record is Filtered(`no_persona_configured`) and the build says
so; a row that would still hold a placeholder (e.g. `<AUTHOR>` while only `name` is set) is rejected as
`unfilled_placeholder`, so a half-configured persona never teaches the model a literal `<AUTHOR>`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from etl.convert.base import Filtered, RecordContext, Reject, Row, Turn, converter
from etl.convert.fieldtools import get_str, require_mapping

PLACEHOLDERS = {"<NAME>": "name", "<AUTHOR>": "author"}
_ANY_PLACEHOLDER = re.compile(r"<(?:NAME|AUTHOR)>")


def persona_values(options: Mapping[str, Any]) -> dict[str, str]:
    """The configured persona fields, as `{placeholder: value}`, empty values left out."""
    persona = options.get("persona")
    if persona is None:
        return {}
    values: dict[str, str] = {}
    for placeholder, key in PLACEHOLDERS.items():
        value = persona.get(key) if isinstance(persona, Mapping) else getattr(persona, key, None)
        if isinstance(value, str) and value.strip():
            values[placeholder] = value.strip()
    return values


@converter("persona", tasks=("sft",), reader="json")
def persona(record: Any, ctx: RecordContext) -> list[Row]:
    """`{id, lang, query, response}` templates → one user/assistant exchange with the persona filled in."""
    values = persona_values(ctx.options)
    if not values:
        raise Filtered("no_persona_configured")
    record = require_mapping(record)
    k_q, k_r = ctx.field("query"), ctx.field("response")
    query, response = get_str(record, k_q), get_str(record, k_r)
    for placeholder, value in values.items():
        query, response = query.replace(placeholder, value), response.replace(placeholder, value)
    left = sorted(set(_ANY_PLACEHOLDER.findall(query + response)))
    if left:
        raise Reject("unfilled_placeholder", f"{', '.join(left)} not configured in build.persona")
    template_id = get_str(record, "id", required=False) or None
    return [Row(messages=[Turn("user", query), Turn("assistant", response)], native_id=template_id,
                meta={"template_id": template_id, "lang": record.get("lang")})]
