"""The cross-source stage chain for one task, built from typed build settings."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from etl.catalog import BuildConfig, Source
from etl.stages.base import Stage
from etl.stages.decontaminate import Decontaminate
from etl.stages.dedup import ExactDedup, NearDedup
from etl.stages.langid import LangId
from etl.stages.normalise import Normalise
from etl.stages.quality import Quality
from etl.stages.redact import Redact


class _Off(Stage):
    """A stage switched off in the build settings: keeps its place (and manifest counter) in the chain."""

    replay_reads = ()

    def __init__(self, name: str) -> None:
        self.name = name

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch


def default_stages(task: str, build: BuildConfig, sources: Sequence[Source] = ()) -> list[Stage]:
    """normalise → redact → quality → exact_dedup → near_dedup → decontaminate → langid. `sources`:
    the catalogue's sources, whose `quality:` overrides the build's quality thresholds."""
    dedup = build.dedup
    overrides = {s.id: s.quality for s in sources if s.quality is not None and s.task == task}
    return [
        Normalise(task),
        Redact(task, build.redact.names) if build.redact.enabled else _Off("redact"),
        Quality(task, build.quality, overrides) if build.quality.enabled else _Off("quality"),
        ExactDedup(dedup) if dedup.exact else _Off("exact_dedup"),
        NearDedup(dedup.minhash, dedup.report_clusters, task) if dedup.minhash else _Off("near_dedup"),
        Decontaminate(task, build.decontam) if build.decontam.enabled else _Off("decontaminate"),
        LangId(task, build.langid),
    ]
