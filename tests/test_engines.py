"""The executor seam: the local engine keeps order and per-unit errors, and the stage executor gives
the same rows as the in-memory reference runner whatever the worker count."""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from etl.catalog import BuildConfig, DecontamConfig
from etl.engines import make_engine
from etl.engines.local import LocalEngine
from etl.executor import TaskRun
from etl.stages.memory import run_in_memory
from etl.stages.pipeline import default_stages
from tests.stage_rows import pretrain

BASE = ("患者男，45岁，因反复胸闷、气短3年，加重1周入院。既往有高血压病史10年，规律服用氨氯地平，"
        "近期夜间阵发性呼吸困难，不能平卧，双下肢轻度水肿。")


def _scale(factor: int, value: int) -> int:
    return factor * value


def _fail_on_two(value: int) -> int:
    if value == 2:
        raise ValueError("two is broken")
    return value * 10


def test_local_map_keeps_input_order_on_two_workers():
    with LocalEngine(2) as engine:
        assert list(engine.map(functools.partial(_scale, 3), range(50))) == [3 * i for i in range(50)]


def test_map_units_reports_each_units_own_error():
    with LocalEngine(2) as engine:
        thunks = list(engine.map_units(_fail_on_two, [(1,), (2,), (3,)]))
        assert thunks[0]() == 10 and thunks[2]() == 30
        with pytest.raises(ValueError, match="two is broken"):
            thunks[1]()


def test_engine_choice_is_checked():
    with pytest.raises(ValueError, match="unknown engine"):
        make_engine("spark")
    with pytest.raises(ValueError, match="--ray-address needs --engine ray"):
        make_engine("local", 2, "ray://head:10001")


def _corpus() -> pa.Table:
    texts = []
    for i in range(900):
        if i % 3 == 0:
            texts.append(BASE + f"第{i}例。")
        elif i % 3 == 1:
            texts.append(BASE.replace("胸闷", "胸悶") + f"第{i - 1}例。")      # exact copy after normalising
        else:
            texts.append("病例：" + BASE.replace("规律", "規律").replace("夜间", "夜問") + f"第{i - 2}例。")
    texts.append("Which drug is first-line for type 2 diabetes? Metformin is first-line for most adults.")
    sources = [f"src{i % 4}" for i in range(len(texts))]
    return pretrain(texts, sources=sources, priorities=[10 * (i % 4) for i in range(len(texts))])


