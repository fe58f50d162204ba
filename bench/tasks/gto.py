"""GTO — global temporal ordering: three transitions (X), (Y), (Z) and six orderings A–F.

Triples are of one kind of change (three entries, three exits) or mix only tempo and dynamic changes,
so that priors like "an instrument enters before it stops" cannot order them without listening.
"""

from __future__ import annotations

import itertools

import numpy as np

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
    """Ordering questions over triples of well-separated, distinctly described moments."""
    ms = moments(ann, cfg)
    texts = [moment_option(m) for m in ms]
    clauses = [{event_option(e) for e in m} for m in ms]
    triples = []
    for a, b, c in itertools.combinations(range(len(ms)), 3):
        times = [ms[a][0].time, ms[b][0].time, ms[c][0].time]
        if min(np.diff(times)) < cfg.min_gap_seconds:
            continue
        if clauses[a] & clauses[b] or clauses[a] & clauses[c] or clauses[b] & clauses[c]:
            continue  # descriptions sharing a change ("the tempo slows down") would be ambiguous
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
