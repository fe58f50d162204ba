"""Amuse source annotation: which sources sound in each segment.

With stems (renders, multitrack datasets) activity comes from each stem's energy. Without stems a
:class:`Separator` produces pseudo-stems first: the paper used a universal source-separation model;
users with local weights plug theirs in as ``module:ClassName`` (a class with ``name`` and
``separate(y, sr) -> {source: audio}``). The signal-based default, :class:`HPSSBandSeparator`, splits
the mix into percussive (``drums``), low harmonic (``bass``) and remaining harmonic (``other``) parts.
"""

from __future__ import annotations

import importlib
from typing import Protocol

import numpy as np

__all__ = ["Separator", "HPSSBandSeparator", "load_separator", "stem_activity", "segment_sources", "frames_active"]


class Separator(Protocol):
    """Anything that splits a mono mix into named sources."""

    name: str

    def separate(self, y: np.ndarray, sr: int) -> dict[str, np.ndarray]:
        """Named source signals, each as long as ``y``."""


class HPSSBandSeparator:
    """Signal-based default: HPSS percussive → ``drums``; harmonic below ``bass_hz`` → ``bass``; rest → ``other``."""

    name = "hpss-bands"

    def __init__(self, bass_hz: float = 250.0):
        self.bass_hz = bass_hz

    def separate(self, y: np.ndarray, sr: int) -> dict[str, np.ndarray]:
        """Three pseudo-stems from spectral masking."""
        import librosa

        stft = librosa.stft(y)
        harmonic, percussive = librosa.decompose.hpss(stft)
        freqs = librosa.fft_frequencies(sr=sr)
        low = (freqs < self.bass_hz)[:, None]
        n = len(y)
        return {
            "drums": librosa.istft(percussive, length=n),
            "bass": librosa.istft(harmonic * low, length=n),
            "other": librosa.istft(harmonic * ~low, length=n),
        }


def load_separator(spec: str | None) -> Separator:
    """``None``/``"hpss"`` → the default; ``"module:ClassName"`` → a user separator (no arguments)."""
    if spec in (None, "", "hpss", "hpss-bands"):
        return HPSSBandSeparator()
    if ":" not in spec:
        raise ValueError(f"separator {spec!r}: expected 'hpss' or 'module:ClassName'")
    module, name = spec.split(":", 1)
    sep = getattr(importlib.import_module(module), name)()
    if not callable(getattr(sep, "separate", None)):
        raise TypeError(f"separator {spec!r} has no separate(y, sr) method")
    return sep


def frames_active(y: np.ndarray, sr: int, hop: float = 0.1, window: float = 0.2, rel_db: float = -35.0,
                  floor_db: float = -60.0) -> tuple[np.ndarray, np.ndarray]:
    """``(times, active)``: frames whose RMS is within ``rel_db`` of the signal's peak RMS and above ``floor_db``."""
    from bench.annotate.intensity import windowed_rms

    times = np.arange(0.0, len(y) / sr, hop)
    rms = windowed_rms(y, sr, times, window)
    db = 20 * np.log10(np.maximum(rms, 1e-10))
    peak = db.max() if len(db) else floor_db
    return times, (db >= max(peak + rel_db, floor_db))


def stem_activity(stems: dict[str, np.ndarray], sr: int, hop: float = 0.1, bridge: float = 1.0,
                  min_seconds: float = 0.2) -> dict[str, list[tuple[float, float]]]:
    """Active spans per stem from its energy; gaps shorter than ``bridge`` seconds are joined."""
    out = {}
    for name, y in stems.items():
        times, active = frames_active(y, sr, hop)
        spans: list[list[float]] = []
        for t, a in zip(times, active):
            if not a:
                continue
            if spans and t - spans[-1][1] <= bridge:
                spans[-1][1] = t + hop
            else:
                spans.append([t, t + hop])
        out[name] = [(round(s, 2), round(e, 2)) for s, e in spans if e - s >= min_seconds]
    return out


def segment_sources(activity: dict[str, list[tuple[float, float]]], starts: list[float], segment_seconds: float,
                    duration: float, min_fraction: float = 0.3) -> list[tuple[float, float, list[str]]]:
    """Per segment, the sources active for at least ``min_fraction`` of it."""
    out = []
    for s in starts:
        e = min(s + segment_seconds, duration)
        length = max(e - s, 1e-9)
        names = [n for n, spans in activity.items()
                 if sum(max(0.0, min(e, b) - max(s, a)) for a, b in spans) / length >= min_fraction]
        out.append((round(s, 3), round(e, 3), sorted(names)))
    return out
