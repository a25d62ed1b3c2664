"""Issue 11, network: every host's requests are bounded in time (a server that accepts and never answers, one
that trickles a byte at a time), a body cut short is retried on every host (the Tianchi API call too), an HTML
page is never cached as data, and with no network at all every network source fails at once with one message
that points to `--mirror`. All servers are local (127.0.0.1); the limits are made small through the
environment, as a user would set them.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from etl.catalog import Source
from etl.fetch import make_fetcher
from etl.fetch.base import FetchedSource, FetchError
from etl.fetch.net import OfflineError, RetryPolicy, forget_network_verdict, network_available
from tests.helpers_fetch import COMMIT, FakeHost, FakeHub, isolate_env, serve_github, serve_tianchi, sha

FAST = RetryPolicy(attempts=2, base=0.0, seed=0)
DATA = b'{"instruction": "What lowers blood pressure?", "output": "Less salt."}\n' * 20
LOGIN_PAGE = b"<!DOCTYPE html>\n<html><head><title>Sign in to GitHub</title></head><body>Sign in</body></html>\n"
HANG_LIMIT = 60.0  # seconds after which a fetch is taken to hang (far above what the limits allow)


@pytest.fixture(autouse=True)
def limits(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_env(monkeypatch, tmp_path)
    monkeypatch.setenv("MEDCORPUS_CONNECT_TIMEOUT", "2")
    monkeypatch.setenv("MEDCORPUS_READ_TIMEOUT", "0.5")
    monkeypatch.setenv("MEDCORPUS_MIN_RATE", "200")
    monkeypatch.setenv("MEDCORPUS_RATE_WINDOW", "0.5")
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "1")
    forget_network_verdict()
    yield
    forget_network_verdict()


def source(**keys: object) -> Source:
    base = {"id": "src", "name": "Src", "task": "sft", "format": "alpaca"}
    return Source.model_validate({**base, **keys})


def closed_port() -> int:
    """A local port nobody listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bounded(action: Callable[[], object]) -> object:
    """Run `action` in a thread; fail the test (instead of hanging it) if it does not end."""
    result: list[object] = []

    def run() -> None:
        try:
            result.append(action())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_LIMIT)
    assert not thread.is_alive(), "the fetch hangs"
    return result[0]


# ---- a server that can misbehave ---------------------------------------------------------------------------

Behaviour = Callable[[socket.socket, str, str, threading.Event], None]


class RawServer:
    """A threaded HTTP/1.0 server on 127.0.0.1 driven by `handler(conn, method, path, stop)`, for what a
    well-behaved server cannot do: never answer, trickle, cut a body short."""

    def __init__(self, handler: Behaviour) -> None:
        self.handler = handler
        self.stop = threading.Event()
        self.requests: list[tuple[str, str]] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                data = conn.recv(65536)
                if not data:
                    return
                request += data
            method, path = request.split(b" ", 2)[:2]
            self.requests.append((method.decode(), path.decode()))
            self.handler(conn, method.decode(), path.decode(), self.stop)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def raw_server():
    servers: list[RawServer] = []

    def make(handler: Behaviour) -> RawServer:
        servers.append(RawServer(handler))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def head(status: str, length: int, ctype: str = "application/octet-stream", extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {length}\r\nConnection: close\r\n"
            f"{extra}\r\n").encode()


def silent(conn: socket.socket, method: str, path: str, stop: threading.Event) -> None:
    stop.wait(HANG_LIMIT)


def trickle(body: bytes) -> Behaviour:
    def behave(conn: socket.socket, method: str, path: str, stop: threading.Event) -> None:
        conn.sendall(head("200 OK", len(body)))
        for byte in body:
            if stop.wait(0.2):
                return
            conn.sendall(bytes([byte]))
    return behave


# ---- a server that never answers, or trickles ---------------------------------------------------------------

def test_http_server_that_accepts_and_never_answers_is_given_up(raw_server, tmp_path: Path) -> None:
    server = raw_server(silent)
    fetcher = make_fetcher(cache_dir=tmp_path / "cache", retry=FAST)
    result = bounded(lambda: fetcher.fetch(source(host="http", url=f"{server.url}/d.json")))
    assert isinstance(result, FetchError) and not isinstance(result, OfflineError), result
    assert "gave up after 2 attempts" in result.message and "Timeout" in result.message, result.message
    assert len(server.requests) == 2