def _eval() -> pa.Table:
    return pa.table({"task": ["pretrain"], "id": ["ev/1"], "source": ["ev"],
                     "text": ["Which drug is first-line for type 2 diabetes? Metformin is first-line"],
                     "messages": pa.nulls(1, pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
                     "prompt": pa.nulls(1, pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
                     "chosen": pa.nulls(1, pa.string()), "rejected": pa.nulls(1, pa.string())})


@pytest.mark.parametrize("workers", [1, 2])
def test_executor_matches_the_in_memory_runner(tmp_path, workers):
    table, evals = _corpus(), _eval()
    build = BuildConfig(decontam=DecontamConfig(ngram_en=4))
    expected, expected_removed = run_in_memory("pretrain", table, default_stages("pretrain", build),
                                               tmp_path / "mem", tmp_path / "mem-reports", eval_table=evals,
                                               batch_rows=128)

    def source(columns: list[str] | None) -> Iterator[pa.RecordBatch]:
        for batch in table.to_batches(max_chunksize=128):
            yield batch if columns is None else batch.select(columns)

    def scan_eval(columns: list[str]) -> Iterator[pa.RecordBatch]:
        return iter(evals.select([c for c in columns if c in evals.column_names]).to_batches())

    with LocalEngine(workers) as engine:
        run = TaskRun("pretrain", default_stages("pretrain", build), tmp_path / "work", tmp_path / "reports",
                      scan_eval, engine)
        got = pa.Table.from_batches(list(run.run(source, set(table.column_names))))
    assert got.select(expected.column_names).to_pylist() == expected.to_pylist()
    assert {k: dict(v) for k, v in run.removed.items() if v} == {k: dict(v) for k, v in expected_removed.items() if v}
    assert run.removed["exact_dedup"].total() == 300 and run.removed["near_dedup"].total() > 100
    assert run.removed["decontaminate"].total() == 1
    assert not (tmp_path / "work").exists()   # scratch is gone once the task's rows are out


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (an exited child nobody has reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("signal_number", [signal.SIGKILL, signal.SIGTERM])
def test_pool_workers_end_when_the_build_is_killed(signal_number):
    """A build killed while its pool is up must not leave the workers running (seen before: both kept
    running, holding their memory, after kill -9 and after SIGTERM)."""
    script = ("import sys, time\nfrom etl.engines.local import LocalEngine\n"
              "engine = LocalEngine(2)\nassert list(engine.map(abs, [-1, -2, -3, -4])) == [1, 2, 3, 4]\n"
              "print('ready', flush=True)\ntime.sleep(120)\n")
    build = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parent.parent)
    try:
        assert build.stdout is not None and build.stdout.readline().strip() == "ready"
        workers = [pid for pid in _children(build.pid) if _alive(pid)]
        assert workers, "the pool started no worker"
        build.send_signal(signal_number)
        build.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [pid for pid in workers if _alive(pid)] == []
    finally:
        build.kill()
        build.wait()


def test_a_worker_releases_memory_when_its_phase_changes(monkeypatch):
    """Pages go back at phase changes (the function given changes), not after every item."""
    from etl.engines import local

    released: list[str | None] = []
    monkeypatch.setattr(local, "release_memory", lambda: released.append(local._Phases.last))
    monkeypatch.setattr(local._Phases, "last", None)
    monkeypatch.setattr(local._Loaded, "functions", {})
    calls = [functools.partial(_scale, 2), functools.partial(_scale, 3), _fail_on_two, _fail_on_two,
             functools.partial(_scale, 4)]
    assert [local._call(n, (n,), fn, 5)[1] for n, fn in enumerate(calls)] == [10, 15, 50, 50, 20]
    assert local._call_unit(_scale, (2, 6)) == 12
    assert released == ["tests.test_engines._scale", "tests.test_engines._fail_on_two"]


def test_a_piece_reader_is_a_phase_of_the_function_it_wraps():
    """Every map over file pieces runs `run_replayed`: the function it wraps tells the phases apart."""
    from etl.engines.local import _Phases
    from etl.executor import run_replayed

    assert _Phases.kind(functools.partial(run_replayed, functools.partial(_scale, 2), (), None)) == \
        "etl.executor.run_replayed/tests.test_engines._scale"
    assert _Phases.kind(functools.partial(run_replayed, _fail_on_two, (), ["n"])) == \
        "etl.executor.run_replayed/tests.test_engines._fail_on_two"
    assert _Phases.kind(_fail_on_two) == "tests.test_engines._fail_on_two"


class _Counted:
    """A map function that counts, in the driver, how often it is serialised to go to a worker."""

    sent = 0

    def __init__(self, factor: int) -> None:
        self.factor = factor

    def __call__(self, value: int) -> int:
        return value * self.factor

    def __getstate__(self) -> dict[str, int]:
        type(self).sent += 1
        return {"factor": self.factor}


def test_a_map_function_crosses_to_each_worker_about_once(monkeypatch):
    """A large function (a dedup resolution) sent with every batch made the bytes through the pipes
    grow with the square of the corpus; it now goes with the first items only, until every worker
    holds it, and each map uses its own function even when two maps are under way at once."""
    monkeypatch.setattr(_Counted, "sent", 0)
    with LocalEngine(2) as engine:
        assert list(engine.map(_Counted(3), range(60))) == [3 * i for i in range(60)]
        assert 2 <= _Counted.sent <= 12
        first, second = engine.map(_Counted(5), range(30)), engine.map(_Counted(7), range(30))
        pairs = [(next(first), next(second)) for _ in range(30)]
        assert pairs == [(5 * i, 7 * i) for i in range(30)]
        assert list(first) == list(second) == []
        assert list(engine.map(_Counted(11), range(5))) == [11 * i for i in range(5)]
        assert engine._live == set()
