"""HTTP for the downloaders: bounded retries with back-off, resumable downloads, clear errors, no leaked secrets.

Every host except the Hub (which has its own client) goes through `Transport`. Transient failures (5xx,
timeouts, connection resets, a body cut short) are retried with exponential back-off and a partial file is
resumed with a `Range` request; 401/403/404 fail at once with a message that names the source and says what
to do. Secrets travel only in headers; `redact` scrubs every configured secret from text before it is shown.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3

from etl.fetch.base import FetchError
from etl.secrets import SECRET_ENV, redact  # noqa: F401  (re-exported for the fetchers)

log = logging.getLogger("etl.fetch")

CHUNK = 1 << 20
T = TypeVar("T")


def refuse_html_page(path: Path, relpath: str, source_id: str, message: str) -> None:
    """An HTML page saved where a data file was expected (login, error or quota page) is an error,
    never data: remove it and raise with `message`."""
    if not relpath.endswith((".html", ".htm")) and looks_like_html(path):
        path.unlink()
        raise FetchError(source_id, message)


def public_url(url: str) -> str:
    """A URL fit for logs and records: no query string (signed URLs carry credentials) and no user info."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def record_url(url: str) -> str:
    """A URL fit for the cache record: user info removed (queries of the URLs we record carry no secrets)."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


class TransientError(Exception):
    """A failure worth retrying (5xx, timeout, reset, short body)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off: attempt n waits `base * 2**n` seconds (capped), times a seeded jitter in [0.5, 1]."""

    attempts: int = 5
    base: float = 1.0
    cap: float = 30.0
    seed: int | None = None
    _rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.seed is not None:
            self._rng.seed(self.seed)

    def delay(self, attempt: int) -> float:
        return min(self.cap, self.base * 2**attempt) * (0.5 + self._rng.random() / 2)

    def run(self, what: str, action: Callable[[], T], source_id: str) -> T:
        """Call `action` until it succeeds, retrying `TransientError` up to `attempts` times."""
        for attempt in range(self.attempts):
            try:
                return action()
            except TransientError as exc:
                if attempt == self.attempts - 1:
                    raise FetchError(source_id, f"{what}: gave up after {self.attempts} attempts: "
                                                f"{redact(str(exc))}") from None
                wait = self.delay(attempt)
                log.warning("%s: %s: %s; retrying in %.1fs", source_id, what, redact(str(exc)), wait)
                time.sleep(wait)
        raise AssertionError("unreachable")


def status_error(source_id: str, status: int, url: str, hint: str = "") -> FetchError | TransientError:
    """Map an HTTP error status to an immediate `FetchError` (auth, missing) or a `TransientError`."""
    where = public_url(url)
    if status in (401, 403):
        return FetchError(source_id, f"access denied (HTTP {status}) for {where}. "
                                     f"{hint or 'Set the access token for this host, or accept the terms on the dataset page.'}")
    if status == 404:
        return FetchError(source_id, f"not found (HTTP 404): {where}. "
                                     f"{hint or 'Check the repo, revision and file names in the catalogue.'}")
    if status == 429 or status >= 500:
        return TransientError(f"HTTP {status} from {where}")
    return FetchError(source_id, f"unexpected HTTP {status} from {where}")


ProgressCallback = Callable[[int], None]


class Transport:
    """A requests session with the host's auth headers, timeouts and the retry policy."""

    def __init__(self, source_id: str, retry: RetryPolicy, headers: dict[str, str] | None = None,
                 timeout: float = 60.0, auth_hint: str = "") -> None:
        self.source_id = source_id
        self.retry = retry
        self.timeout = timeout
        self.auth_hint = auth_hint
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "medcorpus-fetch"
        self.session.headers["Accept-Encoding"] = "identity"  # byte offsets for Range refer to the file
        self.session.headers.update(headers or {})

    def close(self) -> None:
        self.session.close()

    def _check(self, response: requests.Response, ok: Iterable[int] = (200,)) -> None:
        if response.status_code not in ok:
            response.close()
            raise status_error(self.source_id, response.status_code, response.url, self.auth_hint)

    def get(self, url: str, *, what: str | None = None, **kwargs: object) -> requests.Response:
        """GET with retries; the response is fully read (for API calls and small pages)."""
        def attempt() -> requests.Response:
            try:
                response = self.session.get(url, timeout=self.timeout, **kwargs)  # type: ignore[arg-type]
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TransientError(f"{type(exc).__name__} for {public_url(url)}") from None
            self._check(response)
            return response
        return self.retry.run(what or public_url(url), attempt, self.source_id)

    def post_json(self, url: str, payload: object, *, what: str | None = None) -> requests.Response:
        def attempt() -> requests.Response:
            try:
                response = self.session.post(url, json=payload, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TransientError(f"{type(exc).__name__} for {public_url(url)}") from None
            self._check(response)
            return response
        return self.retry.run(what or public_url(url), attempt, self.source_id)

    def download(self, url: str, dest: Path, *, progress: ProgressCallback | None = None,
                 headers: dict[str, str] | None = None) -> requests.structures.CaseInsensitiveDict[str]:
        """Stream `url` into `dest`, resuming a partial `dest` with a Range request and after a cut transfer.

        Returns the final response's headers. The caller verifies and renames `dest`; this never does."""
        dest.parent.mkdir(parents=True, exist_ok=True)

        def attempt() -> requests.structures.CaseInsensitiveDict[str]:
            have = dest.stat().st_size if dest.exists() else 0
            request_headers = dict(headers or {})
            if have:
                request_headers["Range"] = f"bytes={have}-"
            try:
                response = self.session.get(url, headers=request_headers, stream=True, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TransientError(f"{type(exc).__name__} for {public_url(url)}") from None
            with response:
                if have and response.status_code == 416:
                    return response.headers  # already complete; the checksum decides
                self._check(response, ok=(200, 206))
                append = have and response.status_code == 206
                expected = response.headers.get("Content-Length")
                total = int(expected) + (have if append else 0) if expected and expected.isdigit() else None
                written = have if append else 0
                if progress and not append and have:
                    progress(-have)  # the server ignored Range: start over
                # Keep what a cut transfer delivered (the length is checked below), so the next try resumes.
                response.raw.enforce_content_length = False
                try:
                    with open(dest, "ab" if append else "wb") as handle:
                        for block in response.raw.stream(CHUNK, decode_content=False):
                            handle.write(block)
                            written += len(block)
                            if progress:
                                progress(len(block))
                except (requests.ConnectionError, requests.Timeout, urllib3.exceptions.HTTPError) as exc:
                    raise TransientError(f"transfer cut after {written} bytes of {public_url(url)} "
                                         f"({type(exc).__name__})") from None
                if total is not None and written < total:
                    raise TransientError(f"transfer cut after {written} of {total} bytes of {public_url(url)}")
                return response.headers
        return self.retry.run(f"download {public_url(url)}", attempt, self.source_id)


def looks_like_html(path: Path) -> bool:
    """True when a file starts like an HTML page (an error, login or quota page served instead of data)."""
    with open(path, "rb") as handle:
        head = handle.read(2048).lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<meta", b"<script", b"<title"))
