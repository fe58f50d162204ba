"""MusTBench's summary: eight sub-metrics, task scores and the overall mean.

Conventions
-----------
- All values are percentages. Sub-metrics, in MusTBench's table order: TSG onset Hit@3s, TSG offset
  Hit@3s, LTR accuracy, TAD METEOR, TAD semantic similarity, GTO accuracy, MTR IoU, MTR F1.
- A task score is the mean of its sub-metrics (TSG, TAD, MTR); ``overall`` is the mean of the eight
  sub-metrics — of those present when a benchmark lacks some tasks.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["SUBMETRICS", "TASK_PARTS", "task_scores", "overall"]

SUBMETRICS = ("TSG_onset", "TSG_offset", "LTR", "TAD_METEOR", "TAD_semantic", "GTO", "MTR_IoU", "MTR_F1")
TASK_PARTS = {"TSG": ("TSG_onset", "TSG_offset"), "TAD": ("TAD_METEOR", "TAD_semantic"), "MTR": ("MTR_IoU", "MTR_F1")}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def task_scores(sub: Mapping[str, float]) -> dict[str, float]:
    """Task scores (mean of the task's present sub-metrics) for TSG, TAD and MTR."""
    out = {}
    for task, parts in TASK_PARTS.items():
        present = [sub[p] for p in parts if p in sub]
        if present:
            out[task] = _mean(present)
    return out


def overall(sub: Mapping[str, float]) -> float:
    """Mean of the MusTBench sub-metrics present in ``sub`` (``ValueError`` if none)."""
    present = [float(sub[k]) for k in SUBMETRICS if k in sub and sub[k] is not None]
    if not present:
        raise ValueError(f"no MusTBench sub-metric among {sorted(sub)}")
    return _mean(present)
