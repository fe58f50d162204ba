"""Timestamp rewards for TSG (and the out-of-range penalty for TSG and MTR).

All take the error ``|predicted − reference|`` in seconds from the scorer's time-code parser, so
``1:05``, ``01:05`` and ``65 s`` are the same answer. Unparsed or impossible answers get 0 (the minimum);
rows of other tasks get ``None``. Each is 1 at the exact answer and non-increasing in the error.
"""

from __future__ import annotations

import numpy as np

from rewards.base import answer_text, column, completion_texts, parsed_time, register_reward
from must.answers import parse_interval_answer

__all__ = ["time_errors", "timestamp_exp", "timestamp_gauss", "timestamp_hit", "out_of_range"]


def _reference(kwargs: dict, n: int) -> list[str]:
    answers = column(kwargs, "answers", n)
    answer = column(kwargs, "answer", n)
    return [str(a if a is not None else (b[0] if b is not None and len(b) else "")) for a, b in zip(answer, answers)]


def time_errors(completions, kwargs: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(errors, applicable)``: absolute errors (NaN when unparsed) and which rows have a reference time."""
    texts = completion_texts(completions)
    ref = np.array([parsed_time(r) for r in _reference(kwargs, len(texts))])
    pred = np.array([parsed_time(t) for t in texts])
    return np.abs(pred - ref), ~np.isnan(ref)


def _finish(values: np.ndarray, applicable: np.ndarray) -> list[float | None]:
    values = np.where(np.isnan(values), 0.0, values)
    return [float(v) if ok else None for v, ok in zip(values, applicable)]


@register_reward("timestamp_exp", tasks=("TSG",))
def timestamp_exp(completions, *, tau: float = 5.0, **kwargs) -> list[float | None]:
    """exp(−|Δ| / τ): 1 at the answer, 0.37 at τ seconds off."""
    err, ok = time_errors(completions, kwargs)
    return _finish(np.exp(-err / tau), ok)


@register_reward("timestamp_gauss", tasks=("TSG",))
def timestamp_gauss(completions, *, sigma: float = 3.0, **kwargs) -> list[float | None]:
    """exp(−Δ² / 2σ²): flat near the answer, falls fast beyond σ."""
    err, ok = time_errors(completions, kwargs)
    return _finish(np.exp(-(err ** 2) / (2 * sigma ** 2)), ok)


@register_reward("timestamp_hit", tasks=("TSG",))
def timestamp_hit(completions, *, k: float = 3.0, **kwargs) -> list[float | None]:
    """Hit@k: 1 when within ``k`` seconds (the benchmark's metric with k = 3), else 0."""
    err, ok = time_errors(completions, kwargs)
    with np.errstate(invalid="ignore"):
        return _finish((err <= k).astype(float), ok)


@register_reward("out_of_range", tasks=("TSG", "MTR"))
def out_of_range(completions, *, penalty: float = -1.0, tolerance: float = 1.0, **kwargs) -> list[float | None]:
    """``penalty`` when an answered time lies beyond the track (or before 0), else 0; TSG and MTR rows."""
    texts = completion_texts(completions)
    n = len(texts)
    tasks, durations = column(kwargs, "task", n), column(kwargs, "duration", n)
    out: list[float | None] = []
    for text, task, d in zip(texts, tasks, durations):
        if d is None:
            out.append(None)
            continue
        if task == "MTR":
            p = parse_interval_answer(answer_text(text))
            times = [t for iv in (p.value or []) for t in iv]
        else:
            t = parsed_time(text)
            times = [] if np.isnan(t) else [t]
        out.append(penalty if any(t > float(d) + tolerance or t < 0 for t in times) else 0.0)
    return out
