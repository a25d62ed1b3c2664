"""Plain URLs: one file from `url` (resumable with Range), or web pages from `urls` saved as
`pages/<safe-name>.html`. A data URL that answers with an HTML page is refused, never converted.

Web pages (`urls:`) are crawled politely, as the source's `options` say:

- `robots_txt`: URL of the site's robots.txt, read first (`urllib.robotparser`); a page it disallows for
  our user agent is skipped, with the reason in the log. A 404 means everything is allowed, a 401/403 that
  nothing is. A `Crawl-delay` longer than `min_delay_seconds` is honoured.
- `min_delay_seconds`: one request at a time, at least this far apart (robots.txt included).
- `max_pages_per_run`: at most this many page downloads per run; the log says how many pages are left, and
  the next run continues where this one stopped (pages already cached are not requested again).
- `user_agent`: sent with every request of the source (also for `url:`; default `medcorpus-fetch`).

A run that fetched (or skipped) every page marks the source complete in the cache, so later runs make no
request at all; a run cut short by `max_pages_per_run` does not.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

import requests

from etl.catalog import Source
from etl.fetch.base import FetchedFile, FetchedSource, FetchError, local_patterns, verify_declared
from etl.fetch.cache import SourceCache
from etl.fetch.common import HostFetcher, Planned
from etl.fetch.lock import LockEntry
from etl.fetch.net import TransientError, Transport, public_url, refuse_html_page, transient
from etl.fetch.progress import FileProgress

log = logging.getLogger("etl.fetch")

DEFAULT_USER_AGENT = "medcorpus-fetch"
# How a fetcher tells time and waits unless given its own (tests replace them: module attributes, read when
# a fetcher is made).
default_clock: Callable[[], float] = time.monotonic
default_sleep: Callable[[float], None] = time.sleep


def page_name(url: str) -> str:
    """A stable, filesystem-safe file name for a web page: readable host and path, plus a short hash."""
    parts = urlsplit(url)
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{parts.hostname or ''}{parts.path}").strip("._")[:80]
    return f"{readable or 'page'}-{hashlib.sha1(url.encode()).hexdigest()[:8]}"


def page_relpath(url: str) -> str:
    return f"pages/{page_name(url)}.html"


@dataclass(frozen=True)
class CrawlOptions:
    robots_txt: str | None = None
    min_delay_seconds: float = 0.0
    max_pages_per_run: int | None = None
    user_agent: str = DEFAULT_USER_AGENT

    @classmethod
    def of(cls, source: Source) -> CrawlOptions:
        options = source.options

        def number(key: str) -> float | None:
            value = options.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
                raise FetchError(source.id, f"options.{key} must be a non-negative number, got {value!r}")
            return value

        robots = options.get("robots_txt")
        if robots is not None and not (isinstance(robots, str) and robots.startswith(("http://", "https://"))):
            raise FetchError(source.id, f"options.robots_txt must be the robots.txt URL, got {robots!r}")
        agent = options.get("user_agent") or DEFAULT_USER_AGENT
        cap = number("max_pages_per_run")
        return cls(robots, float(number("min_delay_seconds") or 0.0), None if cap is None else int(cap), str(agent))


@dataclass
class CrawlReport:
    """What one crawl did, in order: pages requested, pages skipped (with the reason), pages left."""

    fetched: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    left: int = 0


class HttpFetcher(HostFetcher):
    host = "http"

    def __init__(self, *args: object, clock: Callable[[], float] | None = None,
                 sleep: Callable[[float], None] | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.clock = clock or default_clock
        self.sleep = sleep or default_sleep
        self.report = CrawlReport()
        self._last_request: float | None = None

    def plan(self, source: Source, revision: str | None, patterns: list[str]) -> list[Planned]:
        if source.url:
            name = source.options.get("filename") or posixpath.basename(urlsplit(source.url).path) or "index.html"
            return [Planned(name, source.url)]
        return [Planned(page_relpath(url), url) for url in source.urls]

    def _transport(self, source: Source) -> Transport:
        agent = str(source.options.get("user_agent") or DEFAULT_USER_AGENT)
        return Transport(source.id, self.retry, {"User-Agent": agent}, auth_hint="Check `url` in the catalogue.")

    def download(self, source: Source, revision: str | None, item: Planned, tmp: Path,
                 progress: FileProgress) -> None:
        transport = self._transport(source)
        try:
            transport.download(item.url, tmp, progress=progress)
        finally:
            transport.close()
        refuse_html_page(tmp, item.relpath, source.id,
                         f"{public_url(item.url)} returned an HTML page instead of {item.relpath} "
                         f"(a login, error or quota page?); download it by hand and use --mirror")

    # ---- web pages: robots.txt, spacing, a cap per run -----------------------------------------------
    def fetch(self, source: Source, *, force: bool = False, locked: LockEntry | None = None) -> FetchedSource:
        if not source.urls:
            return super().fetch(source, force=force, locked=locked)
        return self.crawl(source, force=force, locked=locked)

    def _wait(self, delay: float) -> None:
        """Space requests at least `delay` seconds apart."""
        if self._last_request is not None and delay > 0:
            remaining = delay - (self.clock() - self._last_request)
            if remaining > 0:
                self.sleep(remaining)
        self._last_request = self.clock()

    def robots(self, source: Source, options: CrawlOptions) -> RobotFileParser | None:
        """The parsed robots.txt (None when the source names none)."""
        if not options.robots_txt:
            return None
        parser = RobotFileParser(options.robots_txt)
        transport = self._transport(source)

        def attempt() -> requests.Response:
            try:
                response = transport.session.get(options.robots_txt, timeout=transport.timeout,  # type: ignore[arg-type]
                                                 stream=True)
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise transient(exc, options.robots_txt or "") from None
            if response.status_code == 429 or response.status_code >= 500:
                response.close()
                raise TransientError(f"HTTP {response.status_code} from {public_url(options.robots_txt or '')}")
            return transport.read_body(response, options.robots_txt or "")

        try:
            self._wait(options.min_delay_seconds)
            response = self.retry.run("robots.txt", attempt, source.id)
        finally:
            transport.close()
        if response.status_code in (401, 403):
            parser.disallow_all = True
        elif response.status_code >= 400:
            parser.allow_all = True
        else:
            parser.parse(response.content.decode("utf-8", errors="replace").splitlines())
        return parser

    def crawl(self, source: Source, *, force: bool, locked: LockEntry | None) -> FetchedSource:
        options = CrawlOptions.of(source)
        patterns = local_patterns(source)
        cache = SourceCache(self.cache_root, source.id, source.revision)
        if not force and (hit := self.from_cache(source, cache, patterns, locked)) is not None:
            verify_declared(source, list(hit.files))
            return hit
        self.report = CrawlReport()
        robots = self.robots(source, options)
        delay = options.min_delay_seconds
        if robots is not None and (crawl_delay := robots.crawl_delay(options.user_agent)):
            delay = max(delay, float(crawl_delay))
        files: list[FetchedFile] = []
        todo: list[Planned] = []
        for item in self.plan(source, source.revision, patterns):
            if robots is not None and not robots.can_fetch(options.user_agent, item.url):
                reason = f"disallowed by {public_url(options.robots_txt or '')} for {options.user_agent!r}"
                self.report.skipped.append((item.url, reason))
                log.warning("%s: skipped %s: %s", source.id, public_url(item.url), reason)
                continue
            expected = self.expected_sha256(source, item.relpath, locked)
            if not force and (hit := cache.cached(item.relpath, expected)) is not None:
                files.append(hit)
                continue
            todo.append(item)
        cap = options.max_pages_per_run
        for n, item in enumerate(todo):
            if cap is not None and n >= cap:
                self.report.left = len(todo) - n
                log.warning("%s: stopped after %d page(s) (max_pages_per_run); %d page(s) left: run the fetch "
                            "again to continue", source.id, cap, self.report.left)
                break
            self._wait(delay)
            files.append(self.bring(source, source.revision, cache, item, force, locked))
            self.report.fetched.append(item.url)
        order = {item.relpath: i for i, item in enumerate(self.plan(source, source.revision, patterns))}
        files.sort(key=lambda f: order[f.relpath])
        if not self.report.left:
            cache.mark_complete(patterns, [f.relpath for f in files])
        if not files:
            raise FetchError(source.id, "no page could be fetched (every URL is disallowed by robots.txt?)")
        verify_declared(source, files)
        return FetchedSource(source.id, cache.folder, cache.revision, tuple(files))
