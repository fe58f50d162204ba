"""TSG — temporal source grounding: when does a source first start / finally stop? Answer ``M:SS``."""

from __future__ import annotations

import numpy as np

from bench.tasks.base import Draft, TaskConfig, event_dict, register_task
from bench.tasks.phrasing import source_phrase
from must.annotation import Event, TrackAnnotation
from must.timecode import format_time

ONSET = ["When does {s} first start to play?", "At what time does {s} first come in?", "When can {s} first be heard?"]
OFFSET = ["When does {s} finally stop playing?", "At what time does {s} play for the last time?",
          "When does {s} finally disappear from the mix?"]


@register_task("TSG")
def generate(ann: TrackAnnotation, rng: np.random.Generator, cfg: TaskConfig) -> list[Draft]:
    """One onset question per source entering after the start, one offset question per source leaving early."""
    drafts = []
    for src in ann.sources:
        entry, exit_ = ann.entry(src.name), ann.exit(src.name)
        if entry is not None and entry >= cfg.edge_seconds:
            q = ONSET[int(rng.integers(len(ONSET)))].format(s=source_phrase(src.name))
            drafts.append(Draft("TSG", q, format_time(entry), [format_time(entry)], src.category, "onset",
                                events=[event_dict(Event(round(entry, 3), "enter", src.name))]))
        if exit_ is not None and exit_ <= ann.duration - 2 * cfg.edge_seconds:
            q = OFFSET[int(rng.integers(len(OFFSET)))].format(s=source_phrase(src.name))
            drafts.append(Draft("TSG", q, format_time(exit_), [format_time(exit_)], src.category, "offset",
                                events=[event_dict(Event(round(exit_, 3), "exit", src.name))]))
    order = rng.permutation(len(drafts))
    return [drafts[i] for i in order]
