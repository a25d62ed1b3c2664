"""The catalogue loader: every error names the source id and the key, and the real catalogue loads."""

from pathlib import Path

import pytest

from etl.catalog import CatalogError, load_catalog, parse_size
from etl.convert.base import registry

ROOT = Path(__file__).resolve().parent.parent

GOOD = """
build: {shard_max_bytes: 64MB}
sources:
  - {id: a_src, name: A, host: hf, repo: org/a, revision: abc1234, files: [a.jsonl], task: sft, format: alpaca}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str):
    return load_catalog(write(tmp_path, text), known_formats=set(registry()))


def test_good_catalogue_parses_sizes_and_defaults(tmp_path):
    catalog = load(tmp_path, GOOD)
    assert catalog.build.shard_max_bytes == 64 * 1024**2
    source = catalog.get("a_src")
    assert (source.role, source.priority, source.enabled, source.split_of("a.jsonl")) == ("train", 50, True, "train")


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("{id: a_src, name: A, host: hf, repo: o/a, files: [a], task: sft, format: alpaca, colour: red}",
         "source 'a_src': `colour`: unknown key"),
        ("{id: a_src, name: A, host: hf, files: [a], task: sft, format: alpaca}",
         "source 'a_src': `(entry)`: Value error, host 'hf' needs `repo`"),
        ("{id: a_src, name: A, host: hf, repo: o/a, files: [a], task: sft, format: no_such_format}",
         "source 'a_src': `format`: unknown converter 'no_such_format'"),
        ("{id: a_src, name: A, host: hf, repo: o/a, files: ['../etc/passwd'], task: sft, format: alpaca}",
         "source 'a_src': `files`: Value error, bad glob '../etc/passwd'"),
        ("{id: a_src, name: A, host: hf, repo: o/a, files: ['data/[ab.json'], task: sft, format: alpaca}",
         "unbalanced brackets"),
        ("{id: a_src, name: A, host: hf, repo: o/a, files: [a], task: chat, format: alpaca}",
         "source 'a_src': `task`: Input should be 'pretrain', 'sft' or 'reward'"),
        ("{id: A-Src, name: A, host: hf, repo: o/a, files: [a], task: sft, format: alpaca}",
         "must be snake_case"),
        ("{id: a_src, name: A, host: hf, repo: o/a, files: [a], task: sft, format: alpaca, enabled: false}",
         "a disabled source needs `disabled_reason`"),
    ],
)
def test_errors_name_source_and_key(tmp_path, entry, expected):
    with pytest.raises(CatalogError) as info:
        load(tmp_path, f"sources:\n  - {entry}\n")
    assert expected in str(info.value)
    assert "sources.yaml" in str(info.value)


def test_duplicate_id_is_reported_with_first_definition(tmp_path):
    entry = "  - {id: dup, name: A, host: hf, repo: o/a, files: [a], task: sft, format: alpaca}\n"
    with pytest.raises(CatalogError, match=r"source 'dup': duplicate id \(first defined as source #1\)"):
        load(tmp_path, "sources:\n" + entry + entry)


def test_bad_yaml_gives_line_and_column(tmp_path):
    with pytest.raises(CatalogError, match=r"not valid YAML at line 3, column"):
        load(tmp_path, "sources:\n  - {id: a\n  - : : [\n")


def test_several_problems_are_all_reported(tmp_path):
    text = ("sources:\n"
            "  - {id: one, name: A, host: github, repo: o/a, files: [a], task: sft, format: alpaca}\n"
            "  - {id: two, name: B, host: gdrive, task: sft, format: alpaca}\n")
    with pytest.raises(CatalogError) as info:
        load(tmp_path, text)
    message = str(info.value)
    assert "source 'one'" in message and "needs `revision`" in message
    assert "source 'two'" in message and "needs `file_id`" in message


def test_sizes():
    assert parse_size("256MB") == 256 * 1024**2
    assert parse_size("1.5GiB") == int(1.5 * 1024**3)
    assert parse_size(1000) == 1000
    with pytest.raises(ValueError, match="unknown size unit|not a size"):
        parse_size("12 parsecs")


def test_project_catalogue_loads_and_every_enabled_source_is_in_the_mirror():
    catalog = load_catalog(ROOT / "sources.yaml", known_formats=set(registry()))
    assert catalog.sources, "the catalogue lists sources"
    for source in catalog.sources:
        if source.enabled and source.host != "builtin":
            assert (ROOT / "examples" / "mirror" / source.id).is_dir(), f"{source.id} has no mirror folder"
