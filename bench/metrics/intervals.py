"""Interval-set metrics for MTR (intensity-region grounding).

Conventions
-----------
- An interval set is an ``(n, 2)`` array of ``[start, end]`` seconds with ``end > start``; a set may be
  empty only on the estimated side (an unparsed answer), which scores 0.
- Both sets are first merged into disjoint, sorted intervals (overlapping or touching intervals are
  joined), so repeating or splitting an interval neither helps nor hurts.
- **IoU** (``temporal_iou``): duration of the intersection of the two unions divided by the duration of
  their union — one number per item, independent of how many intervals each side lists.
- **F1** (``segment_f1``), the E.T. Bench / MUSEG convention: with the IoU matrix of reference ×
  estimated segments, recall is the share of reference segments whose best IoU is ≥ θ, precision the
  share of estimated segments whose best IoU is ≥ θ, F1 = 2PR/(P+R); averaged over
  θ ∈ {0.1, 0.3, 0.5, 0.7}. It rewards finding *each* region, which IoU alone does not.
- Clipping to the track (``[0, duration]``) is the parser's job (:func:`must.answers.parse_interval_answer`).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "THRESHOLDS",
    "validate_intervals",
    "merge_intervals",
    "total_duration",
    "temporal_iou",
    "iou_matrix",
    "segment_f1",
]

THRESHOLDS = (0.1, 0.3, 0.5, 0.7)


def validate_intervals(intervals, allow_empty: bool = False) -> np.ndarray:
    """Return ``intervals`` as an ``(n, 2)`` float array; raise ``ValueError`` if malformed."""
    arr = np.asarray(intervals, dtype=float)
    if arr.size == 0:
        if not allow_empty:
            raise ValueError("interval set is empty")
        return np.zeros((0, 2))
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"intervals must have shape (n, 2), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("intervals must be finite")
    if np.any(arr[:, 1] <= arr[:, 0]):
        raise ValueError("every interval must end after it starts")
    if np.any(arr < 0):
        raise ValueError("interval times must be non-negative")
    return arr


def merge_intervals(intervals) -> np.ndarray:
    """Union of an interval set as disjoint intervals sorted by start."""
    arr = validate_intervals(intervals, allow_empty=True)
    if len(arr) == 0:
        return arr
    arr = arr[np.argsort(arr[:, 0], kind="stable")]
    merged = [arr[0].copy()]
    for s, e in arr[1:]:
        if s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append(np.array([s, e]))
    return np.array(merged)


def total_duration(intervals) -> float:
    """Total duration covered by an interval set (overlaps counted once)."""
    m = merge_intervals(intervals)
    return float(np.sum(m[:, 1] - m[:, 0])) if len(m) else 0.0


def _intersection(a: np.ndarray, b: np.ndarray) -> float:
    total, i, j = 0.0, 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i, 0], b[j, 0]), min(a[i, 1], b[j, 1])
        total += max(0.0, hi - lo)
        if a[i, 1] < b[j, 1]:
            i += 1
        else:
            j += 1
    return total


def temporal_iou(reference, estimated) -> float:
    """IoU of the unions of the reference and estimated sets (0 for an empty estimate)."""
    ref = merge_intervals(validate_intervals(reference))
    est = merge_intervals(estimated)
    if len(est) == 0:
        return 0.0
    inter = _intersection(ref, est)
    union = total_duration(ref) + total_duration(est) - inter
    return inter / union if union > 0 else 0.0


def iou_matrix(reference, estimated) -> np.ndarray:
    """Pairwise IoU between reference segments (rows) and estimated segments (columns)."""
    ref = validate_intervals(reference, allow_empty=True)
    est = validate_intervals(estimated, allow_empty=True)
    lo = np.maximum(ref[:, None, 0], est[None, :, 0])
    hi = np.minimum(ref[:, None, 1], est[None, :, 1])
    inter = np.clip(hi - lo, 0, None)
    union = (ref[:, 1] - ref[:, 0])[:, None] + (est[:, 1] - est[:, 0])[None, :] - inter
    return inter / union


def segment_f1(reference, estimated, thresholds=THRESHOLDS) -> float:
    """Segment-level F1 between merged sets, averaged over IoU thresholds (0 for an empty estimate)."""
    ref = merge_intervals(validate_intervals(reference))
    est = merge_intervals(estimated)
    if len(est) == 0:
        return 0.0
    m = iou_matrix(ref, est)
    f1s = []
    for t in thresholds:
        recall = float(np.mean(m.max(axis=1) >= t))
        precision = float(np.mean(m.max(axis=0) >= t))
        f1s.append(0.0 if recall + precision == 0 else 2 * precision * recall / (precision + recall))
    return float(np.mean(f1s))
