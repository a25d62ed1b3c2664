"""Catalogue coordinates: what issue 12 asked of every Hugging Face source, checked on the real catalogue."""

from __future__ import annotations

import re

from etl.build import BuildOptions, licence_categories, licence_exclusion
from etl.card import hub_license_id
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


def _blocks() -> dict[str, str]:
    """Each source's catalogue text, comments included (the model drops comments)."""
    text = CATALOG.read_text(encoding="utf-8")
    parts = re.split(r"(?m)^- id: ", text)[1:]
    return {part.split("\n", 1)[0].strip(): part for part in parts}


def test_every_licence_source_can_be_checked() -> None:
    """A licence source names the commit or page it was read at, or says why it could not be read; never the
    vague "checked when catalogued"."""
    unchecked = []
    for s in _sources():
        text = s.license_source or ""
        if s.host == "builtin":
            continue
        pinned = FULL_COMMIT.search(text) is not None
        explained = re.search(r"not (readable|reachable|read\b|found)|unreachable|was found offline", text) is not None
        if "checked when catalogued" in text or not (pinned or explained):
            unchecked.append(s.id)
        if s.host == "github" and f"github.com/{s.repo}" not in text and "hosted in github.com/" not in text:
            unchecked.append(s.id)
    assert unchecked == []


def test_research_only_data_is_never_shown_as_unrestricted() -> None:
    """Where the code licence is permissive but the README limits the data to research, the data terms win:
    the source carries `academic-only` (the card warns about it), its `license` leads with the data terms, and
    the Hub metadata does not claim the code licence for it."""
    by_id = {s.id: s for s in _sources()}
    medicalgpt = [s for s in by_id.values() if s.repo == "shibing624/MedicalGPT"]
    assert len(medicalgpt) == 12
    research = [*medicalgpt, *(by_id[i] for i in ("med_chatglm", "huatuo_llama_med", "qizhen_sft20k", "cmedqa2",
                                                  "chatmed_consult", "shennong_tcm", "carellama_drug",
                                                  "chatdoctor_healthcaremagic100k", "comparison_gpt4_data"))]
    for s in research:
        assert "academic-only" in s.license_terms, s.id
        assert "permissive" not in licence_categories(s), s.id
        assert hub_license_id(s.license) not in {"apache-2.0", "mit", "gpl-3.0", "cc-by-4.0"}, (s.id, s.license)
    comparison = by_id["comparison_gpt4_data"]
    assert hub_license_id(comparison.license) == "cc-by-nc-4.0" and "non-commercial" in comparison.license_terms
    # research-only is shareable: the publishable profile keeps these sources (it drops what may not be
    # redistributed), so their rows are published under the card's warning, not silently as unrestricted
    publishable = BuildOptions(out=CATALOG.parent / "out", license_profile="publishable")
    assert [s.id for s in research if licence_exclusion(s, publishable)] == []
    for s in by_id.values():
        text = s.license.lower()
        if "research" in text and "only" in text:
            assert "academic-only" in s.license_terms, s.id
        if "no commercial" in text or "non-commercial" in text or "-nc-" in text:
            assert "non-commercial" in s.license_terms, s.id


def test_a_hub_source_without_a_full_commit_is_disabled_and_says_why() -> None:
    blocks = _blocks()
    for s in _sources():
        if s.host != "hf":
            continue
        if FULL_COMMIT.fullmatch(s.revision or ""):
            if not s.enabled:  # a pin added for a disabled source says where the commit was seen
                assert "  # pin: " in blocks[s.id] or s.revision in (s.notes or "") + blocks[s.id], s.id
            continue
        assert not s.enabled and "  # unpinned: " in blocks[s.id], s.id
