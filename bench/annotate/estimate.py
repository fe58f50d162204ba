"""Annotations estimated from audio (real recordings): the Amuse procedure plus librosa onsets,
entries/exits from (pseudo-)stem activity, dynamic changes from loudness, and the intensity curve."""

from __future__ import annotations

import re

import numpy as np

from bench.annotate import intensity as inten
from bench.annotate.rhythm import RhythmConfig, amuse_rhythm
from bench.annotate.sources import Separator, load_separator, segment_sources, stem_activity
from bench.annotate.transitions import dynamic_change_events, entry_exit_events, rhythm_change_events, sort_events
from bench.annotate.truth import source_loudness_db
from must.annotation import Source, TrackAnnotation

__all__ = ["annotate_audio", "detect_onsets", "guess_category"]


def detect_onsets(y: np.ndarray, sr: int) -> np.ndarray:
    """Onset times (s) from librosa's spectral-flux onset detector."""
    import librosa

    return librosa.onset.onset_detect(y=y, sr=sr, units="time", backtrack=False)


def guess_category(name: str) -> str:
    """Source category from a stem or instrument name."""
    n = name.lower()
    if re.search(r"drum|perc|kit|snare|kick|hat|cymbal", n):
        return "drums"
    if "bass" in n and "bassoon" not in n:
        return "bass"
    if re.search(r"vocal|voice|voc|choir|sing|vox", n):
        return "vocal"
    return "instrument"


def annotate_audio(track_id: str, y: np.ndarray, sr: int, stems: dict[str, np.ndarray] | None = None,
                   separator: Separator | str | None = None, rhythm: RhythmConfig | None = None,
                   known: dict | None = None) -> TrackAnnotation:
    """Estimate a :class:`TrackAnnotation` from a mix (and stems when given).

    ``known`` may carry annotations that exist already (``onsets``, ``tempo`` from a JAMS file); they
    are used instead of estimates and recorded in ``provenance``.
    """
    known = known or {}
    duration = len(y) / sr
    provenance = {}
    if stems:
        sources_audio, provenance["segment_sources"] = stems, "stems"
    else:
        sep = separator if hasattr(separator, "separate") else load_separator(separator)  # type: ignore[arg-type]
        sources_audio, provenance["segment_sources"] = sep.separate(y, sr), f"separator:{sep.name}"
    provenance["activity"] = provenance["segment_sources"]
    activity = {k: v for k, v in stem_activity(sources_audio, sr).items() if v}
    sources = [Source(name, guess_category(name)) for name in activity]
    if "onsets" in known:
        mix_onsets, provenance["onsets"] = np.asarray(known["onsets"], float), "jams"
    else:
        mix_onsets, provenance["onsets"] = detect_onsets(y, sr), "librosa"
    ann = TrackAnnotation(track_id, round(duration, 3), sources, {"mix": [round(float(t), 3) for t in mix_onsets]}, activity)
    cfg = rhythm or RhythmConfig()
    ann.rhythm = amuse_rhythm(y, sr, cfg)
    if "tempo" in known:
        ann.tempo, provenance["tempo"] = [tuple(x) for x in known["tempo"]], "jams"
    else:
        ann.tempo = [(s, t) for s, t in zip(ann.rhythm.starts, ann.rhythm.tempos)]
        provenance["tempo"] = f"amuse-{cfg.variant}"
    times = inten.frame_times(duration)
    rms = inten.windowed_rms(y, sr, times)
    loud_db = 20 * np.log10(np.maximum(rms, 1e-10))
    span = (min((s for v in activity.values() for s, _ in v), default=0.0),
            max((e for v in activity.values() for _, e in v), default=duration))
    ann.transitions = sort_events(entry_exit_events(ann) + rhythm_change_events(ann.rhythm)
                                  + dynamic_change_events(times, loud_db, span=span))
    tempo_curve = ann.tempo_curve(times, ann.rhythm.clip_tempo or 1.0)
    curve = inten.intensity_curve(rms, inten.onset_density(mix_onsets, times), tempo_curve)
    ann.intensity_times = [round(float(t), 2) for t in times]
    ann.intensity = [round(float(c), 4) for c in curve]
    ann.regions = {k: inten.intensity_regions(times, curve, span, k) for k in ("highest", "lowest")}
    ann.segment_sources = segment_sources(activity, ann.rhythm.starts, ann.rhythm.segment_seconds, duration)
    ann.loudness_db = {n: source_loudness_db(sources_audio[n], sr, activity[n]) for n in activity}
    provenance.update(rhythm=f"amuse-{cfg.variant}", transitions="estimated",
                      intensity="mix-rms x onset-density x amuse-tempo")
    ann.provenance = provenance
    return ann
