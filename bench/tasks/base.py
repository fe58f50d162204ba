"""Task registry and the draft question every generator returns (lm-eval style: a task = a small hook)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from must.annotation import Event, TrackAnnotation

__all__ = ["Draft", "TaskConfig", "TASK_GENERATORS", "register_task", "generate_drafts", "moments", "event_dict"]


@dataclass
class TaskConfig:
    """How many questions of each task per track, and the margins that keep them well-posed."""

    per_track: dict[str, int] = field(default_factory=lambda: {"TSG": 4, "LTR": 3, "TAD": 2, "GTO": 1, "MTR": 2, "AVQA": 4})
    edge_seconds: float = 2.0  # no grounding target closer than this to the start or the end
    no_change_share: float = 0.15  # share of LTR questions whose answer is "no noticeable change"
    min_gap_seconds: float = 4.0  # GTO events at least this far apart


@dataclass
class Draft:
    """A question before ids and option letters are assigned.

    For LTR/GTO, ``options`` lists the option texts with the correct one first (LTR) or the three
    transitions in chronological order (GTO); the balancing pass turns them into letters.
    """

    task: str
    question: str
    answer: str = ""
    answers: list[str] = field(default_factory=list)
    category: str | None = None
    qa_type: str | None = None
    options: list[str] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


Generator = Callable[[TrackAnnotation, np.random.Generator, TaskConfig], list[Draft]]
TASK_GENERATORS: dict[str, Generator] = {}


def register_task(name: str) -> Callable[[Generator], Generator]:
    """Decorator: register a generator under a task name."""

    def wrap(fn: Generator) -> Generator:
        TASK_GENERATORS[name] = fn
        return fn

    return wrap


def event_dict(e: Event) -> dict[str, Any]:
    """An event as stored in the ``events`` column."""
    return {"time": e.time, "kind": e.kind, "source": e.source, **({"detail": e.detail} if e.detail else {})}


def moments(ann: TrackAnnotation, cfg: TaskConfig) -> list[list[Event]]:
    """Transitions grouped into moments, away from the track edges."""
    from bench.annotate.transitions import group_moments

    return [m for m in group_moments(ann.transitions)
            if cfg.edge_seconds <= m[0].time <= ann.duration - cfg.edge_seconds]


def generate_drafts(ann: TrackAnnotation, seed: int, cfg: TaskConfig, tasks: list[str] | None = None) -> list[Draft]:
    """All drafts for a track, each task from its own seeded generator (adding a task changes no other)."""
    import bench.tasks  # noqa: F401  (registers the generators)

    out = []
    for i, name in enumerate(tasks or list(cfg.per_track)):
        if name not in TASK_GENERATORS:
            raise ValueError(f"unknown task {name!r}; registered: {sorted(TASK_GENERATORS)}")
        rng = np.random.default_rng([seed, i])
        out += TASK_GENERATORS[name](ann, rng, cfg)[: cfg.per_track.get(name, 0)]
    return out
