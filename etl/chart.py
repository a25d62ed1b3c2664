"""The composition chart of the dataset card (`stats/composition.png`).

Two panels: rows per source coloured by task, and each source's language mix. The PNG is
byte-reproducible: Agg backend, fixed size and dpi, no software or date metadata, labels drawn from
the ASCII source ids (no font fallback that depends on the machine's CJK fonts).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

TASK_COLOURS = {"pretrain": "#4c72b0", "sft": "#55a868", "reward": "#c44e52"}
LANG_COLOURS = {"zh": "#dd8452", "en": "#8172b3"}
OTHER_LANG_COLOUR = "#b0b0b0"
FIGURE_WIDTH_IN = 11.0
ROW_HEIGHT_IN = 0.32
DPI = 100


def composition_rows(manifest: dict) -> list[tuple[str, str, int, dict[str, int]]]:
    """(source id, task, rows written, language counts) for every source with rows, by task then id."""
    rows = []
    for source_id, entry in manifest.get("sources", {}).items():
        written = int((entry.get("counts") or {}).get("written") or 0)
        if written > 0 and entry.get("role", "train") == "train":
            rows.append((source_id, entry.get("task", "?"), written, dict(entry.get("langs") or {})))
    order = {task: i for i, task in enumerate(TASK_COLOURS)}
    rows.sort(key=lambda r: (order.get(r[1], len(order)), r[0]))
    return rows


def render_composition(manifest: dict, path: Path) -> None:
    """Render the chart to `path` (written atomically: a temp file in the same folder, then renamed)."""
    rows = composition_rows(manifest)
    height = max(2.5, 1.4 + ROW_HEIGHT_IN * len(rows))
    fig, (ax_rows, ax_lang) = plt.subplots(
        1, 2, figsize=(FIGURE_WIDTH_IN, height), dpi=DPI, sharey=True,
        gridspec_kw={"width_ratios": [3, 2]},
    )
    try:
        if not rows:
            ax_rows.text(0.5, 0.5, "no rows", ha="center", va="center", transform=ax_rows.transAxes)
            ax_rows.set_yticks([])
        labels = [r[0] for r in rows]
        positions = list(range(len(rows)))
        counts = [r[2] for r in rows]
        ax_rows.barh(positions, counts, color=[TASK_COLOURS.get(r[1], OTHER_LANG_COLOUR) for r in rows])
        for position, count in zip(positions, counts, strict=True):
            ax_rows.text(count, position, f" {count:,}", va="center", fontsize=7)
        if counts and max(counts) > 100 * min(counts):
            ax_rows.set_xscale("log")
            ax_rows.set_xlabel("rows (log scale)")
        else:
            ax_rows.set_xlabel("rows")
        ax_rows.margins(x=0.15)
        ax_rows.set_yticks(positions, labels, fontsize=8)
        ax_rows.invert_yaxis()
        ax_rows.set_title("Rows per source", pad=24)
        _legend_above(ax_rows, TASK_COLOURS)
        _language_panel(ax_lang, rows)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
        os.replace(tmp, path)
    finally:
        plt.close(fig)


def _language_panel(ax: plt.Axes, rows: list[tuple[str, str, int, dict[str, int]]]) -> None:
    """Stacked 100% bars: zh, en, then every other tag (und included) as one grey segment."""
    for position, (_, _, _, langs) in enumerate(rows):
        total = sum(langs.values()) or 1
        left = 0.0
        for lang, colour in LANG_COLOURS.items():
            share = langs.get(lang, 0) / total
            ax.barh(position, share, left=left, color=colour)
            left += share
        ax.barh(position, max(0.0, 1.0 - left) if langs else 0.0, left=left, color=OTHER_LANG_COLOUR)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of rows")
    ax.set_title("Language mix", pad=24)
    _legend_above(ax, {**LANG_COLOURS, "other / und": OTHER_LANG_COLOUR})


def _legend_above(ax: plt.Axes, colours: dict[str, str]) -> None:
    """One legend row between the title and the plot, so it never hides a bar."""
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, label=label) for label, c in colours.items()]
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(handles),
              fontsize=8, frameon=False)
