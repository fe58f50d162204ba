"""Estimated annotations against the exact ones on renders: onset F-measure (mir_eval, 50 ms), Amuse
rhythm-change labels vs the true tempo changes (P/R/F1), source-activity frame F1 (stems, and the
signal-based separator against drums/bass/other truth)."""

from __future__ import annotations

from typing import Any

import mir_eval
import numpy as np

from bench.annotate.estimate import detect_onsets
from bench.annotate.rhythm import RhythmConfig, amuse_rhythm
from bench.annotate.sources import HPSSBandSeparator, frames_active, stem_activity
from bench.annotate.transitions import tempo_change_events
from bench.annotate.truth import annotate_render
from bench.synth.compose import ComposeConfig, compose
from bench.synth.render import render_stems

__all__ = ["run"]


def _frames(spans, times):
    m = np.zeros(len(times), bool)
    for s, e in spans:
        m |= (times >= s) & (times < e)
    return m


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / max(2 * tp + fp + fn, 1)


def run(quick: bool = False) -> dict[str, Any]:
    """Averages over renders (more pieces, and tempo changes forced on, without --quick)."""
    n = 6 if quick else 24
    cfg = ComposeConfig(min_seconds=45, max_seconds=90, tempo_change_prob=0.5)
    onset_f, rhythm = [], {v: [0, 0, 0] for v in ("paper", "code")}
    stems_tp = stems_fp = stems_fn = 0
    sep = {"drums": [0, 0, 0], "bass": [0, 0, 0], "other": [0, 0, 0]}
    for seed in range(n):
        piece = compose(1000 + seed, cfg)
        mix, stems = render_stems(piece)
        sr = 22050
        truth = annotate_render("q", piece, mix, stems, sr)
        ref_on = np.array(sorted({t for v in truth.onsets.values() for t in v}))
        onset_f.append(mir_eval.onset.f_measure(ref_on, detect_onsets(mix, sr), window=0.05)[0])
        true_changes = np.array([e.time for e in tempo_change_events(truth.tempo)])
        for variant in rhythm:
            r = amuse_rhythm(mix, sr, RhythmConfig.named(variant))
            horizon = r.starts[-1] + r.segment_seconds
            ref = true_changes[true_changes < horizon]
            est = np.array(r.change_times())
            hits = len(mir_eval.util.match_events(ref, est, r.segment_seconds)) if len(ref) and len(est) else 0
            rhythm[variant][0] += hits
            rhythm[variant][1] += len(est) - hits
            rhythm[variant][2] += len(ref) - hits
        times = np.arange(0, len(mix) / sr, 0.1)
        est_act = stem_activity(stems, sr)
        for name, spans in truth.activity.items():
            a, b = _frames(est_act.get(name, []), times), _frames(spans, times)
            stems_tp += int((a & b).sum())
            stems_fp += int((a & ~b).sum())
            stems_fn += int((~a & b).sum())
        pseudo = HPSSBandSeparator().separate(mix, sr)
        cats = {"drums": [s.name for s in truth.sources if s.category == "drums"],
                "bass": [s.name for s in truth.sources if s.category == "bass"],
                "other": [s.name for s in truth.sources if s.category in ("instrument", "vocal")]}
        for band, names in cats.items():
            t_act = np.zeros(len(times), bool)
            for nme in names:
                t_act |= _frames(truth.activity[nme], times)
            ft, act = frames_active(pseudo[band], sr, hop=0.1)
            e_act = np.interp(times, ft, act.astype(float)) > 0.5
            sep[band][0] += int((e_act & t_act).sum())
            sep[band][1] += int((e_act & ~t_act).sum())
            sep[band][2] += int((~e_act & t_act).sum())
    out = {"pieces": n, "onset_f_measure_50ms": round(float(np.mean(onset_f)), 3)}
    for v, (tp, fp, fn) in rhythm.items():
        out[f"amuse_{v}_rhythm_change"] = {"precision": round(tp / max(tp + fp, 1), 3), "recall": round(tp / max(tp + fn, 1), 3),
                                           "f1": round(_f1(tp, fp, fn), 3), "true_changes": tp + fn}
    out["source_activity_frame_f1_stems"] = round(_f1(stems_tp, stems_fp, stems_fn), 3)
    out["source_activity_frame_f1_hpss_separator"] = {k: round(_f1(*v), 3) for k, v in sep.items()}
    return out

