"""Rich tables for score summaries (used by ``score``, ``evaluate`` and ``report``)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

__all__ = ["MUSTBENCH_ROWS", "score_table", "avqa_table"]

MUSTBENCH_ROWS = [
    ("TSG", "TSG_onset", "Hit@3s onset"), ("TSG", "TSG_offset", "Hit@3s offset"), ("TSG", "TSG", "mean"),
    ("LTR", "LTR", "accuracy"), ("TAD", "TAD_METEOR", "METEOR"), ("TAD", "TAD_semantic", "semantic"),
    ("TAD", "TAD", "mean"), ("GTO", "GTO", "accuracy"), ("MTR", "MTR_IoU", "IoU"), ("MTR", "MTR_F1", "F1"),
    ("MTR", "MTR", "mean"), ("all", "overall", "overall (mean of 8)"),
]


def score_table(summary: dict[str, Any], title: str = "MusTBench scores (%)") -> Table:
    """Task / sub-metric / score / n / unparsed table of a score summary."""
    t = Table(title=title)
    for col, just in (("task", "left"), ("metric", "left"), ("score", "right"), ("n", "right"), ("unparsed", "right"), ("missing", "right")):
        t.add_column(col, justify=just)
    n, unp, miss = summary.get("n", {}), summary.get("unparsed", {}), summary.get("missing", {})
    shown = set()
    for task, key, label in MUSTBENCH_ROWS:
        if key not in summary:
            continue
        counts = ("", "", "") if task in shown or task == "all" else (
            str(n.get(task, "")), str(unp.get(task, "")), str(miss.get(task, "")))
        shown.add(task)
        t.add_row(task, label, f"{summary[key]:.1f}", *counts, style="bold" if key == "overall" else None)
    return t


def avqa_table(summary: dict[str, Any], title: str = "AVQA accuracy (%) — MUSIC-AVQA protocol") -> Table:
    """Bucket / accuracy table of the AVQA part of a summary."""
    t = Table(title=title)
    t.add_column("question type")
    t.add_column("accuracy", justify="right")
    for k, v in summary.get("AVQA", {}).items():
        t.add_row(k, f"{v:.2f}", style="bold" if k in ("Audio", "Visual", "Audio-Visual", "overall") else None)
    return t
