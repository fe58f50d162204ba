"""GTO — global temporal ordering: three transitions (X), (Y), (Z) and six orderings A–F.

Triples are of one kind of change (three entries, three exits) or mix only tempo and dynamic changes,
so that priors like "an instrument enters before it stops" cannot order them without listening. A moment is
listed only if each of its changes is described once in the whole track: "the tempo speeds up" at two moments
would leave the listener to guess which one the question means (before this rule, 35 of the 135 test questions of
``standard`` listed such a change).
"""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np

from bench.annotate.transitions import group_moments
from bench.tasks.base import Draft, TaskConfig, event_dict, moments, register_task
from bench.tasks.phrasing import event_option, moment_option
from must.annotation import TrackAnnotation

ORDERINGS = list(itertools.permutations("XYZ"))  # A..F in lexicographic order
STEMS = ["Listen to the music. The following changes happen in it:",
         "The following musical changes occur in this piece:",
         "These three transitions can be heard in the audio:"]
QUESTION = "Which of the following options represents the correct chronological order?"


@register_task("GTO")
def generate(ann: TrackAnnotation, rng: np.random.Generator, cfg: TaskConfig) -> list[Draft]:
    """Ordering questions over triples of well-separated moments, each described by changes that happen once."""
    told = Counter(c for m in group_moments(ann.transitions) for c in {event_option(e) for e in m})
    # every moment of the track counts, the ones too near its edges to be asked about too: they are heard
    ms = [m for m in moments(ann, cfg) if all(told[event_option(e)] == 1 for e in m)]
    texts = [moment_option(m) for m in ms]
    triples = []
    for a, b, c in itertools.combinations(range(len(ms)), 3):
        times = [ms[a][0].time, ms[b][0].time, ms[c][0].time]
        if min(np.diff(times)) < cfg.min_gap_seconds:
            continue
        kinds = [{e.kind for e in ms[i]} for i in (a, b, c)]
        if any(len(k) != 1 for k in kinds):
            continue
        flat = {next(iter(k)) for k in kinds}
        if len(flat) == 1 or flat <= {"tempo_change", "dynamic_change"}:
            triples.append((a, b, c))
    if not triples:
        return []
    drafts, used = [], set()
    for i in rng.permutation(len(triples)):
        trio = triples[int(i)]
        if used & set(trio):
            continue
        used |= set(trio)
        stem = STEMS[int(rng.integers(len(STEMS)))]
        drafts.append(Draft("GTO", stem, options=[texts[k] for k in trio],
                            events=[event_dict(e) for k in trio for e in ms[k]]))
    return drafts
