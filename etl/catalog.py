"""The catalogue (`sources.yaml`): typed models and a loader whose errors name the source and the key.

Data flows one way: the rest of the code receives these typed values and never parses YAML itself.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Task = Literal["pretrain", "sft", "reward"]
Role = Literal["train", "eval"]
Host = Literal["hf", "github", "gdrive", "tianchi", "http", "builtin"]
Split = Literal["train", "validation", "test"]
TASKS: tuple[Task, ...] = ("pretrain", "sft", "reward")

# Licence terms that restrict use; a source lists the ones its upstream states (DESIGN §2, issue 6).
LicenseTerm = Literal["non-commercial", "academic-only", "no-redistribution", "copyrighted", "unclear"]


class CatalogError(ValueError):
    """A catalogue that cannot be used; the message names the file, the source id and the key."""


def path_escape(name: str) -> str | None:
    """Why a file name or glob from the catalogue could reach outside its source folder, or None when it
    cannot: it must be a relative POSIX path without `..`, a backslash, a drive letter or a NUL byte."""
    if not name:
        return "empty"
    if "\\" in name:
        return "a backslash (write paths with `/`)"
    if "\0" in name:
        return "a NUL byte"
    if name.startswith("/") or name.startswith("~") or re.match(r"[A-Za-z]:", name):
        return "must be a relative path inside the source folder, not an absolute one"
    if ".." in name.split("/"):
        return "`..` would leave the source folder"
    return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MinHashConfig(_Strict):
    """Near-duplicate matching on character n-grams of the matching key (docs/DEDUP.md: what the
    benchmark showed for each choice)."""

    num_perm: int = Field(128, ge=16, le=1024)      # signature slots
    threshold: float = Field(0.8, gt=0, lt=1)       # exact Jaccard a candidate pair must reach
    ngram: int = Field(4, ge=1, le=32)              # characters per shingle; shorter keys match exactly
    seed: int = 1
    bands: int | None = Field(None, ge=1)           # LSH bands × rows: derived from threshold when unset
    rows: int | None = Field(None, ge=1)
    match_numbers: bool = True                      # pairs whose numbers differ (doses, lab values) never merge
    # sft/reward: `split` verifies prompt and response separately (a pair merges only when both sides are
    # near-duplicates: one report with two different answers is two rows); `whole` compares the whole row.
    fields: Literal["split", "whole"] = "split"

    @model_validator(mode="after")
    def _banding(self) -> MinHashConfig:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("set both `bands` and `rows`, or neither (then they follow `threshold`)")
        if self.bands and self.rows and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands × rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        return self


class DedupConfig(_Strict):
    exact: bool = True
    minhash: MinHashConfig | None = MinHashConfig()
    report_clusters: int = Field(20, ge=0)          # sample clusters per stage in the dup_clusters report


class DecontamConfig(_Strict):
    """A training row is contaminated when it contains at least `threshold` of an eval item's n-grams
    (character n-grams for Chinese, word n-grams for English; an item shorter than n matches only
    an identical text). Eval items are their asking side: pretrain text, sft/reward user turns."""

    enabled: bool = True
    ngram_zh: int = Field(13, ge=2)
    ngram_en: int = Field(8, ge=2)
    threshold: float = Field(0.5, gt=0, le=1)
    stop_items: int = Field(50, ge=1)               # an n-gram shared by more eval items is boilerplate
    report_samples: int = Field(20, ge=0)           # sample pairs per eval source in the report


class LangIdConfig(_Strict):
    """Languages a row may be tagged with (ISO 639-1); anything else is `und`."""

    langs: tuple[str, ...] = ("zh", "en")


class RedactConfig(_Strict):
    """Personal data replaced by typed placeholders (docs/PRIVACY.md)."""

    enabled: bool = True
    names: bool = True                              # the high-precision name rules (signature, record header)


class QualityThresholds(_Strict):
    """Per-source overrides of `build.quality` (a source's `quality:`); unset keys take the default."""

    max_mojibake_ratio: float | None = Field(None, ge=0, le=1)
    max_char_repetition: float | None = Field(None, gt=0, le=1)
    max_line_repetition: float | None = Field(None, gt=0, le=1)
    min_answer_chars: int | None = Field(None, ge=0)
    max_ad_hits: int | None = Field(None, ge=0)
    drop_filler: bool | None = None
    drop_echo: bool | None = None


class QualityConfig(_Strict):
    """Rows dropped by the quality stage, each under a named reason (docs/PRIVACY.md, "quality")."""

    enabled: bool = True
    max_mojibake_ratio: float = Field(0.01, ge=0, le=1)   # mojibake / U+FFFD characters per character
    max_char_repetition: float = Field(0.5, gt=0, le=1)   # share of characters repeating the one 1-10 before
    max_line_repetition: float = Field(0.6, gt=0, le=1)   # share of non-empty lines repeating an earlier line
    min_answer_chars: int = Field(1, ge=0)                # answer characters after removing punctuation/placeholders
    max_ad_hits: int = Field(2, ge=0)                     # advertising / contact cues an answer may hold
    drop_filler: bool = True                              # answers that only say 同上/谢谢/不知道...
    drop_echo: bool = True                                # SFT/reward answers that repeat the question
    report_samples: int = Field(20, ge=0)                 # dropped rows per reason in the drops report

    def for_source(self, override: QualityThresholds | None) -> QualityConfig:
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_none=True))


