"""A reward relative to a baseline answer: what a completion gains over the row's ``baseline`` completion.

GRPO normalises rewards within a group of samples, so a sample that is merely less wrong than its group earns a
positive advantage even when every sample is worse than the answer the model would write greedily — the answer
the benchmark scores (``benchmarks/grpo_groups.py`` measures this on MTR: hedged intervals starting at 0:00 are
pushed up). Counting only the gain over that answer, ``max(0, r(completion) − r(baseline))``, leaves such a
group with equal rewards (no push) and rewards only samples that beat it: self-critical sequence training's
greedy baseline (Rennie et al., 2017), kept non-negative because GRPO subtracts the group mean anyway.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from rewards.base import RewardFunc, column, row_count

__all__ = ["improvement_over_baseline"]


def improvement_over_baseline(fn: RewardFunc, baseline_column: str = "baseline") -> RewardFunc:
    """``fn`` turned into ``max(0, fn(completion) − fn(baseline))`` per row, the baseline completion read from the
    ``baseline_column`` column; rows ``fn`` leaves out (``None``) stay out and need no baseline."""

    @functools.wraps(fn)
    def relative(completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        n = row_count(completions)
        baseline = column(kwargs, baseline_column, n)
        columns = {k: v for k, v in kwargs.items() if k != baseline_column}
        own = fn(completions, **columns)
        if any(b is None and r is not None for r, b in zip(own, baseline)):
            raise ValueError(f"{fn.__name__} relative to a baseline needs the {baseline_column!r} column")
        # TRL's completion_ids are the samples' tokens, not the baseline's
        base = fn(["" if b is None else b for b in baseline],
                  **{k: v for k, v in columns.items() if k != "completion_ids"})
        return [None if r is None else max(0.0, float(r) - float(b or 0.0)) for r, b in zip(own, base)]

    relative.__name__ = f"{fn.__name__}>{baseline_column}"
    return relative
