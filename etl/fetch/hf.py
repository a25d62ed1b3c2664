"""Hugging Face Hub datasets through `huggingface_hub`, at a pinned commit, as raw files.

The revision is resolved with the dataset-info call, the files are listed from the repo tree at that
commit and selected with the catalogue's `files` globs, and each is brought with `hf_hub_download`. A repo
that ships a loading script (shibing624/medical, medical_dialog, bigbio) is never run: only the data files
the catalogue names are downloaded. `HF_ENDPOINT` (a mirror) and `HF_TOKEN` are read at fetch time.

The Hub client gets our limits (`NetSettings`): connect and read timeouts on every call (the client's own
default is none, so a server that accepts and never answers would hang `fetch` forever) and the minimum
pace on every body. A downloaded file that is an HTML page, or an API answer that is not JSON, is refused
as `html_instead_of_data` / `not_json` with what to do.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx2
from huggingface_hub import HfApi, hf_hub_download, set_client_factory
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils._http import hf_request_event_hook

from etl.catalog import Source
from etl.fetch.base import FetchError
from etl.fetch.common import HostFetcher, Planned, select
from etl.fetch.net import (
    ConnectTransient,
    NetSettings,
    Pace,
    TransientError,
    no_connection,
    redact,
    refuse_html_page,
)
from etl.fetch.progress import FileProgress
from etl.read.sniff import html_instead_of_data

DEFAULT_ENDPOINT = "https://huggingface.co"
T = TypeVar("T")


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def token() -> str | None:
    return os.environ.get("HF_TOKEN") or None


class _PacedStream(httpx2.SyncByteStream):
    """A response body that must keep up the minimum pace (a trickle is a read timeout)."""

    def __init__(self, inner: httpx2.SyncByteStream, settings: NetSettings, what: str) -> None:
        self._inner = inner
        self._settings = settings
        self._what = what

    def __iter__(self) -> Iterator[bytes]:
        pace = Pace(self._settings, self._what)
        for chunk in self._inner:
            try:
                pace.feed(len(chunk))
            except TransientError as exc:
                raise httpx2.ReadTimeout(str(exc)) from None
            yield chunk

    def close(self) -> None:
        self._inner.close()


class _LimitedTransport(httpx2.BaseTransport):
    """Every request gets our timeouts (a call that asks for none, or longer ones, gets ours) and a paced body."""

    def __init__(self, inner: httpx2.BaseTransport, settings: NetSettings) -> None:
        self._inner = inner
        self._settings = settings

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        ours = {"connect": self._settings.connect_timeout, "read": self._settings.read_timeout,
                "write": self._settings.read_timeout, "pool": self._settings.read_timeout}
        asked = request.extensions.get("timeout") or {}
        request.extensions["timeout"] = {key: min(value, asked.get(key) or value) for key, value in ours.items()}
        response = self._inner.handle_request(request)
        assert isinstance(response.stream, httpx2.SyncByteStream)
        response.stream = _PacedStream(response.stream, self._settings, str(request.url.copy_with(query=None)))
        return response

    def close(self) -> None:
        self._inner.close()


_client_settings: NetSettings | None = None
_client_lock = threading.Lock()


def use_limits(settings: NetSettings) -> None:
    """Make huggingface_hub's shared client apply `settings` (once per distinct settings)."""
    global _client_settings
    with _client_lock:
        if _client_settings == settings:
            return

        def factory() -> httpx2.Client:
            return httpx2.Client(event_hooks={"request": [hf_request_event_hook]}, follow_redirects=True,
                                 timeout=httpx2.Timeout(settings.read_timeout, connect=settings.connect_timeout),
                                 transport=_LimitedTransport(httpx2.HTTPTransport(), settings))

        set_client_factory(factory)
        _client_settings = settings


def _no_connection(exc: BaseException) -> bool:
    return isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout) or no_connection(exc)


def _not_json(source: Source, what: str, exc: json.JSONDecodeError) -> FetchError:
    doc = exc.doc if isinstance(exc.doc, str) else ""
    if html_instead_of_data(doc[:4096].encode("utf-8", errors="replace")):
        return FetchError(source.id, f"html_instead_of_data: {what}: the Hub at {endpoint()} answered with an HTML "
                                     f"page (a login, proxy or error page?); check HF_ENDPOINT and the network, or "
                                     f"use --mirror DIR")
    return FetchError(source.id, f"not_json: {what}: the Hub at {endpoint()} answered with something that is not "
                                 f"JSON ({redact(str(exc))[:120]}); check HF_ENDPOINT")