class PersonaConfig(_Strict):
    name: str | None = None
    author: str | None = None


class BuildConfig(_Strict):
    out: str = "out/"
    shard_max_bytes: int = 256 * 1024 * 1024
    row_group_rows: int = 100_000
    dedup: DedupConfig = DedupConfig()
    decontam: DecontamConfig = DecontamConfig()
    langid: LangIdConfig = LangIdConfig()
    persona: PersonaConfig = PersonaConfig()
    redact: RedactConfig = RedactConfig()
    quality: QualityConfig = QualityConfig()

    @field_validator("shard_max_bytes", mode="before")
    @classmethod
    def _parse_size(cls, value: Any) -> int:
        return parse_size(value)


class Source(_Strict):
    """One upstream dataset: where it lives, how to read it, what it becomes."""

    id: str
    name: str
    homepage: str | None = None
    host: Host
    # hf / github
    repo: str | None = None
    revision: str | None = None
    files: tuple[str, ...] = ()
    sha256: dict[str, str] = {}
    # gdrive
    file_id: str | None = None
    filename: str | None = None
    # tianchi
    dataset_id: str | None = None
    # http: one URL, or several (web pages)
    url: str | None = None
    urls: tuple[str, ...] = ()
    # what it becomes
    task: Task
    role: Role = "train"
    format: str
    reader: str | None = None           # overrides the converter's default reader
    fields: dict[str, str] = {}         # generic converters: unified name -> upstream name
    options: dict[str, Any] = {}        # converter / reader specific settings
    splits: dict[str, Split] = {}       # file glob -> split; files not matched are `train`
    eval_splits: tuple[Split, ...] = () # these splits of a train source feed decontamination, never training
    lang: str = "und"
    license: str = "unknown"
    license_terms: tuple[LicenseTerm, ...] = ()
    license_source: str | None = None   # where `license` was read: Hub tag, LICENSE file, README sentence
    priority: int = 50
    quality: QualityThresholds | None = None   # overrides of build.quality for this source
    enabled: bool = True
    disabled_reason: str | None = None
    citation: str | None = None
    notes: str | None = None
    format_verified: bool = True        # false: no real upstream sample was seen; the converter follows the docs

    @field_validator("id")
    @classmethod
    def _snake_case(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", value):
            raise ValueError(f"must be snake_case (a-z, 0-9, _), got {value!r}")
        return value

    @field_validator("files")
    @classmethod
    def _globs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            if problem := path_escape(pattern):
                raise ValueError(f"bad glob {pattern!r}: {problem}")
            if pattern.count("[") != pattern.count("]"):
                raise ValueError(f"bad glob {pattern!r}: unbalanced brackets")
        return value

    @field_validator("filename")
    @classmethod
    def _filename(cls, value: str | None) -> str | None:
        if value is not None and (problem := path_escape(value)):
            raise ValueError(f"bad file name {value!r}: {problem}")
        return value

    @field_validator("options")
    @classmethod
    def _option_filename(cls, value: dict[str, Any]) -> dict[str, Any]:
        name = value.get("filename")
        if name is not None and (not isinstance(name, str) or (problem := path_escape(name))):
            raise ValueError(f"`filename`: bad file name {name!r}: "
                             f"{problem if isinstance(name, str) else 'must be a string'}")
        return value

    @model_validator(mode="after")
    def _host_keys(self) -> Source:
        needs = {"hf": ("repo", "files"), "github": ("repo", "revision", "files"),
                 "gdrive": ("file_id", "filename"), "tianchi": ("dataset_id", "files")}
        for key in needs.get(self.host, ()):
            if not getattr(self, key):
                raise ValueError(f"host {self.host!r} needs `{key}`")
        if self.host == "http" and not (self.url or self.urls):
            raise ValueError("host 'http' needs `url` or `urls`")
        if not self.enabled and not self.disabled_reason:
            raise ValueError("a disabled source needs `disabled_reason`")
        return self

    def split_of(self, relpath: str) -> str:
        """The split of one file of this source, from the `splits:` globs (first match wins)."""
        for pattern, split in self.splits.items():
            if fnmatch.fnmatch(relpath, pattern):
                return split
        return "train"

    def is_eval_split(self, split: str) -> bool:
        return self.role == "eval" or split in self.eval_splits

    def entry_hash(self) -> str:
        """Hash of the catalogue entry: part of the conversion cache key."""
        # `quality` thresholds act on the stages, not on conversion: left out so they never re-convert
        blob = json.dumps(self.model_dump(mode="json", exclude={"quality"}), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Catalog(_Strict):
    build: BuildConfig = BuildConfig()
    sources: tuple[Source, ...]
    path: str = "sources.yaml"

    def get(self, source_id: str) -> Source:
        for source in self.sources:
            if source.id == source_id:
                return source
        raise CatalogError(f"{self.path}: no source with id {source_id!r}")

    def select(self, ids: list[str] | None = None, tasks: list[str] | None = None,
               include_disabled: bool = False) -> list[Source]:
        """Sources in catalogue order; explicit ids select disabled sources too."""
        if ids:
            chosen = [self.get(i) for i in ids]
        else:
            chosen = [s for s in self.sources if s.enabled or include_disabled]
        if tasks:
            chosen = [s for s in chosen if s.task in tasks]
        return chosen

    def config_hash(self, **overrides: Any) -> str:
        """Hash of the build settings; `overrides` are command-line settings that change the output."""
        blob = json.dumps({**self.build.model_dump(mode="json"), **overrides}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
          "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4}


def parse_size(value: Any) -> int:
    """`256MB`, `1.5GiB` or a plain integer -> bytes. MB is read as MiB, as most users mean it."""
    if isinstance(value, int):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"not a size: {value!r} (use e.g. 256MB)")
    unit = (match.group(2) or "").upper()
    unit = {"K": "KIB", "M": "MIB", "G": "GIB", "T": "TIB", "KB": "KIB", "MB": "MIB", "GB": "GIB", "TB": "TIB"}.get(unit, unit)
    if unit not in _UNITS:
        raise ValueError(f"unknown size unit in {value!r}")
    return int(float(match.group(1)) * _UNITS[unit])


def _describe(error: ValidationError, where: str) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(entry)"
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{where}: `{key}`: {msg}")
    return "\n".join(lines)


MAX_ALIAS_NODES = 10_000  # YAML nodes that aliases may add in all (the catalogue uses a few dozen)


class CatalogLoader(yaml.SafeLoader):
    """YAML's safe loader, made strict for a catalogue: a key given twice in one mapping is an error (YAML
    would keep the last silently: a second `license:`, a second `sources:` block), and aliases may add at most
    `MAX_ALIAS_NODES` nodes in all, so a few hundred bytes of nested aliases ("billion laughs") cannot
    expand into gigabytes. Merge keys (`<<:`) may still be overridden, as YAML intends."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._alias_nodes = 0
        self._weights: dict[int, int] = {}

    def _weight(self, node: yaml.Node) -> int:
        """Nodes in the tree under `node`, shared subtrees counted each time they appear."""
        key = id(node)
        if key not in self._weights:
            if isinstance(node, yaml.MappingNode):
                self._weights[key] = 1 + sum(self._weight(k) + self._weight(v) for k, v in node.value)
            elif isinstance(node, yaml.SequenceNode):
                self._weights[key] = 1 + sum(self._weight(child) for child in node.value)
            else:
                self._weights[key] = 1
        return self._weights[key]

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:
                self._alias_nodes += self._weight(target)
                if self._alias_nodes > MAX_ALIAS_NODES:
                    raise yaml.composer.ComposerError(
                        None, None, f"aliases expand past {MAX_ALIAS_NODES} nodes at *{event.anchor} "
                                    f"(an alias bomb?); write the values out instead", event.start_mark)
        return super().compose_node(parent, index)  # type: ignore[no-any-return]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:  # type: ignore[override]
        first: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node)
            if key in first:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first given at line {first[key].start_mark.line + 1}); "
                                f"YAML would keep only the last one", key_node.start_mark)
            first[key] = key_node
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]


def load_yaml(text: str) -> Any:
    """One YAML document read with `CatalogLoader` (safe, strict)."""
    loader = CatalogLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_catalog(path: str | Path, known_formats: set[str] | dict[str, tuple[str, ...]] | None = None) -> Catalog:
    """Load and check a catalogue. Every problem is reported with the source id and key it concerns."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogError(f"{path}: catalogue not found (pass --catalog PATH)") from None
    try:
        doc = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise CatalogError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(doc, dict):
        raise CatalogError(f"{path}: expected a mapping with `build` and `sources`")
    unknown = sorted(set(doc) - {"build", "sources"})
    if unknown:
        raise CatalogError(f"{path}: unknown top-level key(s) {unknown}; expected `build` and `sources`")
    problems: list[str] = []
    try:
        build = BuildConfig.model_validate(doc.get("build") or {})
    except ValidationError as exc:
        problems.append(_describe(exc, f"{path}: build"))
        build = BuildConfig()
    raw_sources = doc.get("sources") or []
    if not isinstance(raw_sources, list):
        raise CatalogError(f"{path}: `sources` must be a list")
    sources: list[Source] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_sources):
        sid = raw.get("id") if isinstance(raw, dict) else None
        where = f"{path}: source {sid!r}" if sid else f"{path}: source #{index + 1}"
        if not isinstance(raw, dict):
            problems.append(f"{where}: must be a mapping")
            continue
        if sid in seen:
            problems.append(f"{where}: duplicate id (first defined as source #{seen[sid] + 1})")
            continue
        if sid:
            seen[sid] = index
        try:
            source = Source.model_validate(raw)
        except ValidationError as exc:
            problems.append(_describe(exc, where))
            continue
        if known_formats is not None and source.format not in known_formats:
            problems.append(f"{where}: `format`: unknown converter {source.format!r} "
                            f"(known: {', '.join(sorted(known_formats))})")
            continue
        if isinstance(known_formats, dict) and source.task not in known_formats[source.format]:
            problems.append(f"{where}: `task`: converter {source.format!r} produces "
                            f"{' or '.join(known_formats[source.format])} rows, not {source.task}")
            continue
        sources.append(source)
    if problems:
        raise CatalogError("\n".join(problems))
    return Catalog(build=build, sources=tuple(sources), path=str(path))
