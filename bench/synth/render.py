"""Render a composed piece to stems and a mix with tinysoundfont (offline, no download)."""

from __future__ import annotations

import io
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pretty_midi

from bench.synth.compose import Piece

__all__ = ["check_soundfont", "default_soundfont", "piece_to_midi", "render_stems", "TAIL_SECONDS"]

TAIL_SECONDS = 1.5  # release tail rendered after the last bar


def default_soundfont() -> str:
    """TimGM6mb.sf2, the General-MIDI soundfont that ships inside pretty_midi."""
    return os.path.join(os.path.dirname(pretty_midi.__file__), "TimGM6mb.sf2")


def piece_to_midi(piece: Piece, parts: list[int] | None = None) -> pretty_midi.PrettyMIDI:
    """The piece (or the chosen parts) as PrettyMIDI, notes at their absolute times."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=piece.sections[0].bpm)
    for i, part in enumerate(piece.parts):
        if parts is not None and i not in parts:
            continue
        inst = pretty_midi.Instrument(program=part.voice.program, is_drum=part.voice.is_drum, name=part.voice.name)
        inst.notes = [pretty_midi.Note(velocity=v, pitch=p, start=s, end=e) for s, e, p, v in part.notes]
        pm.instruments.append(inst)
    return pm


@lru_cache(maxsize=4)
def check_soundfont(path: str) -> str:
    """``path`` when the soundfont file exists; else a FileNotFoundError saying how to get one."""
    if not Path(path).exists():
        raise FileNotFoundError(f"soundfont not found: {path} (set `soundfont:` in the build config, or install a "
                                "General-MIDI font: Debian's fluid-soundfont-gm puts FluidR3_GM.sf2 in /usr/share/sounds/sf2)")
    return path


def _render_midi(pm: pretty_midi.PrettyMIDI, soundfont: str, sr: int, n_samples: int) -> np.ndarray:
    import tinysoundfont
    from tinysoundfont.midi import load_memory

    buf = io.BytesIO()
    pm.write(buf)
    synth = tinysoundfont.Synth(samplerate=sr)
    synth.sfload(soundfont)
    seq = tinysoundfont.Sequencer(synth)
    seq.add(load_memory(buf.getvalue()))
    stereo = np.frombuffer(synth.generate(n_samples), dtype=np.float32).reshape(-1, 2)
    return stereo.mean(axis=1).astype(np.float32)


def render_stems(piece: Piece, sr: int = 22050, soundfont: str | None = None, peak: float = 0.9,
                 gain_db: tuple[float, float] = (-10.0, 2.0)) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(mix, {source name: stem})``; stems sum to the mix, scaled together so the mix peaks at ``peak``.

    Each stem is first levelled to the same RMS over its playing span, then given a random mixing gain
    in ``gain_db`` (seeded by the piece): which source is louder depends on this mix, not on the
    instrument's identity or the soundfont's preset levels.
    """
    sf_path = check_soundfont(soundfont or default_soundfont())
    n = int((piece.end + TAIL_SECONDS) * sr)
    rng = np.random.default_rng([piece.seed, 7])
    stems = {}
    for i, part in enumerate(piece.parts):
        y = _render_midi(piece_to_midi(piece, [i]), sf_path, sr, n)
        start, end = int(part.notes[0][0] * sr), int(max(e for _, e, _, _ in part.notes) * sr) + 1
        rms = float(np.sqrt(np.mean(y[start:end].astype(np.float64) ** 2))) or 1.0
        stems[part.voice.name] = (y * (0.1 / rms) * 10 ** (rng.uniform(*gain_db) / 20)).astype(np.float32)
    mix = np.sum(list(stems.values()), axis=0)
    top = float(np.max(np.abs(mix))) or 1.0
    gain = peak / top
    return (mix * gain).astype(np.float32), {k: (v * gain).astype(np.float32) for k, v in stems.items()}
