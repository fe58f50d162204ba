"""AVQA — classic audio questions in the MUSIC-AVQA vocabulary and type labels.

Audio Counting (how many sources; how many at M:SS), Audio Comparative (is X louder than Y — only when
their levels differ by ≥ 3 dB), Audio-Visual Existential (is there an X — one present, one absent
source per track so yes/no balance), Audio-Visual Temporal (which comes in first / last — only between
sources whose name is a vocabulary word and whose entries are ≥ 2 s apart).
"""

from __future__ import annotations

import numpy as np

from bench.metrics.avqa import NUMBERS, VOCAB, normalize_answer
from bench.synth.instruments import PALETTE, display
from bench.tasks.base import Draft, TaskConfig, register_task
from bench.tasks.phrasing import existence_question
from must.annotation import TrackAnnotation
from must.timecode import format_time


def _word(name: str) -> str | None:
    w = normalize_answer(display(name)).value
    return w if w in VOCAB and w not in ("yes", "no") else None


def _number(n: int) -> str:
    return NUMBERS[n] if n <= 10 else "more than ten"


@register_task("AVQA")
def generate(ann: TrackAnnotation, rng: np.random.Generator, cfg: TaskConfig) -> list[Draft]:
    """A mix of the four question types, in a seeded order."""
    out: list[Draft] = []
    names = [s.name for s in ann.sources]
    n = _number(len(names))
    out.append(Draft("AVQA", "How many instruments (including voices) can be heard in this piece?", n, [n],
                     "Audio", "Counting"))
    times = [t for t in np.arange(cfg.edge_seconds + 2, ann.duration - cfg.edge_seconds - 2, 1.0)
             if all(abs(t - e.time) > 2.0 for e in ann.transitions)]
    if times:
        t = float(times[int(rng.integers(len(times)))])
        k = _number(len(ann.active_at(t)))
        out.append(Draft("AVQA", f"How many instruments (including voices) are playing at {format_time(t)}?", k, [k],
                         "Audio", "Counting", events=[{"time": t, "kind": "count"}]))
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]
             if a in ann.loudness_db and b in ann.loudness_db and abs(ann.loudness_db[a] - ann.loudness_db[b]) >= 3.0]
    if pairs:
        a, b = pairs[int(rng.integers(len(pairs)))]
        if rng.random() < 0.5:
            a, b = b, a
        ans = "yes" if ann.loudness_db[a] > ann.loudness_db[b] else "no"
        out.append(Draft("AVQA", f"Is the {display(a)} louder than the {display(b)}?", ans, [ans], "Audio", "Comparative"))
    # An absent source of the same role as a present one, so the name asked about does not hint the answer.
    present = names[int(rng.integers(len(names)))]
    role = next((v.role for v in PALETTE if v.name == present), "lead")
    absent = [v.name for v in PALETTE if v.name not in names and v.role == role] or [v.name for v in PALETTE if v.name not in names]
    if rng.random() < 0.5:
        x, ans = present, "yes"
    else:
        x, ans = absent[int(rng.integers(len(absent)))], "no"
    out.append(Draft("AVQA", existence_question(x), ans, [ans], "Audio-Visual", "Existential"))
    entries = {s: ann.entry(s) for s in names if _word(s) and ann.entry(s) is not None}
    ordered = sorted(entries, key=entries.get)
    pairs = [(a, b) for i, a in enumerate(ordered) for b in ordered[i + 1:] if entries[b] - entries[a] >= 2.0]
    if pairs:
        first, later = pairs[int(rng.integers(len(pairs)))]
        x, y = (first, later) if rng.random() < 0.5 else (later, first)
        w = _word(first)
        out.append(Draft("AVQA", f"Which instrument comes in first, the {display(x)} or the {display(y)}?", w, [w],
                         "Audio-Visual", "Temporal"))
    if len(ordered) >= 2 and entries[ordered[-1]] - entries[ordered[-2]] >= 2.0:
        w = _word(ordered[-1])
        out.append(Draft("AVQA", "Which instrument is the last to come in?", w, [w], "Audio-Visual", "Temporal"))
    order = rng.permutation(len(out))
    return [out[i] for i in order]
