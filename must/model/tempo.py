"""Measured tempo signals: where the beat's period changes, and which way.

The encoder's learned local-tempo head stays nearly flat on the default run, and the LM then places 10 % of GTO's
tempo changes within 3 s. These signals are measured instead, like loudness and flux: from the 50 Hz onset
envelope of the log-mel, a tempogram (``librosa.feature.tempogram``, beat periods 0.25–1.5 s), and per frame

- *novelty*: the cosine distance between the mean tempogram of the ``span`` seconds before and after it;
- *onsets*: how many onsets (``librosa.onset.onset_detect``) fall in it;
- *period*: the tempogram-weighted mean log2 beat period.

On the first 60 tempo-changing test tracks of ``standard`` (124 changes; ``benchmarks/tempo_signals.py``), the
``k`` highest novelty peaks (``k`` = the track's number of changes, 5 s apart) put 74 % of the changes within 3 s.
Which way the tempo went is harder (octave errors): the change of onset rate across a peak gets it right for 63 %
of those found, the change of beat period for 54 %. :func:`tempo_track_signals` turns them into per-second,
track-relative features. In MusT-small they did not pay (docs/training-log.md: rows 15, and re-run on 2026-12-04 —
LTR's tempo answers 44 → 49 % on the whole test split, LTR and the overall unchanged), so the option is off by default.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["TEMPO_FRAME_SIGNALS", "TEMPO_TRACK_SIGNALS", "tempo_frames", "tempo_track_signals"]

TEMPO_FRAME_SIGNALS = 3  # novelty, onset count, log2 beat period
TEMPO_TRACK_SIGNALS = 3  # novelty, onset-rate change, tempo change
PERIODS = (0.25, 1.5)  # seconds per beat considered: 240 to 40 BPM


def _window_means(x: np.ndarray, span: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row ``t`` of ``(T, F)``: the mean of rows ``[t-span, t)`` and of ``[t, t+span)`` (clipped to the track)."""
    c = np.concatenate([np.zeros_like(x[:1]), np.cumsum(x, 0)])
    t = np.arange(len(x))
    lo, hi = np.maximum(t - span, 0), np.minimum(t + span, len(x))
    before = (c[t] - c[lo]) / np.maximum(t - lo, 1)[:, None]
    after = (c[hi] - c[t]) / np.maximum(hi - t, 1)[:, None]
    return before, after


def tempo_frames(mel: torch.Tensor, mel_rate: float, stride: int, span: float = 5.0, window: int = 384) -> torch.Tensor:
    """``(n_mels, M)`` scaled log-mel at ``mel_rate`` Hz → ``(M // stride, TEMPO_FRAME_SIGNALS)``: per frame of
    ``stride`` mel frames, tempogram novelty over ``span`` s either side, onset count and log2 beat period
    (``window``: the tempogram's window in mel frames, 384 = 7.7 s at 50 Hz)."""
    import librosa

    m = mel.detach().float().cpu().numpy()
    n = m.shape[-1] // stride
    out = np.zeros((n, TEMPO_FRAME_SIGNALS), np.float32)
    if n < 2:
        return torch.from_numpy(out)
    env = np.maximum(0.0, np.diff(m, axis=-1, prepend=m[:, :1])).mean(0)
    # the envelope is already at the mel rate: librosa's sr / hop_length is that rate, one envelope value per step
    gram = librosa.feature.tempogram(onset_envelope=env, sr=mel_rate, hop_length=1, win_length=min(window, len(env)))
    periods = np.arange(gram.shape[0]) / mel_rate
    keep = (periods >= PERIODS[0]) & (periods <= PERIODS[1])
    gram, log_period = np.maximum(gram[keep], 0.0), np.log2(periods[keep])
    gram = gram[:, : n * stride].reshape(gram.shape[0], n, stride).mean(-1).T  # (n, periods)
    weight = gram.sum(1)
    out[:, 2] = np.where(weight > 0, gram @ log_period / np.maximum(weight, 1e-8), log_period.mean())
    unit = gram / np.maximum(np.linalg.norm(gram, axis=1, keepdims=True), 1e-8)
    before, after = _window_means(unit, int(round(span * mel_rate / stride)))
    cos = (before * after).sum(1) / np.maximum(np.linalg.norm(before, axis=1) * np.linalg.norm(after, axis=1), 1e-8)
    out[1:, 0] = 1.0 - cos[1:]  # frame 0 has nothing before it
    onsets = librosa.onset.onset_detect(onset_envelope=env, sr=mel_rate, hop_length=1, units="frames")
    out[:, 1] = np.bincount(np.asarray(onsets, int) // stride, minlength=n)[:n]
    return torch.from_numpy(out)


def tempo_track_signals(sig: torch.Tensor, span: int = 5) -> torch.Tensor:
    """``(S, TEMPO_FRAME_SIGNALS)`` per-second means → ``(S, TEMPO_TRACK_SIGNALS)``: novelty, the change of onset
    rate across each second (next ``span`` s minus previous, over the track's mean rate) and the change of tempo
    (log2 beat period before minus after: positive when it speeds up)."""
    from must.model.modeling import contrast

    novelty, onsets, period = sig[:, 0], sig[:, 1:2], sig[:, 2:3]
    width = max(1, min(span, len(sig)))
    rate = (contrast(onsets, width)[:, 0] / onsets.mean().clamp(min=1e-3)).clamp(-2.0, 2.0)
    return torch.stack([novelty, rate, -contrast(period, width)[:, 0]], dim=-1)
