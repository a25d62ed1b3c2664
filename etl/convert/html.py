"""Saved web pages → pretraining text: the main content extracted with trafilatura (navigation, headers,
footers, sidebars and comments dropped). The page's own canonical URL and title, when it declares them,
go to `meta`. Fetching (robots.txt, rate limits) is the http fetcher's job, not this converter's."""

from __future__ import annotations

from copy import deepcopy
from functools import cache
from typing import Any

from etl.convert.base import RecordContext, Reject, Row, converter

MIN_CHARS = 50


@cache
def _trafilatura() -> tuple[Any, Any]:
    """trafilatura and its config, imported on first use (a second to import; only HTML sources need it)."""
    import trafilatura
    from trafilatura.settings import DEFAULT_CONFIG

    # trafilatura's timeout uses SIGALRM, which only works in the main thread: the build may convert elsewhere.
    config = deepcopy(DEFAULT_CONFIG)
    config["DEFAULT"]["EXTRACTION_TIMEOUT"] = "0"
    return trafilatura, config


@converter("html", tasks=("pretrain",), reader="html")
def html(record: Any, ctx: RecordContext) -> list[Row]:
    """One saved HTML page (the whole decoded file) → its main text. Options: `min_chars` (default 50): a
    page whose extracted text is shorter has no main content (error pages, navigation-only pages);
    `include_tables` (default true)."""
    if isinstance(record, bytes):
        record = record.decode("utf-8", errors="replace")
    if not isinstance(record, str):
        raise Reject("bad_record_type", f"expected a page's HTML, got {type(record).__name__}")
    trafilatura, config = _trafilatura()
    doc = trafilatura.bare_extraction(record, include_comments=False,
                                      include_tables=bool(ctx.options.get("include_tables", True)),
                                      with_metadata=True, config=config)
    text = (doc.text or "").strip() if doc is not None else ""
    min_chars = int(ctx.options.get("min_chars", MIN_CHARS))
    if len(text) < min_chars:
        raise Reject("no_main_text", f"{len(text)} characters of main text (fewer than {min_chars})")
    url = doc.url or None
    meta = {"url": url, "title": doc.title or None, "file": ctx.file}
    return [Row(text=text, native_id=url or ctx.file, meta=meta)]
