"""The Ray engine (`--engine ray`): the engine contract on both engines, and the demo build on Ray gives
the same bytes as the local build. Skipped where the optional extra `.[ray]` is not installed; `make test`
installs it. One local Ray (2 CPUs) serves the whole module."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from etl.cli import main  # noqa: E402
from etl.engines import make_engine  # noqa: E402
from etl.engines.local import LocalEngine  # noqa: E402
from etl.engines.ray import RayEngine  # noqa: E402
from etl.read.base import SourceFileError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def test_an_engine_it_starts_is_shut_down_and_nothing_else():
    assert not ray.is_initialized()
    engine = make_engine("ray", 1)
    assert isinstance(engine, RayEngine) and ray.is_initialized()
    assert ray.cluster_resources()["CPU"] == 1            # a local Ray sized by --workers
    with engine:
        assert list(engine.map(functools.partial(_scale, 2), [1, 2])) == [2, 4]
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(params=["local", "ray"])
def engine(request) -> Iterator[LocalEngine | RayEngine]:
    if request.param == "ray":
        request.getfixturevalue("ray_session")
        with RayEngine(2) as ray_engine:
            yield ray_engine
        assert ray.is_initialized()                       # the session it did not start is left running
    else:
        with LocalEngine(2) as local_engine:
            yield local_engine


def _scale(factor: int, value: int) -> int:
    return factor * value


def _slow_first(count: int, value: int) -> int:
    time.sleep(0.03 * (count - value))                    # early items finish last
    return value * value


def _fail(bad: int, value: int) -> int:
    if value == bad:
        raise ValueError(f"unit {value} is broken")
    return value + 100


def _unreadable(value: int) -> int:
    if value == 1:
        raise SourceFileError("data/train.json", "truncated", "archive ends at byte 512")
    return value


class _Heavy:
    """A large function whose every unpickling is logged with the loading process's id."""

    def __init__(self, log: Path) -> None:
        self.log, self.payload = log, os.urandom(8 << 20)

    def __getstate__(self) -> dict:
        return {"log": self.log, "payload": self.payload}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        with open(self.log, "a") as handle:
            handle.write(f"{os.getpid()}\n")

    def __call__(self, value: int) -> int:
        return value + len(self.payload)


def test_map_keeps_input_order_when_early_items_finish_last(engine):
    consumed: list[int] = []

    def items() -> Iterator[int]:
        for value in range(16):
            consumed.append(value)
            yield value

    results = engine.map(functools.partial(_slow_first, 16), items())
    first = next(results)
    assert len(consumed) <= 2 * engine.workers             # bounded read-ahead, not the whole input
    assert [first, *results] == [v * v for v in range(16)]


def test_map_units_gives_each_unit_its_own_result_or_error(engine):
    thunks = list(engine.map_units(functools.partial(_fail, 2), [(1,), (2,), (3,)]))
    assert thunks[0]() == 101 and thunks[2]() == 103
    with pytest.raises(ValueError, match="unit 2 is broken"):
        thunks[1]()


def test_map_raises_the_failing_items_error(engine):
    with pytest.raises(ValueError, match="unit 5 is broken"):
        list(engine.map(functools.partial(_fail, 5), range(10)))


@pytest.mark.parametrize("engine", ["ray"], indirect=True)  # local sends it with each item (engines/local.py)
def test_a_large_function_is_shipped_once_per_worker(engine, tmp_path):
    log = tmp_path / "loads.txt"
    results = list(engine.map(_Heavy(log), range(40)))
    assert results == [v + (8 << 20) for v in range(40)]
    loads = log.read_text().split()
    assert 1 <= len(loads) <= engine.workers
    assert len(set(loads)) == len(loads)                   # no worker loaded it twice


def test_an_exception_pickle_cannot_rebuild_keeps_its_type_and_fields(engine):
    thunks = list(engine.map_units(_unreadable, [(0,), (1,), (2,)]))
    with pytest.raises(SourceFileError) as caught:
        thunks[1]()
    assert (caught.value.file, caught.value.reason) == ("data/train.json", "truncated")
    assert str(caught.value) == "data/train.json: truncated: archive ends at byte 512"
    assert thunks[0]() == 0 and thunks[2]() == 2                # the other units are unharmed


def test_an_oserror_keeps_its_filename(ray_session):
    # the build tells the build's own storage failing from a source's failure by the error's filename
    with RayEngine(2) as engine:
        [thunk] = engine.map_units(_disk_full, [("out/.work/convert/x.parquet",)])
        with pytest.raises(OSError) as caught:
            thunk()
    assert (caught.value.errno, caught.value.filename) == (28, "out/.work/convert/x.parquet")
    assert pickle.loads(pickle.dumps(caught.value)).filename == caught.value.filename


def _disk_full(path: str) -> None:
    raise OSError(28, "No space left on device", path)


# --------------------------------------------------------------------------- same bytes as local


def _build(out: Path, *engine_args: str, mirror: Path = ROOT / "examples" / "mirror") -> dict[str, str]:
    code = main(["build", "--catalog", str(ROOT / "sources.yaml"), "--mirror", str(mirror), "--out", str(out),
                 *engine_args])
    assert code == 0
    # every published file, and every Parquet file of the build's cache (the conversion units' output)
    files = sorted(p for p in out.rglob("*") if p.is_file() and (".work" not in p.parts or p.suffix == ".parquet"))
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_the_demo_build_on_ray_is_byte_identical_to_the_local_build(ray_session, tmp_path):
    on_ray = _build(tmp_path / "ray", "--engine", "ray", "--workers", "2")
    local_two = _build(tmp_path / "local2", "--engine", "local", "--workers", "2")
    local_one = _build(tmp_path / "local1", "--workers", "1")
    assert {"manifest.json", "README.md", "pretrain/train-00000-of-00001.parquet", "sft/train-00000-of-00001.parquet",
            "reward/train-00000-of-00001.parquet", "rejects/rejects-00000-of-00001.parquet"} <= set(on_ray)
    assert sum(name.startswith(".work/convert/") for name in on_ray) >= 50     # per-source conversion output
    assert on_ray == local_two
    assert on_ray == local_one


def test_the_scaled_benchmark_mirror_on_ray_is_byte_identical_to_the_local_build(ray_session, tmp_path):
    """The benchmark's scaled mirror (bench/generate.py, planted near-duplicates across sources), large
    enough that the SFT task spans several record batches, so every global pass merges the results of
    several Ray tasks."""
    from bench.generate import scaled_mirror

    mirror = tmp_path / "mirror"
    scaled_mirror(mirror, 24_000, seed=7, demo=ROOT / "examples" / "mirror")
    on_ray = _build(tmp_path / "ray", "--engine", "ray", "--workers", "2", mirror=mirror)
    local = _build(tmp_path / "local", "--engine", "local", "--workers", "2", mirror=mirror)
    assert on_ray == local
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["splits"]["sft"]["train"]["rows"] > 10_000       # more than one record batch
    assert manifest["totals"]["near_dup"] > 0 and manifest["totals"]["exact_dup"] > 0