class HfFetcher(HostFetcher):
    host = "hf"
    versioned = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        use_limits(NetSettings.from_env())

    def _call(self, source: Source, what: str, action: Callable[[], T]) -> T:
        """Run a Hub call with our retry policy and turn its errors into ones that say what to do."""
        page = f"{endpoint()}/datasets/{source.repo}"

        def attempt() -> T:
            try:
                return action()
            except GatedRepoError:
                raise FetchError(source.id, f"{source.repo} is gated: accept its terms at {page} and set "
                                            f"HF_TOKEN to a token of that account") from None
            except RepositoryNotFoundError:
                raise FetchError(source.id, f"dataset repo {source.repo} not found (or private): check `repo`, "
                                            f"or set HF_TOKEN if it is private") from None
            except RevisionNotFoundError:
                raise FetchError(source.id, f"revision {source.revision!r} not found in {source.repo}: "
                                            f"check `revision`") from None
            except LocalEntryNotFoundError as exc:  # raised when the Hub could not be reached
                error = ConnectTransient if _no_connection(exc) else TransientError
                raise error(f"the Hub at {endpoint()} could not be reached: {redact(str(exc))[:200]}") from None
            except RemoteEntryNotFoundError:
                raise FetchError(source.id, f"{what}: no such file in {source.repo}: check `files`") from None
            except HfHubHTTPError as exc:
                status = exc.response.status_code if exc.response is not None else 0
                if status in (401, 403):
                    raise FetchError(source.id, f"access denied (HTTP {status}) for {source.repo}: set HF_TOKEN "
                                                f"and accept the terms at {page}") from None
                if status == 429 or status >= 500:
                    raise TransientError(f"HTTP {status} from the Hub") from None
                raise FetchError(source.id, f"{what}: {redact(str(exc))}") from None
            except (httpx2.TransportError, OSError) as exc:
                if isinstance(exc, FileNotFoundError | PermissionError):
                    raise
                error = ConnectTransient if _no_connection(exc) else TransientError
                raise error(f"{type(exc).__name__}: {redact(str(exc))}") from None
            except json.JSONDecodeError as exc:  # a body that is not JSON: an HTML page from a proxy or login wall
                raise _not_json(source, what, exc) from None
        return self.retry.run(what, attempt, source.id)

    def _api(self) -> HfApi:
        return HfApi(endpoint=endpoint(), token=token(), library_name="medcorpus")

    def resolve(self, source: Source) -> str:
        assert source.repo
        info = self._call(source, "resolve revision",
                          lambda: self._api().dataset_info(source.repo, revision=source.revision))
        if not info.sha:
            raise FetchError(source.id, f"the Hub did not say which commit {source.revision!r} is")
        return info.sha

    def plan(self, source: Source, revision: str | None, patterns: list[str]) -> list[Planned]:
        assert source.repo and revision
        entries = self._call(source, "list files", lambda: [
            e for e in self._api().list_repo_tree(source.repo, recursive=True, revision=revision,
                                                  repo_type="dataset") if isinstance(e, RepoFile)])
        by_path = {e.path: e for e in entries}
        planned = []
        for name in select(source.id, patterns, list(by_path)):
            entry = by_path[name]
            lfs = entry.lfs
            planned.append(Planned(name, f"{endpoint()}/datasets/{source.repo}/resolve/{revision}/{name}",
                                   sha256=lfs.sha256 if lfs else None, size=entry.size))
        return planned

    def download(self, source: Source, revision: str | None, item: Planned, tmp: Path,
                 progress: FileProgress) -> None:
        assert source.repo and revision
        staging = tmp.parent / f"{tmp.stem}.hf"
        path = self._call(source, f"download {item.relpath}", lambda: hf_hub_download(
            source.repo, item.relpath, repo_type="dataset", revision=revision, local_dir=staging,
            endpoint=endpoint(), token=token(), library_name="medcorpus", tqdm_class=_forwarding_bar(progress)))
        os.replace(path, tmp)
        shutil.rmtree(staging, ignore_errors=True)
        refuse_html_page(tmp, item.relpath, source.id,
                         f"the Hub at {endpoint()} returned an HTML page instead of {item.relpath} (a login, proxy or "
                         f"error page?); check HF_ENDPOINT, or download it by hand and use --mirror DIR")


def _forwarding_bar(progress: FileProgress) -> Any:
    """A stand-in for the tqdm class huggingface_hub draws its bar with: it only forwards byte counts to our
    reporter (so Hub downloads show in the same progress display); every other bar method is a no-op."""

    class ForwardingBar:
        def __init__(self, *args: object, initial: int = 0, **kwargs: object) -> None:
            if initial:
                progress(int(initial))

        def __enter__(self) -> ForwardingBar:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def update(self, n: float | None = 1) -> None:
            progress(int(n or 0))

        def __getattr__(self, name: str) -> Callable[..., None]:
            return lambda *args, **kwargs: None

    return ForwardingBar
