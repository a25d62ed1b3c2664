"""`medcorpus build` end to end over the network code: one source per host (Hub, GitHub with a Git LFS
object, Drive through its confirmation page, Tianchi with a cookie and signed URLs, a plain URL, and the
built-in persona), each served by a local server with the real fixture bytes. No test touches the internet.

Proves: the converted rows of a known record per host, the manifest's files and revisions, `medcorpus lock`,
a re-run that makes no request at all and gives byte-identical output, a changed upstream file refused with
source, file, expected and actual sha256, and `medcorpus refresh ID` re-fetching only that source.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from pytest_httpserver import HTTPServer
from werkzeug import Response

import etl.fetch.http
from etl.cli import main, open_catalog
from etl.fetch.http import HttpFetcher
from etl.fetch.net import RetryPolicy
from tests.helpers_badinput import plain_turns
from tests.helpers_fetch import (
    COMMIT,
    FIXTURES,
    FakeHost,
    FakeHub,
    isolate_env,
    ranged,
    serve_drive,
    serve_github,
    serve_hub,
    serve_tianchi,
    sha,
)

SHENNONG = (FIXTURES / "shennong_tcm" / "ChatMed_TCM-v0.2.json").read_bytes()
SFT = (FIXTURES / "medicalgpt_sft_medical" / "data" / "sft" / "medical_sft_1K_format.jsonl").read_bytes()
DPO = (FIXTURES / "medicalgpt_reward" / "data" / "reward" / "dpo_zh_500.jsonl").read_bytes()
GENMED = (FIXTURES / "chatdoctor_genmedgpt5k" / "GenMedGPT-5k.json").read_bytes()
MEDDG_TRAIN = (FIXTURES / "handmade" / "cblue_meddg" / "MedDG_train.json").read_bytes()
MEDDG_DEV = (FIXTURES / "handmade" / "cblue_meddg" / "MedDG_dev.json").read_bytes()
FEVER = (FIXTURES / "medicalgpt_pretrain" / "data" / "pretrain" / "fever.txt").read_bytes()
IDENTITY = (Path(__file__).resolve().parent.parent / "etl" / "data" / "persona" / "identity.jsonl").read_bytes()

GH_COMMIT = "2f1008cfa49cbba69ff6f138c3b5e2fb0646bdc7"
COOKIE = "tc=fake-test-cookie-0123456789; _csrf=abc"
DRIVE_ID = "1nDTKZ3wZbZWTkFMBkxlamrzbNz0frugg"


def catalogue(hf_revision: str) -> str:
    return f"""
build:
  shard_max_bytes: 256MB
  persona: {{name: 小医, author: MedCorpus 测试组}}
sources:
  - {{id: shennong_tcm, name: ShenNong-TCM, host: hf, repo: michaelwzhu/ShenNong_TCM_Dataset,
     revision: {hf_revision}, files: [ChatMed_TCM-v0.2.json], task: sft, format: query_response,
     license: apache-2.0, lang: zh}}
  - {{id: medicalgpt_sft_medical, name: MedicalGPT medical SFT, host: github, repo: shibing624/MedicalGPT,
     revision: {GH_COMMIT}, files: [data/sft/medical_sft_1K_format.jsonl], task: sft, format: sharegpt,
     license: Apache-2.0, lang: zh}}
  - {{id: medicalgpt_reward, name: MedicalGPT DPO (Git LFS), host: github, repo: shibing624/MedicalGPT,
     revision: {GH_COMMIT}, files: [data/reward/dpo_zh_500.jsonl], task: reward, format: preference,
     license: Apache-2.0, lang: zh}}
  - {{id: chatdoctor_genmedgpt5k, name: GenMedGPT-5k, host: gdrive, file_id: {DRIVE_ID},
     filename: GenMedGPT-5k.json, task: sft, format: alpaca, license: Apache-2.0, lang: en}}
  - {{id: cblue_meddg, name: CBLUE MedDG, host: tianchi, dataset_id: "95414", files: ["MedDG_*.json"],
     task: sft, format: meddg, splits: {{"MedDG_dev.json": validation}}, eval_splits: [validation],
     lang: zh, license: Tianchi dataset terms (CBLUE), license_terms: [unclear]}}
  - {{id: fever_text, name: MedicalGPT fever.txt over plain HTTP, host: http, url: "{{base}}/files/fever.txt",
     task: pretrain, format: text, reader: text, license: Apache-2.0, lang: zh}}
  - {{id: persona, name: MedCorpus identity templates, host: builtin, files: [identity.jsonl], task: sft,
     format: persona, lang: und, license: Apache-2.0}}
