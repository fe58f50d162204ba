"""LTR — local transition recognition: what best describes the change at M:SS? Options A–D.

Distractors are chosen so that the wording and the asked time say nothing about the answer:

- the real transitions of the same track *nearest in time* (their kinds follow what is plausible at
  that point of the piece, as the correct one does);
- changes of the *same kind* by other sources of the track ("the bass enters" beside "the piano
  enters");
- the inverted change, only for tempo and dynamic changes (an entry's inverse would be implausible at
  that time, which a question-only model could learn);
- "no noticeable change": a share ``q`` of questions ask about a moment where nothing changes, and the
  option is offered in about ``4q`` of all questions, so being offered says nothing about being right.
"""

from __future__ import annotations

import numpy as np

from bench.tasks.base import Draft, TaskConfig, event_dict, moments, register_task
from bench.tasks.phrasing import NO_CHANGE, event_option, invert, moment_option
from must.annotation import Event, TrackAnnotation
from must.timecode import format_time

TEMPLATES = ["What best describes the musical change at {t}?", "Which option best describes what changes at {t}?",
             "What happens in the music at {t}?"]


def _same_kind_fillers(ann: TrackAnnotation, moment: list[Event], rng: np.random.Generator) -> list[str]:
    """Changes of the moment's kinds by other sources of the track (wrong, but worded alike)."""
    involved = {e.source for e in moment if e.source}
    kinds = [e.kind for e in moment if e.kind in ("enter", "exit")] or ["enter", "exit"]
    names = [s.name for s in ann.sources if s.name not in involved]
    out = []
    for i in rng.permutation(len(names)):
        text = event_option(Event(0.0, kinds[int(rng.integers(len(kinds)))], names[int(i)]))
        out.append(text[0].upper() + text[1:])
    return out


def _interleave(a: list[str], b: list[str]) -> list[str]:
    out = []
    for x, y in zip(a, b):
        out += [x, y]
    longer = a if len(a) > len(b) else b
    return out + longer[min(len(a), len(b)):]


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
    texts = [moment_option(m) for m in ms]
    q = cfg.no_change_share
    offer_no_change = min(1.0, 3 * q / (1 - q))  # P(offered | a change happened) so that P(offered) ≈ 4q
    drafts = []

    def nearest(t: float, skip: int | None) -> list[str]:
        order = sorted((j for j in range(len(ms)) if j != skip), key=lambda j: abs(ms[j][0].time - t))
        return [texts[j] for j in order[:3]]

    for idx in rng.permutation(len(ms)):
        idx = int(idx)
        m, correct = ms[idx], texts[idx]
        pool = []
        if all(e.kind in ("tempo_change", "dynamic_change") for e in m) and rng.random() < 0.5:
            pool.append(moment_option([invert(e) for e in m]))
        if rng.random() < offer_no_change:
            pool.append(NO_CHANGE)
        near, fill = nearest(m[0].time, idx), _same_kind_fillers(ann, m, rng)
        pool += _interleave(near, fill) if rng.random() < 0.5 else _interleave(fill, near)
        distractors = list(dict.fromkeys(o for o in pool if o != correct))[:3]
        if len(distractors) < 3:
            continue  # too few transitions and sources in this track for four distinct options
        question = TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(t=format_time(m[0].time))
        drafts.append(Draft("LTR", question, options=[correct, *distractors], events=[event_dict(e) for e in m]))
    n_quiet = int(round(len(drafts) * q / (1 - q) + rng.random() * 0.999))
    for t in _quiet_times(ann, [m[0].time for m in ms], cfg, rng, n_quiet):
        fill = _same_kind_fillers(ann, [], rng)
        distractors = list(dict.fromkeys(_interleave(nearest(t, None), fill)))[:3]
        if len(distractors) < 3:
            continue
        question = TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(t=format_time(t))
        drafts.append(Draft("LTR", question, options=[NO_CHANGE, *distractors], events=[{"time": t, "kind": "no_change"}]))
    order = rng.permutation(len(drafts))
    return [drafts[i] for i in order]
