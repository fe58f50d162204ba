"""LTR — local transition recognition: what best describes the change at M:SS? Options A–D.

Distractors, in order of preference: the inverted change, other transitions of the same track, "no
noticeable change", then changes that did not happen (a source of the track, or one absent from it,
entering or stopping). A share of questions ask about a moment where nothing changes.
"""

from __future__ import annotations

import numpy as np

from bench.synth.instruments import PALETTE
from bench.tasks.base import Draft, TaskConfig, event_dict, moments, register_task
from bench.tasks.phrasing import NO_CHANGE, event_option, invert, moment_option
from must.annotation import Event, TrackAnnotation
from must.timecode import format_time

TEMPLATES = ["What best describes the musical change at {t}?", "Which option best describes what changes at {t}?",
             "What happens in the music at {t}?"]


def _fillers(ann: TrackAnnotation, rng: np.random.Generator) -> list[str]:
    names = [s.name for s in ann.sources] + [v.name for v in PALETTE if v.name not in {s.name for s in ann.sources}]
    out = []
    for i in rng.permutation(len(names)):
        kind = "enter" if rng.random() < 0.5 else "exit"
        text = event_option(Event(0.0, kind, names[i]))
        out.append(text[0].upper() + text[1:])
    return out


def _quiet_times(ann: TrackAnnotation, times: list[float], cfg: TaskConfig, rng: np.random.Generator, n: int) -> list[float]:
    lo, hi = cfg.edge_seconds + 3, ann.duration - cfg.edge_seconds - 3
    if hi <= lo:
        return []
    candidates = np.arange(lo, hi, 1.0)
    candidates = [t for t in candidates if all(abs(t - m) >= 5.0 for m in times) and ann.active_at(t)]
    return [float(candidates[i]) for i in rng.permutation(len(candidates))[:n]] if candidates else []


@register_task("LTR")
def generate(ann: TrackAnnotation, rng: np.random.Generator, cfg: TaskConfig) -> list[Draft]:
    """Questions at transition moments (and a few at moments without change)."""
    ms = moments(ann, cfg)
    options_by_moment = [moment_option(m) for m in ms]
    drafts = []
    for idx in rng.permutation(len(ms)):
        m, correct = ms[int(idx)], options_by_moment[int(idx)]
        pool = [moment_option([invert(e) for e in m])]
        pool += [options_by_moment[int(j)] for j in rng.permutation(len(ms)) if options_by_moment[int(j)] != correct]
        pool += [NO_CHANGE] + _fillers(ann, rng)
        distractors = list(dict.fromkeys(o for o in pool if o != correct))[:3]
        q = TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(t=format_time(m[0].time))
        drafts.append(Draft("LTR", q, options=[correct, *distractors], events=[event_dict(e) for e in m]))
    n_quiet = int(round(len(drafts) * cfg.no_change_share / (1 - cfg.no_change_share) + rng.random() * 0.999))
    for t in _quiet_times(ann, [m[0].time for m in ms], cfg, rng, n_quiet):
        pool = [options_by_moment[int(j)] for j in rng.permutation(len(ms))]
        if ms:
            pool.insert(1, moment_option([invert(e) for e in ms[int(rng.integers(len(ms)))]]))
        distractors = list(dict.fromkeys(pool + _fillers(ann, rng)))[:3]
        q = TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(t=format_time(t))
        drafts.append(Draft("LTR", q, options=[NO_CHANGE, *distractors], events=[{"time": t, "kind": "no_change"}]))
    order = rng.permutation(len(drafts))
    return [drafts[i] for i in order]
