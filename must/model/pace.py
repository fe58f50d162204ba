"""The pace head: how busy the music is at each frame, the factor of MTR's intensity that loudness does not give.

MTR's reference intensity (:mod:`bench.annotate.intensity`) is the mix's RMS × the onsets per second of every
source (MIDI) × the local tempo. On the 400 MTR questions of ``standard``'s test split, the regions found from the
measured RMS × the *annotated* onset density (tempo left out) reach IoU 88.2 against the reference, while RMS ×
librosa's onset strength reaches 60.4 and RMS × its detected onsets 58.0 (``benchmarks/mtr_pace.py``): the onset
density is what the measured signals miss. With ``MusTConfig.pace_head`` the encoder learns it in stage 1 as one
more frame head whose target is the annotation's *pace* — onsets per second in a 2 s window × tempo / 120 BPM —
on a log scale squashed into [0, 1] so that a sigmoid head trained with BCE on soft targets can hold it (pace has
a long tail: median 3.2, 99th percentile 24 over 150 of ``standard``'s tracks). The intensity the projector and
:func:`must.model.heard.heard_regions` read is then loudness × the decoded pace instead of loudness × flux.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["PACE_MAX", "REFERENCE_BPM", "pace", "pace_target", "pace_rate"]

PACE_MAX = 40.0  # pace (onsets per second at 120 BPM) that maps to 1; the 99.9th percentile is about 35
REFERENCE_BPM = 120.0
_LOG_MAX = float(np.log1p(PACE_MAX))


def pace(onsets: np.ndarray, times: np.ndarray, bpm: np.ndarray, window: float = 2.0) -> np.ndarray:
    """Onsets per second in a ``window``-second window centred on each time × ``bpm`` / :data:`REFERENCE_BPM`."""
    from bench.annotate.intensity import onset_density

    return onset_density(onsets, times, window) * np.asarray(bpm, float) / REFERENCE_BPM


def pace_target(value: np.ndarray) -> np.ndarray:
    """Pace → the head's target in [0, 1]: ``log1p(pace) / log1p(PACE_MAX)``, clipped."""
    return np.clip(np.log1p(np.maximum(np.asarray(value, float), 0.0)) / _LOG_MAX, 0.0, 1.0)


def pace_rate(prob: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """The head's probability → pace (the inverse of :func:`pace_target`), for numpy arrays or tensors."""
    expm1 = torch.expm1 if isinstance(prob, torch.Tensor) else np.expm1
    return expm1(prob * _LOG_MAX)