"""


class World:
    """Every host on one local server, the catalogue beside it, and the CLI calls of a test."""

    def __init__(self, root: Path, fake: FakeHost, monkeypatch: pytest.MonkeyPatch, hf_revision: str) -> None:
        self.root, self.fake = root, fake
        self.catalog = root / "catalog" / "sources.yaml"
        self.catalog.parent.mkdir(parents=True)
        self.catalog.write_text(catalogue(hf_revision).replace("{base}", fake.url), encoding="utf-8")
        self.hub: FakeHub = serve_hub(fake, monkeypatch, {"ChatMed_TCM-v0.2.json": SHENNONG, "README.md": b"# card\n"},
                                      lfs={"ChatMed_TCM-v0.2.json"})
        serve_github(fake, monkeypatch, "shibing624/MedicalGPT", {"data/sft/medical_sft_1K_format.jsonl": SFT},
                     lfs={"data/reward/dpo_zh_500.jsonl": DPO}, commit=GH_COMMIT)
        self.drive_files = {DRIVE_ID: ("GenMedGPT-5k.json", GENMED)}
        serve_drive(fake, monkeypatch, self.drive_files)
        serve_tianchi(fake, monkeypatch, 95414, COOKIE,
                      {"7001": ("MedDG_train.json", MEDDG_TRAIN), "7002": ("MedDG_dev.json", MEDDG_DEV)})
        monkeypatch.setenv("TIANCHI_COOKIE", COOKIE)
        self.plain = {"fever.txt": FEVER}
        fake.route("GET", r"/files/(.+)", lambda req, name: ranged(req, self.plain[name]))

    def run(self, *args: str, cache: str = "cache", out: str = "out") -> int:
        command, *rest = args
        extra = ["--out", str(self.root / out)] if command in ("build", "refresh") else []
        return main([command, *rest, "--catalog", str(self.catalog), "--cache", str(self.root / cache), *extra])

    def manifest(self, out: str = "out") -> dict:
        return json.loads((self.root / out / "manifest.json").read_text(encoding="utf-8"))

    def rows(self, task: str, out: str = "out") -> list[dict]:
        return [plain_turns(row) for path in sorted((self.root / out / task).glob("*.parquet"))
                for row in pq.read_table(path).to_pylist()]

    def snapshot(self, out: str = "out") -> dict[str, bytes]:
        folder = self.root / out
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
                if p.is_file() and not p.relative_to(folder).parts[0].startswith(".")}


@pytest.fixture
def world(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> World:
    isolate_env(monkeypatch, tmp_path)
    return World(tmp_path, FakeHost(httpserver), monkeypatch, "main")


def first_json_line(data: bytes) -> dict:
    return json.loads(data.decode("utf-8").splitlines()[0])


def by_source(rows: list[dict], source_id: str) -> list[dict]:
    return [r for r in rows if r["source"] == source_id]


def assert_known_records(world: World) -> None:
    """One record per host, converted exactly (the fixture's text, the converter's layout)."""
    sft = world.rows("sft")
    shennong = first_json_line(SHENNONG)  # hf
    assert by_source(sft, "shennong_tcm")[0]["messages"] == [
        {"role": "user", "content": shennong["query"]}, {"role": "assistant", "content": shennong["response"]}]
    turns = first_json_line(SFT)["conversations"]  # github, raw file
    assert by_source(sft, "medicalgpt_sft_medical")[0]["messages"] == [
        {"role": "user", "content": turns[0]["value"]}, {"role": "assistant", "content": turns[1]["value"]}]
    dpo = first_json_line(DPO)  # github, Git LFS object behind a pointer
    reward = by_source(world.rows("reward"), "medicalgpt_reward")
    assert len(reward) == 34
    assert reward[0]["prompt"] == [{"role": "user", "content": dpo["conversations"][0]["value"]}]
    assert (reward[0]["chosen"][0]["content"], reward[0]["rejected"][0]["content"]) == (dpo["chosen"], dpo["rejected"])
    genmed = json.loads(GENMED)[0]  # gdrive
    assert by_source(sft, "chatdoctor_genmedgpt5k")[0]["messages"] == [
        {"role": "user", "content": f"{genmed['instruction']}\n\n{genmed['input']}"},
        {"role": "assistant", "content": genmed["output"]}]
    meddg = by_source(sft, "cblue_meddg")  # tianchi: train only, dev feeds decontamination
    assert len(meddg) == 1 and meddg[0]["split"] == "train"
    assert meddg[0]["messages"] == [
        {"role": "user", "content": "胃胀，吃完饭就胀（女，25岁）"}, {"role": "assistant", "content": "有没有反酸烧心？"},
        {"role": "user", "content": "有一点反酸\n没有烧心"}, {"role": "assistant", "content": "建议做个胃镜，可以先吃点奥美拉唑。"}]
    assert json.loads(meddg[0]["meta"])["entities"]["Test"] == ["胃镜"]
    fever = by_source(world.rows("pretrain"), "fever_text")  # plain http
    assert fever[1]["text"] == FEVER.decode("utf-8").splitlines()[1]
    persona = {r["id"]: r for r in by_source(sft, "persona")}  # builtin, filled from build.persona
    assert persona["persona/zh-01"]["messages"] == [
        {"role": "user", "content": "你是谁？"},
        {"role": "assistant", "content": "我是小医，一个由MedCorpus 测试组开发的医疗健康助手。我可以解答常见的健康和医学问题，"
                                         "但不能代替医生的面诊和诊断。"}]
    assert not any("<NAME>" in m["content"] or "<AUTHOR>" in m["content"]
                   for r in persona.values() for m in r["messages"])


EXPECTED_FILES = {
    "shennong_tcm": ("ChatMed_TCM-v0.2.json", SHENNONG),
    "medicalgpt_sft_medical": ("data/sft/medical_sft_1K_format.jsonl", SFT),
    "medicalgpt_reward": ("data/reward/dpo_zh_500.jsonl", DPO),
    "chatdoctor_genmedgpt5k": ("GenMedGPT-5k.json", GENMED),
    "cblue_meddg": None,
    "fever_text": ("fever.txt", FEVER),
    "persona": ("identity.jsonl", IDENTITY),
}


def test_build_fetches_every_host_then_lock_and_rebuild_make_no_request(world: World,
                                                                         capsys: pytest.CaptureFixture) -> None:
    assert world.run("build") == 0
    manifest = world.manifest()
    assert all(entry["status"] == "ok" for entry in manifest["sources"].values()), manifest["sources"]
    assert_known_records(world)

    # the manifest names exactly the bytes that were served, and the revision each source was read at
    for sid, expected in EXPECTED_FILES.items():
        files = manifest["sources"][sid]["files"]
        if expected is None:
            assert files == [{"path": "MedDG_dev.json", "size": len(MEDDG_DEV), "sha256": sha(MEDDG_DEV)},
                             {"path": "MedDG_train.json", "size": len(MEDDG_TRAIN), "sha256": sha(MEDDG_TRAIN)}]
        else:
            assert files == [{"path": expected[0], "size": len(expected[1]), "sha256": sha(expected[1])}], sid
    revisions = {sid: entry["revision"] for sid, entry in manifest["sources"].items()}
    assert revisions == {"shennong_tcm": COMMIT,  # the branch `main`, as resolved by the Hub
                         "medicalgpt_sft_medical": GH_COMMIT, "medicalgpt_reward": GH_COMMIT,
                         "chatdoctor_genmedgpt5k": None, "cblue_meddg": None, "fever_text": None, "persona": None}

    # every host was really asked, through its own protocol
    fake = world.fake
    assert fake.count("/api/datasets/michaelwzhu/ShenNong_TCM_Dataset/revision/main") == 1
    assert fake.count("/datasets/michaelwzhu/ShenNong_TCM_Dataset/resolve/") == 1
    assert fake.count("/raw/shibing624/MedicalGPT/") == 2 and fake.count("/media/shibing624/MedicalGPT/") == 1
    assert fake.count("/uc?") == 1 and fake.count("/download?") == 1
    assert fake.count("/api/notebook/dataDetail", "POST") == 1 and fake.count("/oss/") == 2
    assert fake.count("/files/fever.txt") == 1
    first = world.snapshot()

    # lock: branches pinned to their commit, every file's size and sha256, deterministic and secret-free
    assert world.run("lock") == 0
    lock_path = world.catalog.with_name("sources.lock")
    lock = json.loads(lock_path.read_text(encoding="utf-8"))
    assert lock["sources"]["shennong_tcm"] == {
        "host": "hf", "revision": "main", "resolved": COMMIT,
        "files": {"ChatMed_TCM-v0.2.json": {"size": len(SHENNONG), "sha256": sha(SHENNONG)}}}
    assert lock["sources"]["medicalgpt_reward"]["files"] == {
        "data/reward/dpo_zh_500.jsonl": {"size": len(DPO), "sha256": sha(DPO)}}
    assert set(lock["sources"]) == set(EXPECTED_FILES) - {"persona"}
    text = lock_path.read_text(encoding="utf-8")
    assert "fake-test-cookie" not in text and "Signature" not in text and str(world.root) not in text

    # a re-run with the lock: not one request to any host, and the same bytes
    fake.log.clear()
    capsys.readouterr()
    assert world.run("build") == 0
    assert fake.log == []
    assert world.snapshot() == first
    assert "re-converted: none; from cache: 7 source(s)" in capsys.readouterr().err


def test_a_changed_upstream_file_is_refused_against_the_lock(world: World, capsys: pytest.CaptureFixture) -> None:
    assert world.run("build") == 0 and world.run("lock") == 0
    world.plain["fever.txt"] = FEVER.replace("传染病".encode(), "感染病".encode())
    capsys.readouterr()
    assert world.run("build", cache="fresh-cache", out="out2") == 1
    err = capsys.readouterr().err
    entry = world.manifest("out2")["sources"]["fever_text"]
    assert entry["status"] == "failed"
    changed = sha(world.plain["fever.txt"])
    for text in (entry["error"], " ".join(err.split())):
        assert "fever_text" in text and "fever.txt" in text
        assert f"expected sha256 {sha(FEVER)}" in text and changed in text
    assert not (world.root / "fresh-cache" / "fever_text" / "unversioned" / "fever.txt").exists()
    # the other sources were fetched and written as before
    assert world.manifest("out2")["sources"]["shennong_tcm"]["counts"]["written"] == 39


@pytest.fixture
def pinned(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> World:
    """The same world with the Hub source pinned to a commit, so no source needs the network to resolve."""
    isolate_env(monkeypatch, tmp_path)
    return World(tmp_path, FakeHost(httpserver), monkeypatch, COMMIT)


def test_refresh_refetches_only_the_named_source(pinned: World, capsys: pytest.CaptureFixture) -> None:
    world = pinned
    assert world.run("build") == 0
    before = world.manifest()
    genmed = json.loads(GENMED)
    changed = json.dumps(genmed[1:], indent=6).replace("\n", "\r\n").encode()  # upstream dropped a record
    world.drive_files[DRIVE_ID] = ("GenMedGPT-5k.json", changed)
    world.fake.log.clear()
    capsys.readouterr()

    assert world.run("refresh", "chatdoctor_genmedgpt5k", "--force") == 0
    paths = [path for _, path, _ in world.fake.log]
    assert len(paths) == 2 and paths[0].startswith("/uc?") and paths[1].startswith("/download?")
    after = world.manifest()
    assert after["sources"]["chatdoctor_genmedgpt5k"]["files"][0]["sha256"] == sha(changed)
    assert {sid: e["files"] for sid, e in after["sources"].items() if sid != "chatdoctor_genmedgpt5k"} == \
        {sid: e["files"] for sid, e in before["sources"].items() if sid != "chatdoctor_genmedgpt5k"}
    assert after["sources"]["chatdoctor_genmedgpt5k"]["counts"]["written"] == 39
    rows = by_source(world.rows("sft"), "chatdoctor_genmedgpt5k")
    assert rows[0]["messages"][1]["content"] == genmed[1]["output"]
    assert "re-converted: chatdoctor_genmedgpt5k; from cache: 6 source(s)" in capsys.readouterr().err

    # the refreshed output is the output of a clean build from the same upstream
    world.fake.log.clear()
    assert world.run("build", cache="clean-cache", out="clean") == 0
    assert world.snapshot("clean") == world.snapshot("out")


# ---- web pages (`urls:`): robots.txt, spacing between requests, a cap per run, the user agent --------------

PAGES = FIXTURES / "handmade" / "zysj_tcm" / "pages"
ROBOTS = "User-agent: *\nDisallow: /lilunshuji/neikexue/\n"


class FakeTime:
    """A clock that only moves when slept on; records every wait."""

    def __init__(self) -> None:
        self.now, self.waits = 1000.0, []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def zysj_site(fake: FakeHost, robots: str | None = ROBOTS) -> dict[str, bytes]:
    """The five zysj_tcm URLs of the catalogue, served under the same paths (hand-made pages)."""
    pages = {"/zhongyaocai/renshen/index.html": (PAGES / "zhongyaocai_renshen_index.html").read_bytes(),
             "/zhongyaocai/zhizi/index.html": (PAGES / "navigation_only.html").read_bytes(),
             "/lilunshuji/shennongbencaojing/quanben.html":
                 (PAGES / "lilunshuji_shennongbencaojing_quanben.html").read_bytes(),
             "/lilunshuji/neikexue/quanben.html": b"<html><body>forbidden by robots.txt</body></html>",
             "/lilunshuji/zhenjiuxue/index.html": "<html><body><p>针灸学</p></body></html>".encode()}
    if robots is not None:
        fake.route("GET", r"/robots\.txt", lambda req: Response(robots, content_type="text/plain"))
    fake.route("GET", r"(/(?:zhongyaocai|lilunshuji)/.+)", lambda req, path: Response(
        pages[path], content_type="text/html; charset=utf-8") if path in pages else Response("no", status=404))
    return pages


def zysj_source(fake: FakeHost, **options: object):  # noqa: ANN201 - Source
    """The catalogue's zysj_tcm entry, its URLs moved to the local server."""
    source = open_catalog(str(Path(__file__).resolve().parent.parent / "sources.yaml")).get("zysj_tcm")
    urls = tuple(url.replace("https://www.zysj.com.cn", fake.url) for url in source.urls)
    return source.model_copy(update={"urls": urls, "enabled": True, "options": {
        **source.options, "robots_txt": f"{fake.url}/robots.txt", **options}})


