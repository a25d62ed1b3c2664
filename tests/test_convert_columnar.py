"""The column-wise conversion path and work units give the bytes of the per-record path: on every
fixture of every catalogued source whose converter has a column-wise twin, on hand-made bad records
(same reject reasons, locations and raw text), and when a source is converted in byte-range units."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl import conversion
from etl.batchrows import VISIBLE_RE2, visible
from etl.catalog import Source, load_catalog
from etl.cli import main
from etl.conversion import Converted, convert_source, convert_unit, merge_units, plan_units
from etl.convert.base import registry
from etl.fetch.base import FetchedFile, FetchedSource, sha256_file
from etl.fetch.mirror import MirrorFetcher
from etl.rows import canonical_json, has_content
from tests.helpers_build import CATALOG, make_mirror

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_ROOTS = (ROOT / "examples" / "mirror", ROOT / "tests" / "fixtures", ROOT / "tests" / "fixtures" / "handmade")
OUTPUTS = ("rows.parquet", "eval.parquet", "rejects.parquet", "counts.json")


def _bytes(converted: Converted) -> dict[str, bytes]:
    return {name: (converted.folder / name).read_bytes() for name in OUTPUTS}


def _rejects(converted: Converted) -> list[dict[str, Any]]:
    return pq.read_table(converted.rejects_path).to_pylist()


def _columnar_sources() -> list[tuple[str, Source, Path]]:
    catalog = load_catalog(ROOT / "sources.yaml", known_formats=set(registry()))
    found = []
    for source in catalog.sources:
        if registry()[source.format].columns is None:
            continue
        for root in FIXTURE_ROOTS:
            if (root / source.id).is_dir():
                found.append((f"{root.relative_to(ROOT)}:{source.id}", source, root))
    return found


SOURCES = _columnar_sources()


def test_every_generic_format_has_fixtures_to_compare() -> None:
    formats = {source.format for _, source, _ in SOURCES}
    assert formats == {"alpaca", "query_response", "sharegpt", "messages", "text", "huatuo26m", "toyhom"}
    assert len(SOURCES) >= 35


@pytest.mark.parametrize(("label", "source", "root"), SOURCES, ids=[label for label, _, _ in SOURCES])
def test_both_paths_give_the_same_bytes_on_every_fixture(label: str, source: Source, root: Path, tmp_path: Path) -> None:
    fetched = MirrorFetcher(root).fetch(source)
    per_record = convert_source(source, fetched, tmp_path / "a", columnar=False)
    columnar = convert_source(source, fetched, tmp_path / "b", columnar=True)
    assert _bytes(columnar) == _bytes(per_record)
    assert columnar.counts == per_record.counts
    assert per_record.counts["read"] > 0


@pytest.mark.parametrize(("label", "source", "root"), SOURCES, ids=[label for label, _, _ in SOURCES])
def test_the_column_wise_path_builds_the_clean_rows(label: str, source: Source, root: Path, tmp_path: Path) -> None:
    """The comparison above cannot tell a column-wise path that hands every record back to the per-record
    path (same bytes, all slow); here every row of a fixture without rejects must come from the batch."""
    fetched = MirrorFetcher(root).fetch(source)
    run = conversion._Conversion(source, tmp_path, columnar=True)
    counts = run.run(conversion._records(source, fetched.source_files()))
    if counts["rejected"] or counts["filtered"] or counts["partial_rejects"]:
        assert 0 < run.columnar_rows <= counts["rows"] + counts["eval_rows"]
    else:
        assert run.columnar_rows == counts["rows"] + counts["eval_rows"] > 0


def _source(tmp_path: Path, fmt: str, lines: list[str], *, task: str = "sft", name: str = "data.jsonl",
            **settings: Any) -> tuple[Source, FetchedSource]:
    folder = tmp_path / "mirror" / "hand"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8", errors="surrogatepass"))
    source = Source(id="hand", name="hand", host="http", url=f"https://example.org/{name}", files=(name,),
                    task=task, format=fmt, **settings)
    fetched = FetchedSource("hand", folder, None, (FetchedFile(name, path, path.stat().st_size, sha256_file(path)),))
    return source, fetched


def _both(tmp_path: Path, source: Source, fetched: FetchedSource) -> Converted:
    per_record = convert_source(source, fetched, tmp_path / "a", columnar=False)
    columnar = convert_source(source, fetched, tmp_path / "b", columnar=True)
    assert _bytes(columnar) == _bytes(per_record)
    return columnar


def _columnar_rows(source: Source, fetched: FetchedSource, folder: Path) -> int:
    """How many rows of the source the column-wise path builds."""
    folder.mkdir(parents=True)
    run = conversion._Conversion(source, folder, columnar=True)
    run.run(conversion._records(source, fetched.source_files()))
    return run.columnar_rows


def _j(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def test_alpaca_bad_records_keep_their_reasons(tmp_path: Path) -> None:
    lines = [
        _j({"instruction": "胃疼怎么办", "input": "", "output": "少食多餐", "id": 1}),
        _j({"instruction": "头晕", "output": "休息", "id": 1}),                     # duplicate native id
        _j({"instruction": "发烧", "id": 2}),                                        # no output
        _j({"instruction": ["not", "text"], "output": "x", "id": 3}),                # wrong type
        _j({"instruction": "", "input": "  ", "output": "x", "id": 4}),              # nothing asked
        _j({"instruction": "咳嗽", "output": "   ", "id": 5}),                        # empty output
        _j(["a", "list"]),                                                           # not an object
        '{"instruction": "broken", ',                                                # bad JSON
        _j({"instruction": "x", "output": "y", "history": [["q"]], "id": 6}),        # bad history
        _j({"instruction": 12, "input": 3.5, "output": 7, "id": 7}),                 # numbers are text
        _j({"instruction": "q", "output": "a", "history": [["hq", "ha"]], "system": " 你是医生 ",
            "extra": {"b": 1, "a": [1, None]}, "id": 8}),
        _j({"instruction": "q", "output": "a\u0000\u2028\"\\", "id": 9}),
        _j({"instruction": "\u3000", "output": "a", "id": 10}),                      # ideographic space only
        _j({"instruction": "q", "output": "\x85\xa0", "id": 11}),                     # C1 control, nbsp only
    ]
    source, fetched = _source(tmp_path, "alpaca", lines, fields={"id": "id"})
    result = _both(tmp_path, source, fetched)
    assert [(r["location"], r["reason"]) for r in _rejects(result)] == [
        ("line 2", "duplicate_id"), ("line 3", "missing_field"), ("line 4", "bad_field_type"),
        ("line 5", "empty_instruction"), ("line 6", "empty_output"), ("line 7", "bad_record_type"),
        ("line 8", "bad_json"), ("line 9", "bad_history"), ("line 13", "empty_instruction"),
        ("line 14", "empty_output")]
    rows = pq.read_table(result.rows_path).to_pylist()
    assert [r["id"] for r in rows] == ["hand/1", "hand/7", "hand/8", "hand/9"]
    assert rows[1]["messages"] == [{"role": "user", "content": "12\n\n3.5", "tool_calls": None},
                                   {"role": "assistant", "content": "7", "tool_calls": None}]
    assert [t["role"] for t in rows[2]["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert json.loads(rows[2]["meta"]) == {"extra": {"a": [1, None], "b": 1}}


def test_sharegpt_and_messages_bad_turns_keep_their_reasons(tmp_path: Path) -> None:
    conv = [{"from": "human", "value": "胃疼"}, {"from": "gpt", "value": "少食多餐"}]
    lines = [
        _j({"conversations": conv}),
        _j({"conversations": conv}),                                                  # same content: id -2
        _j({"conversations": [{"from": "robot", "value": "x"}, {"from": "gpt", "value": "y"}]}),
        _j({"conversations": [{"from": "human", "value": 1}, {"from": "gpt", "value": "y"}]}),
        _j({"conversations": [{"from": "gpt", "value": "y"}, {"from": "human", "value": "x"}]}),
        _j({"conversations": [{"from": "human", "value": "x"}]}),
        _j({"conversations": "not a list"}),
        _j({"conversations": ["not a turn"]}),
        _j({"conversations": []}),
        _j({"conversations": [{"from": "system", "value": "s"}]}),
        _j({"conversations": conv, "system_prompt": "你是医生"}),
        _j({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"},
                              {"from": "system", "value": "late"}, {"from": "gpt", "value": "b"}]}),
        _j({"conversations": conv, "system_prompt": 5}),
    ]
    source, fetched = _source(tmp_path, "sharegpt", lines)
    result = _both(tmp_path, source, fetched)
    assert [(r["location"], r["reason"]) for r in _rejects(result)] == [
        ("line 3", "unknown_role"), ("line 4", "bad_turn"), ("line 5", "bad_role_order"),
        ("line 6", "ends_without_answer"), ("line 7", "bad_field_type"), ("line 8", "bad_turn"),
        ("line 9", "empty_conversation"), ("line 10", "empty_conversation"), ("line 12", "bad_role_order")]
    ids = [r["id"] for r in pq.read_table(result.rows_path).to_pylist()]
    assert ids[1] == ids[0] + "-2" and len(ids) == 4

    messages = [
        _j({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}),
        _j({"messages": [{"role": "tool", "content": "q"}, {"role": "assistant", "content": "a"}]}),
        _j({"messages": [{"role": "user", "content": None}, {"role": "assistant", "content": "a"}]}),
        _j({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]}),
        _j({"messages": {"role": "user"}}),
        _j({"other": 1}),
    ]
    source, fetched = _source(tmp_path / "m", "messages", messages)
    result = _both(tmp_path / "m", source, fetched)
    assert [r["reason"] for r in _rejects(result)] == [
        "unknown_role", "bad_turn", "empty_output", "bad_field_type", "schema_mismatch"]


def test_text_and_query_response_edge_records(tmp_path: Path) -> None:
    source, fetched = _source(tmp_path, "text", ["第一段文字", "   ", "\x01\x02", "second line", "\ufeffbom inside"],
                              task="pretrain", name="data.txt", reader="text")
    result = _both(tmp_path, source, fetched)
    assert [r["reason"] for r in _rejects(result)] == ["empty_text"]
    assert [r["text"] for r in pq.read_table(result.rows_path).to_pylist()] == ["第一段文字", "second line", "\ufeffbom inside"]

    objects = [_j({"text": "doc one", "src": "a"}), _j({"content": "doc two"}), _j({"text": None}), _j("a string")]
    source, fetched = _source(tmp_path / "o", "text", objects, task="pretrain")
    result = _both(tmp_path / "o", source, fetched)
    assert [r["reason"] for r in _rejects(result)] == ["missing_field"]
    assert json.loads(pq.read_table(result.rows_path).to_pylist()[0]["meta"]) == {"src": "a"}

    pairs = [_j({"问": "胃疼", "答": "少食多餐", "科室": "内科"}), _j({"问": "头晕"}), _j({"问": True, "答": "x"}),
             '{"问": "\\ud800", "答": "lone surrogate"}', _j({"问": "q", "答": "a"})]
    source, fetched = _source(tmp_path / "q", "query_response", pairs, fields={"query": "问", "response": "答"},
                              eval_splits=(), splits={"*": "test"}, role="eval")
    result = _both(tmp_path / "q", source, fetched)
    assert [r["reason"] for r in _rejects(result)] == ["missing_field", "bad_field_type", "bad_encoding"]
    assert result.counts["eval_rows"] == 2 and result.counts["rows"] == 0


def test_huatuo26m_odd_records_keep_their_reasons(tmp_path: Path) -> None:
    lines = [
        _j({"questions": [["胃疼怎么办", "胃痛怎么办", "胃疼吃什么"]], "answers": ["少食多餐"], "科室": "内科"}),
        _j({"questions": " 头晕 ", "answers": " 休息 "}),                              # plain strings, stripped
        _j({"questions": ["发烧", "发热"], "answers": [["多喝水", "退烧药"]]}),        # flat list: no paraphrases
        _j({"questions": [], "answers": ["a"]}),                                      # empty list
        _j({"questions": [[]], "answers": ["a"]}),                                    # empty paraphrase group
        _j({"answers": ["a"]}),                                                       # no questions
        _j({"questions": [[1]], "answers": ["a"]}),                                   # not text
        _j({"questions": None, "answers": "a"}),
        _j({"questions": ["  "], "answers": ["a"]}),                                  # empty question
        _j({"questions": ["q"], "answers": ["\u3000\x85"]}),                          # invisible answer
        _j(["q", "a"]),                                                               # not an object
        '{"questions": [["broken"]], ',                                               # bad JSON
        _j({"questions": "头晕", "answers": "休息"}),                                   # same content: id -2
        _j({"questions": [["q", "p"]], "answers": ["a"], "question_paraphrases": "upstream"}),
        '{"questions": "\\ud800", "answers": "lone surrogate"}',
        _j({"questions": [[["deep"]]], "answers": {"not": "text"}}),
        _j({"questions": [["q\u2028\"\\"]], "answers": ["a\u0000b"]}),
    ]
    source, fetched = _source(tmp_path, "huatuo26m", lines)
    result = _both(tmp_path, source, fetched)
    assert [(r["location"], r["reason"]) for r in _rejects(result)] == [
        ("line 4", "empty_list"), ("line 5", "empty_list"), ("line 6", "missing_field"), ("line 7", "bad_field_type"),
        ("line 8", "bad_field_type"), ("line 9", "empty_input"), ("line 10", "empty_output"),
        ("line 11", "bad_record_type"), ("line 12", "bad_json"), ("line 15", "bad_encoding"),
        ("line 16", "bad_field_type")]
    rows = pq.read_table(result.rows_path).to_pylist()
    assert [[t["content"] for t in r["messages"]] for r in rows] == [
        ["胃疼怎么办", "少食多餐"], ["头晕", "休息"], ["发烧", "多喝水"], ["头晕", "休息"], ["q", "a"],
        ["q\u2028\"\\", "a\u0000b"]]
    assert [json.loads(r["meta"]) for r in rows] == [
        {"question_paraphrases": ["胃痛怎么办", "胃疼吃什么"], "科室": "内科"}, {}, {}, {},
        {"question_paraphrases": ["p"]}, {}]
    assert rows[3]["id"] == rows[1]["id"] + "-2"
    assert _columnar_rows(source, fetched, tmp_path / "c") == 6  # every row above came from the batch

    # the Zhongjing mapping with a native id, all eval: duplicate ids are rejected where they repeat
    mapped = [_j({"instruction": ["问一"], "output": ["答一"], "id": 7, "input": ""}),
              _j({"instruction": ["问二"], "output": ["答二"], "id": 7}),
              _j({"instruction": ["问三"], "output": ["答三"], "id": "x"}),
              _j({"questions": ["问四"], "answers": ["答四"], "id": 8})]
    source, fetched = _source(tmp_path / "z", "huatuo26m", mapped, role="eval",
                              fields={"question": "instruction", "answer": "output", "id": "id"})
    result = _both(tmp_path / "z", source, fetched)
    assert [(r["location"], r["reason"]) for r in _rejects(result)] == [("line 2", "duplicate_id"),
                                                                        ("line 4", "missing_field")]
    rows = pq.read_table(result.eval_path).to_pylist()
    assert [(r["id"], r["split"], r["meta"]) for r in rows] == [("hand/7", "train", '{"input": ""}'), ("hand/x", "train", "{}")]
    assert result.counts["eval_rows"] == 2 and result.counts["rows"] == 0


def test_toyhom_odd_rows_keep_their_reasons(tmp_path: Path) -> None:
    lines = [
        "department,title,ask,answer,url",
        "心血管科,高血压能吃党参吗？,我有高血压，能吃党参吗？,可以适量服用。,u1",
        "心血管科,高血压能吃党参吗？,无,可以适量服用。,u2",                     # placeholder ask: the title
        " 内科 ,头晕,头晕三天了,\"多休息，\n复查血压\",u3",                     # quoted newline, padded department
        "内科,,,没有问题,u4",                                                    # no question
        "内科,胃疼,胃疼两天,   ,u5",                                              # no answer
        "内科,只有三列,x",                                                        # wrong field count
        "内科,\x01,\x02,答,u7",                                                 # invisible question
        "内科,咳嗽,\"晚上咳嗽\",\u3000\x01,u8",                                  # invisible answer
        "心血管科,高血压能吃党参吗？,我有高血压，能吃党参吗？,可以适量服用。,u9",   # same content: id -2
        "儿科,发烧,孩子发烧,物理降温\u2028观察,u10",
    ]
    source, fetched = _source(tmp_path, "toyhom", lines, name="data.csv", reader="csv")
    result = _both(tmp_path, source, fetched)
    assert [(r["location"], r["reason"]) for r in _rejects(result)] == [
        ("row 4", "empty_question"), ("row 5", "empty_answer"), ("row 6", "bad_csv_row"),
        ("row 7", "empty_input"), ("row 8", "empty_output")]
    rows = pq.read_table(result.rows_path).to_pylist()
    assert [[t["content"] for t in r["messages"]] for r in rows] == [
        ["高血压能吃党参吗？\n我有高血压，能吃党参吗？", "可以适量服用。"], ["高血压能吃党参吗？", "可以适量服用。"],
        ["头晕三天了", "多休息，\n复查血压"], ["高血压能吃党参吗？\n我有高血压，能吃党参吗？", "可以适量服用。"],
        ["发烧\n孩子发烧", "物理降温\u2028观察"]]
    assert [json.loads(r["meta"]) for r in rows] == [
        {"department": "心血管科", "url": "u1"}, {"department": "心血管科", "url": "u2"},
        {"department": "内科", "url": "u3"}, {"department": "心血管科", "url": "u9"},
        {"department": "儿科", "url": "u10"}]
    assert rows[3]["id"] == rows[0]["id"] + "-2"
    assert _columnar_rows(source, fetched, tmp_path / "c") == 5

    # renamed columns; an upstream `department` column that is not the mapped one wins in meta, as per record
    renamed = ["科室,标题,问,答,department", "内科,胃疼,胃疼两天,少食多餐,消化内科", "外科,骨折,,打石膏,骨科"]
    source, fetched = _source(tmp_path / "r", "toyhom", renamed, name="data.csv", reader="csv",
                              fields={"department": "科室", "title": "标题", "ask": "问", "answer": "答"})
    result = _both(tmp_path / "r", source, fetched)
    rows = pq.read_table(result.rows_path).to_pylist()
    assert [(r["messages"][0]["content"], r["meta"]) for r in rows] == [
        ("胃疼两天", '{"department": "消化内科"}'), ("骨折", '{"department": "骨科"}')]
    missing = ["department,title,answer", "内科,胃疼,少食多餐"]                 # no `ask` column at all
    source, fetched = _source(tmp_path / "m", "toyhom", missing, name="data.csv", reader="csv")
    assert [r["reason"] for r in _rejects(_both(tmp_path / "m", source, fetched))] == ["missing_field"]


def test_visible_matches_has_content_for_every_code_point() -> None:
    chars = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    flags = visible(pa.array(chars, pa.string()))
    assert [c for c, flag in zip(chars, flags, strict=True) if flag != has_content(c)] == []
    assert VISIBLE_RE2.startswith("[^")


@pytest.mark.parametrize("payload", [
    {"text": "a\"\\\n\t\x00\x1f\x7f\u2028é中"},
    {"messages": [{"role": "user", "content": "x\b\f"}, {"content": "答", "role": "assistant"}]},
    {"messages": []},
    {"prompt": [{"role": "user", "content": "q"}], "chosen": "a", "rejected": "b"},
])
def test_canonical_json_is_the_general_encoders_text(payload: dict[str, Any]) -> None:
    assert canonical_json(payload) == json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


# --------------------------------------------------------------------------- work units


def _units(source: Source, fetched: FetchedSource, work: Path, unit_bytes: int) -> Converted:
    units = plan_units(source, fetched, work, workers=2, unit_bytes=unit_bytes)
    assert len(units) > 3 and all(u.file is not None for u in units)
    return merge_units(source, fetched, work, [convert_unit(u) for u in units])


def test_units_give_the_bytes_of_one_pass(tmp_path: Path) -> None:
    lines = []
    for i in range(400):
        if i % 37 == 5:
            lines.append('{"query": "broken",')
        elif i % 50 == 7:
            lines.append("")
        else:
            lines.append(_j({"query": f"问题 {i % 60}", "response": "答" if i % 41 else " ", "n": i}))
    source, fetched = _source(tmp_path, "query_response", lines)
    whole = convert_source(source, fetched, tmp_path / "whole")
    chunked = _units(source, fetched, tmp_path / "units", unit_bytes=2_000)
    assert _bytes(chunked) == _bytes(whole)
    expected = [(f"line {i + 1}", "bad_json" if i % 37 == 5 else "empty_output") for i in range(400)
                if i % 37 == 5 or (i % 50 != 7 and i % 41 == 0)]
    assert [(r["location"], r["reason"]) for r in _rejects(chunked)] == expected
    ids = pq.read_table(chunked.rows_path, columns=["id"]).column("id").to_pylist()
    assert sum(i.endswith("-2") for i in ids) > 0 and len(set(ids)) == len(ids)
    assert not [p for p in chunked.folder.parent.iterdir() if p.name.startswith(".")]  # unit folders gone
    # a second plan finds the committed conversion
    assert plan_units(source, fetched, tmp_path / "units", workers=2, unit_bytes=2_000) == []


def test_ids_are_the_same_when_seen_keys_spill_to_arrays(tmp_path: Path, monkeypatch) -> None:
    """Repeated content and native ids across the spill points of etl/seen.py (a limit of 4 keys) give
    the bytes and rejects of the default limit, on one pass and in units."""
    lines = [_j({"query": f"问题 {i % 23}", "response": "答", "id": i % 170}) for i in range(200)]
    source, fetched = _source(tmp_path, "query_response", lines, fields={"id": "id"})
    plain = [_j({"query": f"问题 {i % 23}", "response": "答"}) for i in range(200)]
    repeated, fetched_repeated = _source(tmp_path / "r", "query_response", plain)
    expected = [_bytes(convert_source(source, fetched, tmp_path / "a")),
                _bytes(convert_source(repeated, fetched_repeated, tmp_path / "b"))]
    monkeypatch.setattr("etl.seen.RECENT_LIMIT", 4)
    natives = convert_source(source, fetched, tmp_path / "c")
    assert _bytes(natives) == expected[0] and natives.counts["rejected_by_reason"] == {"duplicate_id": 30}
    spilled = convert_source(repeated, fetched_repeated, tmp_path / "d")
    assert _bytes(spilled) == expected[1]
    assert _bytes(_units(repeated, fetched_repeated, tmp_path / "e", unit_bytes=1_500)) == expected[1]
    ids = pq.read_table(spilled.rows_path, columns=["id"]).column("id").to_pylist()
    assert len(set(ids)) == 200 and sum(i.endswith("-9") for i in ids) == 200 - 23 * 8


def test_units_of_text_and_per_record_path_and_cross_unit_native_ids(tmp_path: Path) -> None:
    text = [f"第 {i} 行的文字" if i % 9 else "   " for i in range(300)]
    source, fetched = _source(tmp_path, "text", text, task="pretrain", name="data.txt", reader="text")
    assert _bytes(_units(source, fetched, tmp_path / "u", 1_000)) == _bytes(convert_source(source, fetched, tmp_path / "w"))

    # the same native id in two units: its reject needs the record, so the source is converted whole
    records = [_j({"instruction": f"q{i}", "output": "a", "id": i % 150}) for i in range(300)]
    source, fetched = _source(tmp_path / "n", "alpaca", records, fields={"id": "id"})
    chunked = _units(source, fetched, tmp_path / "n-units", 1_500)
    whole = convert_source(source, fetched, tmp_path / "n-whole", columnar=False)
    assert _bytes(chunked) == _bytes(whole)
    assert chunked.counts["rejected_by_reason"] == {"duplicate_id": 150}


def test_small_sources_and_one_worker_stay_one_unit(tmp_path: Path) -> None:
    source, fetched = _source(tmp_path, "query_response", [_j({"query": "q", "response": "a"})] * 50)
    assert len(plan_units(source, fetched, tmp_path / "w", workers=2)) == 1
    assert len(plan_units(source, fetched, tmp_path / "w", workers=1, unit_bytes=100)) == 1
    units = plan_units(source, fetched, tmp_path / "w", workers=2, unit_bytes=100)
    assert len(units) > 1
    converted = merge_units(source, fetched, tmp_path / "w", [convert_unit(u) for u in units])
    assert converted.counts["rows"] == 50


def test_a_two_worker_build_in_units_writes_the_bytes_of_a_one_worker_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = make_mirror(tmp_path)
    (tmp_path / "sources.yaml").write_text(CATALOG, encoding="utf-8")
    monkeypatch.setattr(conversion, "UNIT_BYTES", 4_000)  # plan_units runs in the build's process
    catalog = load_catalog(tmp_path / "sources.yaml", known_formats=set(registry()))
    source = catalog.get("shennong_tcm")
    units = plan_units(source, MirrorFetcher(mirror).fetch(source), tmp_path / "plan", workers=2)
    assert len(units) > 2 and units[1].start > 0 and units[1].first_line > 1
    manifests = []
    for workers in ("1", "2"):
        out = tmp_path / f"out-{workers}"
        args = ["build", "--catalog", str(tmp_path / "sources.yaml"), "--mirror", str(mirror), "--out", str(out)]
        assert main([*args, "--workers", workers]) == 0
        manifests.append(json.loads((out / "manifest.json").read_text(encoding="utf-8")))
    assert [s["sha256"] for s in manifests[0]["shards"]] == [s["sha256"] for s in manifests[1]["shards"]]
    assert manifests[0]["sources"] == manifests[1]["sources"]
    assert manifests[0]["totals"] == manifests[1]["totals"] and sum(s["rows"] for s in manifests[0]["shards"]) > 100
