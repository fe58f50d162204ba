"""Interval rewards for MTR: IoU, soft F1 over several intervals, Time-R1's tIoU, boundary-smoothed IoU,
per-boundary distance.

Predictions are clipped to ``[0, duration]`` when the duration column is present; start ≥ end and
impossible time codes are rejected by the parser (reward 0). Single-interval rows — most of them —
take a vectorised path; sets of intervals use the scorer's metric functions.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from bench.metrics.intervals import merge_intervals, segment_f1, temporal_iou
from rewards.base import column, completion_texts, parsed_intervals, register_reward

__all__ = ["interval_iou", "interval_f1", "interval_tiou", "interval_soft_iou", "interval_boundary", "interval_median_side"]


def _prepare(completions, kwargs: dict):
    texts = completion_texts(completions)
    n = len(texts)
    durations = column(kwargs, "duration", n)
    answers, answer = column(kwargs, "answers", n), column(kwargs, "answer", n)
    rows = []
    for text, d, refs, ref in zip(texts, durations, answers, answer):
        d = None if d is None else float(d)
        ref_ivs = [iv for r in (list(refs) if refs is not None else [ref]) for iv in (parsed_intervals(str(r), None) or ())]
        if not ref_ivs:
            rows.append(None)
            continue
        rows.append((ref_ivs, parsed_intervals(text, d), d))
    return rows


def _score_rows(completions, kwargs: dict, score) -> list[float | None]:
    """``score(reference, predicted, duration)`` on each row with a reference: 0 for an unparsed answer."""
    return [None if r is None else (float(score(*r)) if r[1] else 0.0) for r in _prepare(completions, kwargs)]


def _single_iou(rows) -> dict[int, float]:
    idx = [i for i, r in enumerate(rows) if r and r[1] is not None and len(r[0]) == 1 and len(r[1]) == 1]
    if not idx:
        return {}
    ref = np.array([rows[i][0][0] for i in idx])
    est = np.array([rows[i][1][0] for i in idx])
    inter = np.clip(np.minimum(ref[:, 1], est[:, 1]) - np.maximum(ref[:, 0], est[:, 0]), 0, None)
    union = (ref[:, 1] - ref[:, 0]) + (est[:, 1] - est[:, 0]) - inter
    return dict(zip(idx, (inter / union).tolist()))


@register_reward("interval_iou", tasks=("MTR",))
def interval_iou(completions, **kwargs) -> list[float | None]:
    """Temporal IoU of the predicted and reference interval unions (the benchmark's MTR IoU)."""
    rows = _prepare(completions, kwargs)
    fast = _single_iou(rows)
    out: list[float | None] = []
    for i, r in enumerate(rows):
        if r is None:
            out.append(None)
        elif r[1] is None or not r[1]:
            out.append(0.0)
        else:
            out.append(fast[i] if i in fast else temporal_iou(r[0], np.array(r[1])))
    return out


@register_reward("interval_f1", tasks=("MTR",))
def interval_f1(completions, *, thresholds: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7), **kwargs) -> list[float | None]:
    """Soft F1 over several intervals: segment F1 averaged over IoU thresholds (the benchmark's MTR F1)."""
    return _score_rows(completions, kwargs, lambda ref, est, _: segment_f1(ref, np.array(est), thresholds))


@register_reward("interval_tiou", tasks=("MTR",))
def interval_tiou(completions, **kwargs) -> list[float | None]:
    """Time-R1's tIoU = IoU · (1 − |Δstart|/T) · (1 − |Δend|/T), with the start/end of each set's hull.

    It cuts the reward of a whole-track answer, which plain IoU leaves at the region's share of the track.
    """
    base = interval_iou(completions, **kwargs)
    rows = _prepare(completions, kwargs)
    out: list[float | None] = []
    for b, r in zip(base, rows):
        if b is None or r is None or not r[1] or not r[2]:
            out.append(b)
            continue
        ref, est, d = merge_intervals(r[0]), merge_intervals(np.array(r[1])), r[2]
        ds, de = abs(est[0, 0] - ref[0, 0]) / d, abs(est[-1, 1] - ref[-1, 1]) / d
        out.append(float(b * max(0.0, 1 - ds) * max(0.0, 1 - de)))
    return out


def _soft_mask(intervals, grid: np.ndarray, width: float) -> np.ndarray:
    m = np.zeros_like(grid)
    for s, e in intervals:
        rise = np.clip((grid - (s - width / 2)) / width, 0, 1)
        fall = np.clip(((e + width / 2) - grid) / width, 0, 1)
        m = np.maximum(m, np.minimum(rise, fall))
    return m


