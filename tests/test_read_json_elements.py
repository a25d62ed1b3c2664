"""The streaming JSON-array element reader on edge cases: one bad element costs only that element."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etl.read.base import ReadError, ReadItem
from tests.helpers_read import run_reader, summary, write


def read(tmp_path: Path, content: str | bytes, **options: Any) -> list[ReadItem]:
    path = write(tmp_path, "data.json", content.encode("utf-8") if isinstance(content, str) else content)
    return run_reader("json", path, **options)


def test_trailing_comma_before_the_closing_bracket_is_accepted(tmp_path):
    assert summary(read(tmp_path, '[{"a": 1}, {"a": 2},\n]')) == [("element 0", {"a": 1}), ("element 1", {"a": 2})]


def test_an_empty_element_is_one_reject_and_reading_goes_on(tmp_path):
    items = read(tmp_path, '[{"a": 1},, {"a": 3}]')
    assert [s for s in summary(items) if s[1] != "bad_json"] == [("element 0", {"a": 1}), ("element 2", {"a": 3})]
    assert sum(isinstance(i, ReadError) for i in items) == 1


def test_extra_data_after_the_array_is_rejected_not_dropped(tmp_path):
    items = read(tmp_path, '[\n  {"a": 1}\n]\n{"stray": true}\n')
    assert summary(items)[0] == ("element 0", {"a": 1})
    errors = [i for i in items if isinstance(i, ReadError)]
    assert [e.reason for e in errors] == ["bad_json"] and '"stray"' in errors[0].raw


def test_lone_surrogate_in_object_items_mode(tmp_path):
    items = read(tmp_path, '{"1": {"q": "ok"}, "2": {"q": "bad \\ud800"}, "3": {"q": "fine"}}', json_object="items")
    assert summary(items) == [
        ("key 1", {"__key__": "1", "__value__": {"q": "ok"}}),
        ("key 2", "bad_encoding"),
        ("key 3", {"__key__": "3", "__value__": {"q": "fine"}}),
    ]


def test_an_over_long_element_is_rejected_without_losing_its_neighbours(tmp_path):
    big = "病" * 5000
    items = read(tmp_path, f'[{{"a": 1}}, {{"a": "{big}"}}, {{"a": 3}}]', max_line_bytes=1000)
    assert summary(items) == [("element 0", {"a": 1}), ("element 1", "record_too_long"), ("element 2", {"a": 3})]
    assert len(items[1].raw) <= 4096


def test_gb18030_array_is_decoded(tmp_path):
    items = read(tmp_path, '[{"科室": "内科", "问": "頭暈—怎么办"}]'.encode("gb18030"))
    assert summary(items) == [("element 0", {"科室": "内科", "问": "頭暈—怎么办"})]
