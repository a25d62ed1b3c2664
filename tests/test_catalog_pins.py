"""Catalogue coordinates: what issue 12 asked of every Hugging Face source, checked on the real catalogue."""

from __future__ import annotations

import re

from etl.catalog import load_catalog
from etl.convert.base import registry
from tests.helpers_convert import CATALOG

FULL_COMMIT = re.compile(r"[0-9a-f]{40}")


def _sources():
    return load_catalog(CATALOG, known_formats=set(registry())).sources


def test_every_enabled_hub_source_is_pinned_to_a_full_commit() -> None:
    loose = [(s.id, s.revision) for s in _sources()
             if s.host == "hf" and s.enabled and not FULL_COMMIT.fullmatch(s.revision or "")]
    assert loose == []


def test_every_source_says_where_its_licence_came_from() -> None:
    assert [s.id for s in _sources() if not (s.license_source or "").strip()] == []


def test_licences_corrected_against_upstream() -> None:
    by_id = {s.id: s for s in _sources()}
    for sid in ("huatuo_encyclopedia_qa", "huatuo_knowledge_graph_qa", "huatuo26m_lite"):
        assert by_id[sid].license == "Apache-2.0" and "apache-2.0" in by_id[sid].license_source
    assert by_id["cmtmedqa_train"].license == "MIT"
    comparison = by_id["comparison_gpt4_data"]
    assert (comparison.host, comparison.repo) == ("hf", "wangrongsheng/comparison_gpt4_data")


def test_disabled_sources_say_why() -> None:
    assert [s.id for s in _sources() if not s.enabled and len((s.disabled_reason or "").strip()) < 20] == []
