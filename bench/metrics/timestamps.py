"""Timestamp metrics for TSG (temporal source grounding).

Conventions
-----------
- ``reference`` and ``estimated`` are 1-d arrays of times in seconds, aligned item by item.
- An estimate of ``NaN`` is an unparsed or impossible answer: it counts as a miss.
- Hit@w is ``|estimated - reference| <= w`` (inclusive); MusTBench uses ``w = 3`` seconds and reports
  onset questions ("first appears") and offset questions ("finally disappears") separately.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["validate", "hits", "hit_rate", "absolute_errors"]


def validate(reference: np.ndarray, estimated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes and values; return float arrays (raise ``ValueError`` on malformed input)."""
    ref = np.asarray(reference, dtype=float)
    est = np.asarray(estimated, dtype=float)
    if ref.ndim != 1 or est.shape != ref.shape:
        raise ValueError(f"reference and estimated must be 1-d and aligned, got {ref.shape} and {est.shape}")
    if not np.all(np.isfinite(ref)) or np.any(ref < 0):
        raise ValueError("reference times must be finite and non-negative")
    if ref.size == 0:
        warnings.warn("no reference times: scores are 0", stacklevel=2)
    return ref, est


def absolute_errors(reference: np.ndarray, estimated: np.ndarray) -> np.ndarray:
    """Absolute time error per item (``inf`` where the estimate is missing)."""
    ref, est = validate(reference, estimated)
    err = np.abs(est - ref)
    return np.where(np.isnan(err), np.inf, err)


def hits(reference: np.ndarray, estimated: np.ndarray, window: float = 3.0) -> np.ndarray:
    """Boolean Hit@window per item."""
    if window < 0:
        raise ValueError(f"window must be non-negative, got {window}")
    return absolute_errors(reference, estimated) <= window


def hit_rate(reference: np.ndarray, estimated: np.ndarray, window: float = 3.0) -> float:
    """Share of items whose estimate is within ``window`` seconds of the reference (0 when empty)."""
    h = hits(reference, estimated, window)
    return float(h.mean()) if h.size else 0.0
