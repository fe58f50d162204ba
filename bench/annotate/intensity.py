"""Intensity curve (loudness × density × tempo) and its highest / lowest regions (MTR targets).

Conventions
-----------
- Frames every ``hop`` seconds. Loudness is the mix RMS, onset density the onsets per second, tempo
  the local BPM — each over a window of ``window`` seconds and divided by its maximum over the track,
  so each factor is in ``[0, 1]``; the curve is their product, smoothed with a ``smooth``-second mean.
- Regions are searched between the first onset and the last offset (silence around the music is not
  "low intensity"). *Highest*: frames whose curve is within ``rel_threshold`` of the range below the
  maximum; *lowest*: within ``rel_threshold`` above the minimum. The threshold is tightened (×0.7 per
  step) until the regions cover at most ``max_fraction`` of the span, so a region is a distinct part of
  the piece, never most of it. Runs closer than ``bridge`` seconds are joined; runs shorter than
  ``min_seconds`` are dropped unless nothing else remains, in which case the longest run is kept.
"""

from __future__ import annotations

import numpy as np

__all__ = ["frame_times", "windowed_rms", "onset_density", "intensity_curve", "intensity_regions"]


def frame_times(duration: float, hop: float = 0.5) -> np.ndarray:
    """Frame centre times from 0 to ``duration``."""
    return np.arange(0.0, max(duration, hop), hop)


def windowed_rms(y: np.ndarray, sr: int, times: np.ndarray, window: float = 2.0) -> np.ndarray:
    """RMS of ``y`` in a ``window``-second window centred on each time."""
    cs = np.concatenate([[0.0], np.cumsum(y.astype(np.float64) ** 2)])
    half = int(window * sr / 2)
    centre = (times * sr).astype(int)
    lo = np.clip(centre - half, 0, len(y))
    hi = np.clip(centre + half, 0, len(y))
    n = np.maximum(hi - lo, 1)
    return np.sqrt((cs[hi] - cs[lo]) / n)


def onset_density(onsets: np.ndarray, times: np.ndarray, window: float = 2.0) -> np.ndarray:
    """Onsets per second in a ``window``-second window centred on each time."""
    on = np.sort(np.asarray(onsets, dtype=float))
    lo = np.searchsorted(on, times - window / 2)
    hi = np.searchsorted(on, times + window / 2)
    return (hi - lo) / window


def _norm(x: np.ndarray) -> np.ndarray:
    top = float(np.max(x)) if len(x) else 0.0
    return x / top if top > 0 else np.zeros_like(x)


def intensity_curve(loudness: np.ndarray, density: np.ndarray, tempo: np.ndarray, hop: float = 0.5,
                    smooth: float = 4.0) -> np.ndarray:
    """Smoothed product of the max-normalised loudness, density and tempo."""
    curve = _norm(np.asarray(loudness, float)) * _norm(np.asarray(density, float)) * _norm(np.asarray(tempo, float))
    k = max(1, int(round(smooth / hop)))
    if k > 1 and len(curve) > k:
        curve = np.convolve(np.pad(curve, (k // 2, k - 1 - k // 2), mode="edge"), np.ones(k) / k, mode="valid")
    return curve


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    runs, start = [], None
    for i, m in enumerate(mask):
        if m and start is None:
            start = i
        elif not m and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(mask)))
    return runs


def intensity_regions(times: np.ndarray, curve: np.ndarray, span: tuple[float, float], kind: str = "highest",
                      rel_threshold: float = 0.15, min_seconds: float = 4.0, bridge: float = 2.0,
                      max_fraction: float = 0.18) -> list[tuple[float, float]]:
    """Highest or lowest intensity regions as ``[(start, end), ...]`` seconds, inside ``span``."""
    if kind not in ("highest", "lowest"):
        raise ValueError(f"kind must be 'highest' or 'lowest', got {kind!r}")
    times, curve = np.asarray(times, float), np.asarray(curve, float)
    inside = (times >= span[0]) & (times <= span[1])
    if not inside.any():
        return []
    hop = float(times[1] - times[0]) if len(times) > 1 else 1.0
    lo, hi = float(curve[inside].min()), float(curve[inside].max())
    rng = hi - lo
    while True:
        mask = inside & ((curve >= hi - rel_threshold * rng) if kind == "highest" else (curve <= lo + rel_threshold * rng))
        if mask.sum() <= max_fraction * inside.sum() or rel_threshold < 1e-3:
            break
        rel_threshold *= 0.7
    runs = [(max(span[0], times[a] - hop / 2), min(span[1], times[b - 1] + hop / 2)) for a, b in _runs(mask)]
    merged: list[list[float]] = []
    for s, e in runs:
        if merged and s - merged[-1][1] < bridge:
            merged[-1][1] = e
        else:
            merged.append([s, e])
    long_enough = [(s, e) for s, e in merged if e - s >= min_seconds]
    if not long_enough and merged:
        long_enough = [tuple(max(merged, key=lambda r: r[1] - r[0]))]
    return [(round(float(s), 2), round(float(e), 2)) for s, e in long_enough]
