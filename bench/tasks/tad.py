"""TAD — transition-aware description: describe the change at M:SS in detail. Free text, two references."""

from __future__ import annotations

import numpy as np

from bench.tasks.base import Draft, TaskConfig, event_dict, moments, register_task
from bench.tasks.phrasing import describe_moment
from must.annotation import TrackAnnotation
from must.timecode import format_time

TEMPLATES = ["Describe the musical change at {t} in detail.", "What changes in the music at {t}? Describe it in detail.",
             "Describe in detail how the music changes at {t}."]


@register_task("TAD")
def generate(ann: TrackAnnotation, rng: np.random.Generator, cfg: TaskConfig) -> list[Draft]:
    """One question per transition moment; references are two independently worded descriptions."""
    drafts = []
    ms = moments(ann, cfg)
    for idx in rng.permutation(len(ms)):
        m = ms[int(idx)]
        refs = list(dict.fromkeys(describe_moment(m, ann, rng) for _ in range(2)))
        q = TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(t=format_time(m[0].time))
        drafts.append(Draft("TAD", q, refs[0], refs, events=[event_dict(e) for e in m]))
    return drafts
