"""HTTP for the downloaders: bounded retries with back-off, resumable downloads, clear errors, no leaked secrets.

Every host except the Hub (which has its own client, set up with the same limits in `etl.fetch.hf`) goes
through `Transport`. Transient failures (5xx, timeouts, connection resets, a body cut short, a transfer too
slow) are retried with exponential back-off and a partial file is resumed with a `Range` request; 401/403/404
fail at once with a message that names the source and says what to do. Secrets travel only in headers;
`redact` scrubs every configured secret from text before it is shown.

Time limits (`NetSettings`, from the environment): every request has a connect and a read timeout, and every
body must keep up a minimum throughput (bytes per window), so a server that accepts and never answers, or
trickles a byte every few seconds, costs a bounded time. A connection that cannot even be opened makes us ask
once whether there is any network at all (`network_available`); when there is none, every network source
fails at once with `OfflineError`, which says how to build without a network.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3

from etl.fetch.base import FetchError
from etl.read.sniff import SNIFF_HTML_BYTES, html_instead_of_data
from etl.secrets import SECRET_ENV, redact  # noqa: F401  (re-exported for the fetchers)

log = logging.getLogger("etl.fetch")

CHUNK = 1 << 20
T = TypeVar("T")


def refuse_html_page(path: Path, relpath: str, source_id: str, message: str) -> None:
    """An HTML page saved where a data file was expected (login, error or quota page) is an error,
    never data: remove it and raise with `message` (prefixed with the reason `html_instead_of_data`).
    The one content check is `etl.read.sniff.html_instead_of_data`, shared with the readers."""
    if not relpath.endswith((".html", ".htm")) and looks_like_html(path):
        path.unlink()
        raise FetchError(source_id, f"html_instead_of_data: {message}")


# ---- time limits ---------------------------------------------------------------------------------------

def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds or bytes, got {value!r}") from None
    if number <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return number


@dataclass(frozen=True)
class NetSettings:
    """How long the network may take. From `MEDCORPUS_CONNECT_TIMEOUT` (s), `MEDCORPUS_READ_TIMEOUT` (s, the
    longest silence within a response), `MEDCORPUS_MIN_RATE` (bytes/s a body must average over each window)
    and `MEDCORPUS_RATE_WINDOW` (s)."""

    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    min_rate: float = 1024.0
    rate_window: float = 60.0

    @classmethod
    def from_env(cls) -> NetSettings:
        return cls(_env_float("MEDCORPUS_CONNECT_TIMEOUT", cls.connect_timeout),
                   _env_float("MEDCORPUS_READ_TIMEOUT", cls.read_timeout),
                   _env_float("MEDCORPUS_MIN_RATE", cls.min_rate),
                   _env_float("MEDCORPUS_RATE_WINDOW", cls.rate_window))


class Pace:
    """Raises `TransientError` when a body falls below `min_rate` bytes/s over a window of `rate_window`
    seconds: a trickling server cannot hold a download for hours (a silent one hits the read timeout)."""

    def __init__(self, settings: NetSettings, what: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._what = what
        self._clock = clock
        self._start = clock()
        self._bytes = 0

    def feed(self, n: int) -> None:
        self._bytes += n
        now = self._clock()
        elapsed = now - self._start
        if elapsed < self._settings.rate_window:
            return
        rate = self._bytes / elapsed
        if rate < self._settings.min_rate:
            raise TransientError(f"{self._what} too slow: {self._bytes} bytes in {elapsed:.1f}s "
                                 f"(below {self._settings.min_rate:g} bytes/s; MEDCORPUS_MIN_RATE)")
        self._start, self._bytes = now, 0


# ---- no network at all ---------------------------------------------------------------------------------

OFFLINE_HINT = ("build from the bundled samples with `--mirror examples/mirror`, or from your own copies with "
                "`--mirror DIR` (sources downloaded before are read from the cache without a network)")
DEFAULT_PROBES = ("huggingface.co:443", "github.com:443")
_VERDICT_SECONDS = 300.0
_verdicts: dict[tuple[str, ...], tuple[float, bool]] = {}
_verdict_lock = threading.Lock()


def probe_hosts() -> tuple[str, ...]:
    """`host:port` pairs that tell whether there is a network: `MEDCORPUS_PROBE_HOSTS` (comma-separated) or
    the configured Hub and GitHub endpoints plus the public hosts."""
    explicit = os.environ.get("MEDCORPUS_PROBE_HOSTS")
    if explicit is not None:
        return tuple(h.strip() for h in explicit.split(",") if h.strip())
    found: list[str] = []
    for env in ("HF_ENDPOINT", "MEDCORPUS_GITHUB_API"):
        parts = urlsplit(os.environ.get(env) or "")
        if parts.hostname:
            found.append(f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}")
    return tuple(dict.fromkeys([*found, *DEFAULT_PROBES]))


def _reachable(target: str, timeout: float) -> bool:
    host, _, port = target.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError):
        return False
    return True


def network_available(timeout: float | None = None) -> bool:
    """Whether any probe host accepts a TCP connection. Asked at most once per `_VERDICT_SECONDS` for the
    same probe hosts (so a build asks once, not once per source), and only when a connection failed."""
    hosts = probe_hosts()
    with _verdict_lock:
        cached = _verdicts.get(hosts)
        if cached is not None and time.monotonic() - cached[0] < _VERDICT_SECONDS:
            return cached[1]
        wait = timeout if timeout is not None else min(5.0, NetSettings.from_env().connect_timeout)
        verdict = any(_reachable(host, wait) for host in hosts)
        _verdicts[hosts] = (time.monotonic(), verdict)
    if not verdict:
        log.warning("no network: none of %s can be reached", ", ".join(hosts))
    return verdict


def known_offline() -> bool:
    """True when this process already found that there is no network (nothing is probed here)."""
    cached = _verdicts.get(probe_hosts())
    return cached is not None and not cached[1] and time.monotonic() - cached[0] < _VERDICT_SECONDS


def forget_network_verdict() -> None:
    """Forget what was found about the network (the next connection failure probes again)."""
    with _verdict_lock:
        _verdicts.clear()


class OfflineError(FetchError):
    """No network at all: raised at once for every network source, instead of retrying each."""

    def __init__(self, source_id: str, message: str | None = None) -> None:
        super().__init__(source_id, message or f"no network: no dataset host can be reached; {OFFLINE_HINT}")


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
    """A failure worth retrying (5xx, timeout, reset, short body, too slow)."""


class ConnectTransient(TransientError):
    """No connection could be opened (name not resolved, refused, unreachable, connect timeout): retried,
    unless there is no network at all."""


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
            if known_offline():
                raise OfflineError(source_id)
            try:
                return action()
            except TransientError as exc:
                if isinstance(exc, ConnectTransient) and not network_available():
                    raise OfflineError(source_id) from None
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
                 settings: NetSettings | None = None, auth_hint: str = "") -> None:
        self.source_id = source_id
        self.retry = retry
        self.settings = settings or NetSettings.from_env()
        self.timeout = (self.settings.connect_timeout, self.settings.read_timeout)
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

    def read_body(self, response: requests.Response, url: str) -> requests.Response:
        """Read a (streamed) response whole, at the minimum pace, and check its length: a body cut short is
        retried like a failed connection."""
        pace = Pace(self.settings, public_url(url))
        parts: list[bytes] = []
        with response:
            response.raw.enforce_content_length = False
            try:
                while block := response.raw.read1(CHUNK, decode_content=True):
                    parts.append(block)
                    pace.feed(len(block))
            except (requests.ConnectionError, requests.Timeout, urllib3.exceptions.HTTPError, OSError) as exc:
                raise TransientError(f"reading {public_url(url)} failed ({type(exc).__name__})") from None
            body = b"".join(parts)
            expected = response.headers.get("Content-Length")
            if expected and expected.isdigit() and len(body) < int(expected) \
                    and response.headers.get("Content-Encoding", "identity") == "identity":
                raise TransientError(f"body cut after {len(body)} of {expected} bytes of {public_url(url)}")
        response._content = body  # what `.content`, `.text` and `.json()` read
        return response

    def _send(self, method: str, url: str, **kwargs: object) -> requests.Response:
        try:
            response = self.session.request(method, url, timeout=self.timeout, stream=True, **kwargs)  # type: ignore[arg-type]
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise transient(exc, url) from None
        self._check(response)
        return self.read_body(response, url)

    def get(self, url: str, *, what: str | None = None, **kwargs: object) -> requests.Response:
        """GET with retries; the response is fully read (for API calls and small pages)."""
        return self.retry.run(what or public_url(url), lambda: self._send("GET", url, **kwargs), self.source_id)

    def get_json(self, url: str, *, what: str | None = None) -> object:
        """GET an API answer as JSON; an HTML page or other non-JSON body is a `FetchError` that says so."""
        return self.json_of(self.get(url, what=what), what or public_url(url))

    def json_of(self, response: requests.Response, what: str) -> object:
        try:
            return response.json()
        except ValueError:
            where = public_url(response.url or "")
            if html_instead_of_data(response.content[:SNIFF_HTML_BYTES]):
                raise FetchError(self.source_id, f"html_instead_of_data: {what}: {where} answered with an HTML page "
                                                 f"(a login, proxy or error page?). {self.auth_hint}") from None
            raise FetchError(self.source_id, f"not_json: {what}: {where} answered with something that is not "
                                             f"JSON") from None

    def post_json(self, url: str, payload: object, *, what: str | None = None) -> requests.Response:
        return self.retry.run(what or public_url(url), lambda: self._send("POST", url, json=payload),
                              self.source_id)

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
                raise transient(exc, url) from None
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
                pace = Pace(self.settings, f"download of {public_url(url)}")
                try:
                    with open(dest, "ab" if append else "wb") as handle:
                        # read1: what has arrived, so the pace is checked while a slow server trickles
                        while block := response.raw.read1(CHUNK, decode_content=False):
                            handle.write(block)
                            written += len(block)
                            if progress:
                                progress(len(block))
                            pace.feed(len(block))
                except (requests.ConnectionError, requests.Timeout, urllib3.exceptions.HTTPError) as exc:
                    raise TransientError(f"transfer cut after {written} bytes of {public_url(url)} "
                                         f"({type(exc).__name__})") from None
                if total is not None and written < total:
                    raise TransientError(f"transfer cut after {written} of {total} bytes of {public_url(url)}")
                return response.headers
        return self.retry.run(f"download {public_url(url)}", attempt, self.source_id)


def transient(exc: Exception, url: str) -> TransientError:
    """A requests failure as a retryable error; one that opened no connection is a `ConnectTransient`."""
    text = f"{type(exc).__name__} for {public_url(url)}"
    if isinstance(exc, requests.ConnectTimeout) or no_connection(exc):
        return ConnectTransient(text)
    return TransientError(text)


def no_connection(exc: BaseException) -> bool:
    """True when `exc`, or what caused it, is a connection that could not be opened."""
    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, urllib3.exceptions.NewConnectionError | ConnectionRefusedError | socket.gaierror):
            return True
        reason = getattr(item, "reason", None)
        stack += [*item.args, item.__cause__, item.__context__, reason]
    return False


def looks_like_html(path: Path) -> bool:
    """True when a file starts like an HTML page (an error, login or quota page served instead of data)."""
    with open(path, "rb") as handle:
        return html_instead_of_data(handle.read(SNIFF_HTML_BYTES))
