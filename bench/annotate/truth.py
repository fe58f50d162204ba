"""Exact annotations of a rendered piece: onsets, activity and transitions from its MIDI; the Amuse
rhythm and source labels computed from its audio and stems as the paper's procedure does."""

from __future__ import annotations

import numpy as np

from bench.annotate import intensity as inten
from bench.annotate.rhythm import RhythmConfig, amuse_rhythm
from bench.annotate.sources import segment_sources, stem_activity
from bench.annotate.transitions import entry_exit_events, sort_events, tempo_change_events
from bench.synth.compose import Piece
from must.annotation import Event, Source, TrackAnnotation

__all__ = ["annotate_render", "note_activity", "source_loudness_db"]


def note_activity(notes: list[tuple[float, float, int, int]], bridge: float = 1.0) -> list[tuple[float, float]]:
    """Union of note spans, joining gaps shorter than ``bridge`` seconds."""
    spans: list[list[float]] = []
    for s, e, _, _ in sorted(notes):
        if spans and s - spans[-1][1] <= bridge:
            spans[-1][1] = max(spans[-1][1], e)
        else:
            spans.append([s, e])
    return [(round(s, 3), round(e, 3)) for s, e in spans]


def source_loudness_db(y: np.ndarray, sr: int, spans: list[tuple[float, float]]) -> float:
    """RMS level in dBFS of ``y`` over ``spans``."""
    parts = [y[int(s * sr) : int(e * sr)] for s, e in spans]
    x = np.concatenate(parts) if parts else y
    return round(float(20 * np.log10(max(np.sqrt(np.mean(x.astype(np.float64) ** 2)) if x.size else 0.0, 1e-10))), 2)


def _tempo_map(piece: Piece) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for s in piece.sections:
        if not out or abs(out[-1][1] - s.bpm) > 1e-6:
            out.append((round(s.start, 3), round(s.bpm, 1)))
    return out


def _dynamic_events(piece: Piece, mix: np.ndarray, sr: int, min_levels: int = 2, window: float = 4.0) -> list[Event]:
    """Section boundaries where the score's dynamic level jumps by ``min_levels``; dB measured on the mix."""
    events = []
    for a, b in zip(piece.sections[:-1], piece.sections[1:]):
        if abs(b.level - a.level) >= min_levels:
            t = b.start
            before = source_loudness_db(mix, sr, [(max(0.0, t - window), t)])
            after = source_loudness_db(mix, sr, [(t, t + window)])
            events.append(Event(round(t, 3), "dynamic_change", None,
                                {"direction": "louder" if b.level > a.level else "softer", "db": round(after - before, 1)}))
    return events


def annotate_render(track_id: str, piece: Piece, mix: np.ndarray, stems: dict[str, np.ndarray], sr: int,
                    rhythm: RhythmConfig | None = None) -> TrackAnnotation:
    """Annotation of a render: exact MIDI truth plus Amuse labels from its audio and stems."""
    duration = len(mix) / sr
    sources = [Source(p.voice.name, p.voice.category, p.voice.program, p.voice.is_drum) for p in piece.parts]
    onsets = {p.voice.name: sorted({round(n[0], 3) for n in p.notes}) for p in piece.parts}
    activity = {p.voice.name: note_activity(p.notes) for p in piece.parts}
    ann = TrackAnnotation(track_id, round(duration, 3), sources, onsets, activity, tempo=_tempo_map(piece))
    ann.transitions = sort_events(entry_exit_events(ann) + tempo_change_events(ann.tempo) + _dynamic_events(piece, mix, sr))
    times = inten.frame_times(duration)
    all_onsets = np.concatenate([np.asarray(v) for v in onsets.values()])
    tempo_curve = ann.tempo_curve(times, piece.sections[0].bpm)
    curve = inten.intensity_curve(inten.windowed_rms(mix, sr, times), inten.onset_density(all_onsets, times), tempo_curve)
    span = (min(s for v in activity.values() for s, _ in v), max(e for v in activity.values() for _, e in v))
    ann.intensity_times = [round(float(t), 2) for t in times]
    ann.intensity = [round(float(c), 4) for c in curve]
    ann.regions = {k: inten.intensity_regions(times, curve, span, k) for k in ("highest", "lowest")}
    ann.rhythm = amuse_rhythm(mix, sr, rhythm)
    stem_spans = stem_activity(stems, sr)
    ann.segment_sources = segment_sources(stem_spans, ann.rhythm.starts, ann.rhythm.segment_seconds, duration)
    ann.loudness_db = {name: source_loudness_db(stems[name], sr, activity[name]) for name in stems}
    ann.provenance = {"onsets": "midi", "activity": "midi", "transitions": "midi+score", "tempo": "score",
                      "rhythm": f"amuse-{ann.rhythm.variant}", "segment_sources": "stems",
                      "intensity": "mix-rms x midi-onset-density x tempo-map"}
    return ann