@register_reward("interval_soft_iou", tasks=("MTR",))
def interval_soft_iou(completions, *, width: float = 4.0, step: float = 0.25, **kwargs) -> list[float | None]:
    """IoU of boundary-smoothed memberships (linear ramps ``width`` s wide): near-misses earn partial credit."""

    def score(ref, est, duration) -> float:
        grid = np.arange(0.0, max([e for _, e in ref] + [e for _, e in est] + [duration or 0.0]) + width, step)
        a, b = _soft_mask(ref, grid, width), _soft_mask(est, grid, width)
        union = np.maximum(a, b).sum()
        return np.minimum(a, b).sum() / union if union > 0 else 0.0

    return _score_rows(completions, kwargs, score)


def _matched(a: np.ndarray, b: np.ndarray) -> list[tuple[int, int]]:
    """One-to-one pairs of intervals of ``a`` and ``b`` with the least summed boundary distance."""
    rows, cols = linear_sum_assignment(np.abs(a[:, None, :] - b[None, :, :]).sum(axis=2))
    return list(zip(rows.tolist(), cols.tolist()))


@register_reward("interval_boundary", tasks=("MTR",))
def interval_boundary(completions, *, tau: float = 5.0, kernel: str = "exp", **kwargs) -> list[float | None]:
    """Each boundary scored alone over reference/predicted intervals matched one-to-one: ``exp`` exp(−|Δ| / τ),
    ``linear`` max(0, 1 − |Δ| / τ).

    The matching minimises the summed boundary distance; the matched pairs' mean boundary score is divided
    by the larger of the two interval counts, so a missing or extra interval costs its share. Unlike IoU,
    a boundary's reward does not depend on where the other one is, so widening an interval earns nothing
    by itself. Under uncertainty the expected ``exp`` reward peaks near the most probable second (for
    small τ), the ``linear`` one at the median (within τ) — the boundary rule ``choices=constrained``
    writes because it scores best (docs/training-log.md).
    """
    if kernel not in ("exp", "linear"):
        raise ValueError(f"kernel must be 'exp' or 'linear', got {kernel!r}")

    def score(ref, est, _) -> float:
        ref, est = np.asarray(ref, dtype=float), np.asarray(est, dtype=float)
        rows, cols = zip(*_matched(ref, est))
        d = np.abs(ref[list(rows)] - est[list(cols)]) / tau  # (pairs, {start, end})
        per_pair = (np.exp(-d) if kernel == "exp" else np.clip(1 - d, 0, None)).mean(axis=1)
        return per_pair.sum() / max(len(ref), len(est))

    return _score_rows(completions, kwargs, score)


@register_reward("interval_median_side", tasks=("MTR",))
def interval_median_side(completions, *, tolerance: float = 1.0, **kwargs) -> list[float | None]:
    """Per boundary, +1 when the sample falls on the reference's side of the ``baseline`` answer's boundary, −1
    on the other side, 0 on it or when that boundary is within ``tolerance`` seconds of the reference; the mean
    over the boundaries of the larger of the two interval lists, intervals matched one-to-one (a baseline
    interval with no sample match counts 0, a sample interval with no baseline match −1 at each end, so extra
    intervals never pay), −1 for an unparsed sample, ``None`` when the baseline is unparsed.

    With the baseline written at each boundary's median (``stage4.baseline: constrained``) its expected value
    rises exactly as probability moves across the median toward the reference — the policy gradient that
    moves the answer ``choices=constrained`` writes, and not one that pays for sharpening the distribution
    where it already is (what IoU and ``interval_boundary`` mostly reward: docs/training-log.md). Needs the
    ``baseline`` column (stage 4 fills it).
    """
    rows = _prepare(completions, kwargs)
    base = column(kwargs, "baseline", len(rows))
    out: list[float | None] = []
    for r, b in zip(rows, base):
        median = None if r is None or b is None else parsed_intervals(str(b), r[2])
        if not median:
            out.append(None)
            continue
        if not r[1]:
            out.append(-1.0)
            continue
        ref, med, est = (np.asarray(x, dtype=float) for x in (r[0], median, r[1]))
        to_ref, pairs = dict(_matched(med, ref)), _matched(med, est)
        total = -2.0 * (len(est) - len(pairs))  # an interval the baseline has no match for is wrong at both ends
        for m, e in pairs:
            if m in to_ref:
                side = ref[to_ref[m]] - med[m]
                total += float(np.sum(np.where(np.abs(side) > tolerance, np.sign(est[e] - med[m]) * np.sign(side), 0.0)))
        out.append(total / (2 * max(len(med), len(est))))
    return out


interval_median_side.needs_baseline = True  # type: ignore[attr-defined]
