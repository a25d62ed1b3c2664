"""The cross-source stage chain for one task, built from typed build settings."""

from __future__ import annotations

import pyarrow as pa

from etl.catalog import BuildConfig
from etl.stages.base import Stage
from etl.stages.decontaminate import Decontaminate
from etl.stages.dedup import ExactDedup, NearDedup
from etl.stages.langid import LangId
from etl.stages.normalise import Normalise


class _Off(Stage):
    """A stage switched off in the build settings: keeps its place (and manifest counter) in the chain."""

    replay_reads = ()

    def __init__(self, name: str) -> None:
        self.name = name

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch


def default_stages(task: str, build: BuildConfig) -> list[Stage]:
    """normalise → exact_dedup → near_dedup → decontaminate → langid."""
    dedup = build.dedup
    return [
        Normalise(task),
        ExactDedup(dedup) if dedup.exact else _Off("exact_dedup"),
        NearDedup(dedup.minhash, dedup.report_clusters, task) if dedup.minhash else _Off("near_dedup"),
        Decontaminate(task, build.decontam) if build.decontam.enabled else _Off("decontaminate"),
        LangId(task, build.langid),
    ]