def test_hub_that_accepts_and_never_answers_is_given_up(raw_server, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    server = raw_server(silent)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    fetcher = make_fetcher(cache_dir=tmp_path / "cache", retry=FAST)
    result = bounded(lambda: fetcher.fetch(source(host="hf", repo="org/data", files=["d.json"])))
    assert isinstance(result, FetchError), result
    assert "resolve revision: gave up after 2 attempts" in result.message, result.message


def test_trickling_download_is_cut_by_the_minimum_pace(raw_server, tmp_path: Path) -> None:
    server = raw_server(trickle(DATA))
    fetcher = make_fetcher(cache_dir=tmp_path / "cache", retry=FAST)
    result = bounded(lambda: fetcher.fetch(source(host="http", url=f"{server.url}/d.json")))
    assert isinstance(result, FetchError), result
    assert "too slow" in result.message and "MEDCORPUS_MIN_RATE" in result.message, result.message
    assert not list((tmp_path / "cache").rglob("d.json"))


def test_trickling_api_answer_is_cut_too(raw_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = raw_server(trickle(json.dumps({"sha": COMMIT, "padding": "x" * 400}).encode()))
    monkeypatch.setenv("MEDCORPUS_GITHUB_API", server.url)
    fetcher = make_fetcher(cache_dir=tmp_path / "cache", retry=FAST)
    result = bounded(lambda: fetcher.fetch(source(host="github", repo="o/r", revision="main", files=["d.json"])))
    assert isinstance(result, FetchError), result
    assert "resolve revision: gave up after 2 attempts" in result.message and "too slow" in result.message


def test_hub_download_that_trickles_is_cut(raw_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = json.dumps([{"type": "file", "path": "d.json", "size": len(DATA), "oid": "0" * 40}]).encode()
    info = json.dumps({"id": "org/data", "sha": COMMIT}).encode()
    slow = trickle(DATA)

    def hub(conn: socket.socket, method: str, path: str, stop: threading.Event) -> None:
        if "/tree/" in path:
            conn.sendall(head("200 OK", len(tree), "application/json") + tree)
        elif path.startswith("/api/datasets/"):
            conn.sendall(head("200 OK", len(info), "application/json") + info)
        elif method == "HEAD":
            conn.sendall(head("200 OK", len(DATA), extra=f'X-Repo-Commit: {COMMIT}\r\nETag: "{"1" * 40}"\r\n'))
        else:
            slow(conn, method, path, stop)

    server = raw_server(hub)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    fetcher = make_fetcher(cache_dir=tmp_path / "cache", retry=FAST)
    result = bounded(lambda: fetcher.fetch(source(host="hf", repo="org/data", revision=COMMIT, files=["d.json"])))
    assert isinstance(result, FetchError), result
    assert "download d.json: gave up after 2 attempts" in result.message, result.message
    assert not list((tmp_path / "cache").rglob("d.json"))


# ---- a body cut short is retried on every host ----------------------------------------------------------------

def cut_once(body: bytes, ctype: str = "application/json") -> Behaviour:
    """The first answer stops halfway through its declared length; the next ones are whole."""
    calls: list[int] = []

    def behave(conn: socket.socket, method: str, path: str, stop: threading.Event) -> None:
        calls.append(1)
        part = body[: len(body) // 2] if len(calls) == 1 else body
        conn.sendall(head("200 OK", len(body), ctype) + part)
    return behave


def test_tianchi_api_answer_cut_short_is_retried(fake: FakeHost, raw_server, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    serve_tianchi(fake, monkeypatch, 7, "c=1", {"41": ("d.json", DATA)})
    signed = json.dumps({"success": True, "data": f"{fake.url}/oss/41?Expires=1&Signature=s3cr"}).encode()
    api = raw_server(cut_once(signed))
    fake.routes.insert(0, ("GET", re.compile(r"/api/dataset/getFileDownloadUrl"), lambda req: Response(
        status=307, headers={"Location": f"{api.url}/signed?{req.query_string.decode()}"})))
    monkeypatch.setenv("TIANCHI_COOKIE", "c=1")
    fetcher = make_fetcher(cache_dir=tmp_path / "cache", retry=FAST)
    result = bounded(lambda: fetcher.fetch(source(host="tianchi", dataset_id="7", files=["d.json"])))
    assert isinstance(result, FetchedSource), result
    assert result.files[0].sha256 == sha(DATA)
    assert len(api.requests) == 2  # cut short once, then whole


def test_github_api_answer_cut_short_is_retried(raw_server, fake: FakeHost, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    serve_github(fake, monkeypatch, "o/r", {"d.json": DATA})
    api = raw_server(cut_once(json.dumps({"sha": COMMIT}).encode()))
    monkeypatch.setenv("MEDCORPUS_GITHUB_API", api.url)
    fetcher = make_fetcher(cache_dir=tmp_path / "cache", retry=FAST)
    result = bounded(lambda: fetcher.fetch(source(host="github", repo="o/r", revision="main", files=["d.json"])))
    assert isinstance(result, FetchedSource), result
    assert result.revision == COMMIT and len(api.requests) == 2


def test_hub_download_cut_short_is_retried(fake: FakeHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    hub = FakeHub(fake, {"d.json": DATA}, set())
    calls: list[int] = []
    whole = hub.resolve

    def resolve(req, repo, rev, path):  # noqa: ANN001, ANN202
        if req.method == "GET":
            calls.append(1)
            if len(calls) == 1:  # declares the whole length, sends half
                response = Response(DATA[: len(DATA) // 2], headers={"X-Repo-Commit": COMMIT})
                response.headers["Content-Length"] = str(len(DATA))
                response.automatically_set_content_length = False
                return response
        return whole(req, repo, rev, path)

    fake.routes.insert(0, ("GET", re.compile(r"/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)"), resolve))
    fetcher = make_fetcher(cache_dir=tmp_path / "cache", retry=FAST)
    result = bounded(lambda: fetcher.fetch(source(host="hf", repo="org/data", revision=COMMIT, files=["d.json"])))
    assert isinstance(result, FetchedSource), result
    assert result.files[0].sha256 == sha(DATA) and len(calls) >= 2


# ---- HTML where data was expected: never cached, never locked -------------------------------------------------

@pytest.fixture
def fake(httpserver: HTTPServer) -> FakeHost:
    return FakeHost(httpserver)


def test_github_login_page_is_not_cached_as_data_nor_locked(fake: FakeHost, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    serve_github(fake, monkeypatch, "o/r", {"data.jsonl": LOGIN_PAGE})
    lock = tmp_path / "sources.lock"
    fetcher = make_fetcher(cache_dir=tmp_path / "cache", lock_path=lock, retry=FAST)
    src = source(host="github", repo="o/r", revision="main", files=["data.jsonl"])
    result = fetcher.lock([src])["src"]
    assert isinstance(result, FetchError), result
    assert result.message.startswith("html_instead_of_data: GitHub returned an HTML page instead of data.jsonl")
    assert not list((tmp_path / "cache").rglob("data.jsonl"))
    assert "data.jsonl" not in (lock.read_text(encoding="utf-8") if lock.exists() else "")


def test_hub_api_answering_an_html_page_says_so(fake: FakeHost, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    fake.route("GET", r"/api/datasets/(.+)", lambda req, rest: Response(LOGIN_PAGE, content_type="text/html"))
    fetcher = make_fetcher(cache_dir=tmp_path / "cache", retry=FAST)
    result = fetcher.fetch_many([source(host="hf", repo="org/data", files=["d.json"])])["src"]
    assert isinstance(result, FetchError), result
    assert result.message.startswith("html_instead_of_data: resolve revision: the Hub at"), result.message
    assert "JSONDecodeError" not in result.message


def test_hub_file_that_is_an_html_page_is_not_cached(fake: FakeHost, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    FakeHub(fake, {"d.json": LOGIN_PAGE}, set())
    fetcher = make_fetcher(cache_dir=tmp_path / "cache", retry=FAST)
    result = fetcher.fetch_many([source(host="hf", repo="org/data", revision=COMMIT, files=["d.json"])])["src"]
    assert isinstance(result, FetchError), result
    assert result.message.startswith("html_instead_of_data: the Hub at") and "instead of d.json" in result.message
    assert not list((tmp_path / "cache").rglob("d.json"))


def test_tianchi_api_answering_an_html_page_says_so(fake: FakeHost, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDCORPUS_TIANCHI_URL", fake.url)
    monkeypatch.setenv("TIANCHI_COOKIE", "c=1")
    fake.route("POST", r"/api/notebook/dataDetail", lambda req: Response(LOGIN_PAGE, content_type="text/html"))
    fetcher = make_fetcher(cache_dir=tmp_path / "cache", retry=FAST)
    result = fetcher.fetch_many([source(host="tianchi", dataset_id="7", files=["d.json"])])["src"]
    assert isinstance(result, FetchError), result
    assert result.message.startswith("html_instead_of_data: list files:"), result.message


# ---- no network at all ------------------------------------------------------------------------------------------

@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> int:
    """Every probe host refuses connections; returns a refused port for the sources' URLs."""
    monkeypatch.setenv("MEDCORPUS_PROBE_HOSTS", f"127.0.0.1:{closed_port()},127.0.0.1:{closed_port()}")
    return closed_port()


def test_no_network_fails_every_network_source_at_once(offline: int, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.WARNING, logger="etl.fetch")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{offline}")
    monkeypatch.setenv("MEDCORPUS_GITHUB_API", f"http://127.0.0.1:{offline}/api")
    slow_retries = RetryPolicy(attempts=5, base=30.0)  # without the check: minutes of back-off per source
    fetcher = make_fetcher(cache_dir=tmp_path / "cache", retry=slow_retries)
    sources = [source(id="a_src", host="http", url=f"http://127.0.0.1:{offline}/a.json"),
               source(id="b_src", host="hf", repo="org/b", files=["b.json"]),
               source(id="c_src", host="github", repo="o/c", revision="main", files=["c.json"])]
    results = bounded(lambda: fetcher.fetch_many(sources, workers=1))
    assert set(results) == {"a_src", "b_src", "c_src"}
    for sid, result in results.items():
        assert isinstance(result, OfflineError), (sid, result)
        assert result.message.startswith("no network: no dataset host can be reached")
        assert "--mirror examples/mirror" in result.message
    assert sum("no network" in r.getMessage() for r in caplog.records) == 1  # probed once
    assert not any("retrying" in r.getMessage() for r in caplog.records)


def test_a_refused_host_with_the_network_up_is_retried_as_before(fake: FakeHost, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDCORPUS_PROBE_HOSTS", fake.url.removeprefix("http://"))
    fetcher = make_fetcher(cache_dir=tmp_path / "cache", retry=FAST)
    result = fetcher.fetch_many([source(host="http", url=f"http://127.0.0.1:{closed_port()}/a.json")])["src"]
    assert isinstance(result, FetchError) and not isinstance(result, OfflineError), result
    assert "gave up after 2 attempts: ConnectTransient" in result.message or "gave up after 2 attempts" in result.message
    assert network_available() is True


def test_offline_build_names_the_mirror_once_per_source_without_a_traceback(offline: int, tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture) -> None:
    from etl.cli import main

    catalog = tmp_path / "sources.yaml"
    catalog.write_text(
        "sources:\n"
        f"  - {{id: a_src, name: A, host: http, url: 'http://127.0.0.1:{offline}/a.jsonl', task: sft, "
        "format: query_response}\n"
        f"  - {{id: b_src, name: B, host: http, url: 'http://127.0.0.1:{offline}/b.jsonl', task: sft, "
        "format: query_response}\n", encoding="utf-8")
    code = bounded(lambda: main(["build", "--catalog", str(catalog), "--cache", str(tmp_path / "cache"),
                                 "--out", str(tmp_path / "out"), "--workers", "2"]))
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("no network: no dataset host can be reached") >= 2 and "--mirror examples/mirror" in err
    assert "Traceback" not in err and "ConnectionError" not in err


# ---- the cache: files placed by hand, links out of it -------------------------------------------------------

def test_hand_placed_cache_file_that_links_out_of_the_cache_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "passwd"
    outside.write_text("root:x:0:0:root:/root:/bin/bash\n", encoding="utf-8")
    folder = tmp_path / "cache" / "src" / "unversioned"
    folder.mkdir(parents=True)
    (folder / "a.json").symlink_to(outside)
    fetcher = make_fetcher(cache_dir=tmp_path / "cache", retry=FAST)
    result = fetcher.fetch_many([source(host="tianchi", dataset_id="1", files=["a.json"])])["src"]
    assert isinstance(result, FetchError), result
    assert result.message.startswith("a.json: outside_source_folder: a symbolic link to a file outside"), result.message


def test_cache_folder_that_links_out_is_never_written_through(fake: FakeHost, tmp_path: Path) -> None:
    fake.route("GET", r"/data/a\.json", lambda req: Response(DATA))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "cache" / "src" / "unversioned").mkdir(parents=True)
    (tmp_path / "cache" / "src" / "unversioned" / "data").symlink_to(elsewhere, target_is_directory=True)
    fetcher = make_fetcher(cache_dir=tmp_path / "cache", retry=FAST)
    src = source(host="http", url=f"{fake.url}/data/a.json", options={"filename": "data/a.json"})
    result = fetcher.fetch_many([src])["src"]
    assert isinstance(result, FetchError), result
    assert "outside_source_folder" in result.message and list(elsewhere.iterdir()) == []
