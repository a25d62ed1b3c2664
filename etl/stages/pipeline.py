"""The cross-source stage chain for one task, built from typed build settings."""

from __future__ import annotations

import pyarrow as pa

from etl.catalog import BuildConfig
from etl.stages.base import Stage


class _Slot(Stage):
    """A named place in the chain that passes rows through unchanged until its stage is implemented."""

    def __init__(self, name: str) -> None:
        self.name = name

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch


def default_stages(task: str, build: BuildConfig) -> list[Stage]:
    """normalise → exact_dedup → near_dedup → decontaminate → langid."""
    return [_Slot("normalise"), _Slot("exact_dedup"), _Slot("near_dedup"), _Slot("decontaminate"), _Slot("langid")]