def test_pages_follow_robots_txt_delay_cap_and_user_agent(httpserver: HTTPServer, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="etl.fetch")
    fake = FakeHost(httpserver)
    zysj_site(fake)
    source = zysj_source(fake, max_pages_per_run=3)
    assert source.options["min_delay_seconds"] == 5
    agent = source.options["user_agent"]
    time = FakeTime()

    def fetcher() -> HttpFetcher:
        return HttpFetcher(tmp_path / "cache", retry=RetryPolicy(attempts=2, base=0.0), clock=time.clock,
                           sleep=time.sleep)

    first = fetcher()
    got = first.fetch(source)
    requested = [path for _, path, _ in fake.log]
    assert requested == ["/robots.txt", "/zhongyaocai/renshen/index.html", "/zhongyaocai/zhizi/index.html",
                         "/lilunshuji/shennongbencaojing/quanben.html"]
    assert time.waits == [5, 5, 5]  # robots.txt, then each page 5 s after the previous request
    assert all(headers["User-Agent"] == agent for _, _, headers in fake.log)
    forbidden = f"{fake.url}/lilunshuji/neikexue/quanben.html"
    assert [url for url, _ in first.report.skipped] == [forbidden]
    assert "disallowed by" in first.report.skipped[0][1] and "robots.txt" in first.report.skipped[0][1]
    assert first.report.left == 1
    assert f"skipped {forbidden}: disallowed by" in caplog.text
    assert "stopped after 3 page(s) (max_pages_per_run); 1 page(s) left" in caplog.text
    assert [f.relpath for f in got.files] == [f"pages/{etl.fetch.http.page_name(u)}.html" for u in first.report.fetched]

    # the next run reads robots.txt again and fetches only what is left, then the source is complete
    fake.log.clear()
    time.waits.clear()
    second = fetcher()
    got = second.fetch(source)
    assert [path for _, path, _ in fake.log] == ["/robots.txt", "/lilunshuji/zhenjiuxue/index.html"]
    assert time.waits == [5] and second.report.left == 0
    allowed = [u for u in source.urls if u != forbidden]
    assert [f.relpath for f in got.files] == [f"pages/{etl.fetch.http.page_name(u)}.html" for u in allowed]
    fake.log.clear()
    assert fetcher().fetch(source).files == got.files
    assert fake.log == [] and time.waits == [5]


