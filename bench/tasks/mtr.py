"""MTR — intensity-region grounding: when are the highest / lowest intensity durations? Intervals."""

from __future__ import annotations

import numpy as np

from bench.tasks.base import Draft, TaskConfig, register_task
from must.annotation import TrackAnnotation
from must.timecode import format_interval, format_intervals

TEMPLATES = {
    "highest": ["When is(are) the highest intensity duration(s) in this audio?",
                "When is(are) the most intense part(s) of this piece?",
                "During which time span(s) is the music at its most intense?"],
    "lowest": ["When is(are) the lowest intensity duration(s) in this audio?",
               "When is(are) the calmest part(s) of this piece?",
               "During which time span(s) is the music at its least intense?"],
}


@register_task("MTR")
def generate(ann: TrackAnnotation, rng: np.random.Generator, cfg: TaskConfig) -> list[Draft]:
    """A highest- and a lowest-intensity question (when the track has such regions)."""
    drafts = []
    for kind in ("highest", "lowest"):
        regions = [(s, e) for s, e in ann.regions.get(kind, []) if e - s >= 1.0]
        if not regions:
            continue
        q = TEMPLATES[kind][int(rng.integers(len(TEMPLATES[kind])))]
        drafts.append(Draft("MTR", q, format_intervals(regions), [format_interval(s, e) for s, e in regions],
                            events=[{"kind": f"{kind}_intensity", "start": s, "end": e} for s, e in regions]))
    return drafts
