"""Amuse rhythm annotation: per-segment beat tracking → tempo per segment → rhythm-change flags.

Two published variants (``RhythmConfig.variant``):

- ``paper`` (Amuse, EMNLP 2024): 6-second segments over the whole clip; a segment is a rhythm change
  when its tempo differs from the previous segment's by more than 25 % of the clip's tempo.
- ``code`` (the authors' released code): 3-second segments over the first 60 s, audio at 32 kHz,
  threshold 0.3 × the clip's tempo.

Tempo is ``librosa.beat.beat_track``'s estimate; the clip tempo is its estimate over the analysed span.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from must.annotation import Rhythm

__all__ = ["RhythmConfig", "VARIANTS", "amuse_rhythm"]


@dataclass
class RhythmConfig:
    """Segment length, change threshold (fraction of clip tempo), analysed span and sample rate."""

    variant: str = "paper"
    segment_seconds: float = 6.0
    threshold: float = 0.25
    max_seconds: float | None = None
    sample_rate: int | None = None  # None keeps the input rate

    @classmethod
    def named(cls, variant: str) -> "RhythmConfig":
        """The ``paper`` or ``code`` variant."""
        if variant not in VARIANTS:
            raise ValueError(f"unknown Amuse rhythm variant {variant!r}; choose from {sorted(VARIANTS)}")
        return cls(**VARIANTS[variant])


VARIANTS = {
    "paper": dict(variant="paper", segment_seconds=6.0, threshold=0.25, max_seconds=None, sample_rate=None),
    "code": dict(variant="code", segment_seconds=3.0, threshold=0.3, max_seconds=60.0, sample_rate=32000),
}


def _tempo(y: np.ndarray, sr: int) -> float:
    import librosa

    if len(y) < sr // 2 or not np.any(y):
        return 0.0
    tempo, _ = librosa.beat.beat_track(y=y, sr=sr)
    return float(np.atleast_1d(tempo)[0])


def amuse_rhythm(y: np.ndarray, sr: int, cfg: RhythmConfig | None = None) -> Rhythm:
    """Per-segment tempo and change flags for mono audio ``y`` at ``sr``."""
    import librosa

    cfg = cfg or RhythmConfig()
    if cfg.sample_rate and cfg.sample_rate != sr:
        y = librosa.resample(y, orig_sr=sr, target_sr=cfg.sample_rate)
        sr = cfg.sample_rate
    if cfg.max_seconds:
        y = y[: int(cfg.max_seconds * sr)]
    seg = int(cfg.segment_seconds * sr)
    starts = list(range(0, max(len(y) - seg // 2, 1), seg))
    tempos = [_tempo(y[s : s + seg], sr) for s in starts]
    clip = _tempo(y, sr)
    changes = [False] + [
        bool(a > 0 and b > 0 and abs(b - a) > cfg.threshold * clip) for a, b in zip(tempos[:-1], tempos[1:])
    ]
    return Rhythm(cfg.variant, cfg.segment_seconds, cfg.threshold, sr, clip,
                  [round(s / sr, 3) for s in starts], [round(t, 2) for t in tempos], changes)