def test_crawl_delay_in_robots_txt_and_a_missing_robots_txt(httpserver: HTTPServer, tmp_path: Path) -> None:
    fake = FakeHost(httpserver)
    zysj_site(fake, robots="User-agent: medcorpus\nCrawl-delay: 12\nDisallow: /zhongyaocai/\n")
    time = FakeTime()
    source = zysj_source(fake, min_delay_seconds=2)
    fetcher = HttpFetcher(tmp_path / "a", retry=RetryPolicy(attempts=1), clock=time.clock, sleep=time.sleep)
    got = fetcher.fetch(source)
    assert len(got.files) == 3 and len(fetcher.report.skipped) == 2  # the rule for "MedCorpus/0.1 (...)"
    assert time.waits == [12, 12, 12]

    other = FakeHost(HTTPServer(host="127.0.0.1", port=0))
    other.server.start()
    try:
        zysj_site(other, robots=None)  # robots.txt answers 404: everything is allowed
        time = FakeTime()
        fetcher = HttpFetcher(tmp_path / "b", retry=RetryPolicy(attempts=1), clock=time.clock, sleep=time.sleep)
        got = fetcher.fetch(zysj_source(other))
        assert len(got.files) == 5 and fetcher.report.skipped == [] and time.waits == [5] * 5
    finally:
        other.server.clear()
        other.server.stop()


def test_build_of_the_web_source_through_the_polite_crawler(httpserver: HTTPServer, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_env(monkeypatch, tmp_path)
    fake = FakeHost(httpserver)
    zysj_site(fake)
    time = FakeTime()
    monkeypatch.setattr(etl.fetch.http, "default_clock", time.clock)
    monkeypatch.setattr(etl.fetch.http, "default_sleep", time.sleep)
    source = zysj_source(fake)
    catalog = tmp_path / "sources.yaml"
    entry = source.model_dump(mode="json", exclude_defaults=True)
    catalog.write_text(yaml.safe_dump({"build": {"shard_max_bytes": "256MB"}, "sources": [entry]},
                                      allow_unicode=True), encoding="utf-8")
    assert main(["build", "--catalog", str(catalog), "--cache", str(tmp_path / "cache"),
                 "--out", str(tmp_path / "out")]) == 0
    assert time.waits == [5] * 4 and fake.count("neikexue") == 0
    rows = [r for p in sorted((tmp_path / "out" / "pretrain").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert [r["source"] for r in rows] == ["zysj_tcm", "zysj_tcm"]  # the navigation-only page has no content
    assert "人参" in rows[0]["text"]
