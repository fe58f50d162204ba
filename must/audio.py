"""Audio I/O with errors users can act on: every failure names the file and what is wrong with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = ["AudioError", "load_audio", "write_audio", "audio_info", "AUDIO_EXTENSIONS"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


class AudioError(ValueError):
    """Audio that cannot be used (missing, empty, corrupt, non-finite, too long); names the file."""


def audio_info(path: str | Path) -> tuple[float, int, int]:
    """``(duration_seconds, sample_rate, channels)`` of an audio file without decoding it."""
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: audio file not found")
    try:
        info = sf.info(str(p))
    except Exception as e:  # soundfile raises RuntimeError/LibsndfileError for unreadable files
        raise AudioError(f"{p}: unreadable or unsupported audio ({type(e).__name__}: {e})") from None
    return info.frames / info.samplerate if info.samplerate else 0.0, info.samplerate, info.channels


def load_audio(path: str | Path, sr: int | None = 22050, mono: bool = True, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Decode ``path`` to float32 (mono by averaging channels), resampled to ``sr`` (``None`` keeps it).

    Raises :class:`AudioError` for missing, unreadable, empty, over-long (``max_seconds``) or
    non-finite audio; clipping is left as is (it is valid, if ugly, audio).
    """
    p = Path(path)
    duration, native_sr, _ = audio_info(p)
    if duration <= 0:
        raise AudioError(f"{p}: audio is empty (0 samples)")
    if max_seconds is not None and duration > max_seconds:
        raise AudioError(f"{p}: audio is {duration:.0f} s long, over the limit of {max_seconds:.0f} s")
    try:
        y, file_sr = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception as e:
        raise AudioError(f"{p}: could not decode audio ({type(e).__name__}: {e})") from None
    if y.size == 0:
        raise AudioError(f"{p}: audio is empty (0 samples)")
    if not np.all(np.isfinite(y)):
        bad = int((~np.isfinite(y)).sum())
        raise AudioError(f"{p}: audio has {bad} NaN/inf sample(s)")
    y = y.T  # (channels, samples)
    if mono:
        y = y.mean(axis=0)
    if sr is not None and file_sr != sr:
        import librosa

        y = librosa.resample(y, orig_sr=file_sr, target_sr=sr, res_type="soxr_hq")
        file_sr = sr
    return np.ascontiguousarray(y, dtype=np.float32), int(file_sr)


def write_audio(path: str | Path, y: np.ndarray, sr: int) -> None:
    """Write float audio (``(samples,)`` or ``(channels, samples)``) as 16-bit PCM WAV/FLAC by extension."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(y, dtype=np.float32)
    if data.ndim == 2:
        data = data.T
    subtype = "PCM_16"
    tmp = p.with_name(p.name + ".part")
    sf.write(str(tmp), np.clip(data, -1.0, 1.0), sr, subtype=subtype, format=p.suffix[1:].upper())
    tmp.replace(p)  # atomic: a killed build never leaves a truncated file under the final name
