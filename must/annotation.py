"""Track annotations: sources, onsets, activity, transitions, Amuse rhythm/source labels, intensity.

One :class:`TrackAnnotation` per track is what the task generators read, whether it came from a
render's exact MIDI truth or was estimated from real audio; ``provenance`` records which.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["Source", "Event", "Rhythm", "TrackAnnotation", "EVENT_KINDS", "SOURCE_CATEGORIES"]

EVENT_KINDS = ("enter", "exit", "tempo_change", "dynamic_change")
SOURCE_CATEGORIES = ("instrument", "vocal", "drums", "bass")


@dataclass
class Source:
    """A sounding source: display name (``"piano"``), category and, for renders, its GM program."""

    name: str
    category: str = "instrument"
    program: int | None = None
    is_drum: bool = False


@dataclass
class Event:
    """A transition at ``time``: an entry/exit of ``source``, a tempo change or a dynamic change.

    ``detail`` holds ``{"from": bpm, "to": bpm}`` for tempo changes and ``{"direction": "louder" |
    "softer", "db": change}`` for dynamic changes.
    """

    time: float
    kind: str
    source: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Rhythm:
    """Amuse rhythm annotation: per-segment tempo and rhythm-change flags."""

    variant: str
    segment_seconds: float
    threshold: float
    sample_rate: int
    clip_tempo: float
    starts: list[float]
    tempos: list[float]
    changes: list[bool]

    def change_times(self) -> list[float]:
        """Start times of segments flagged as rhythm changes."""
        return [s for s, c in zip(self.starts, self.changes) if c]


@dataclass
class TrackAnnotation:
    """Everything known about one track, as grounding targets for the tasks."""

    track_id: str
    duration: float
    sources: list[Source]
    onsets: dict[str, list[float]] = field(default_factory=dict)
    activity: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    transitions: list[Event] = field(default_factory=list)
    tempo: list[tuple[float, float]] = field(default_factory=list)  # (start time, bpm) pieces
    rhythm: Rhythm | None = None
    segment_sources: list[tuple[float, float, list[str]]] = field(default_factory=list)
    intensity_times: list[float] = field(default_factory=list)
    intensity: list[float] = field(default_factory=list)
    regions: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    loudness_db: dict[str, float] = field(default_factory=dict)  # per source, over its active span
    provenance: dict[str, str] = field(default_factory=dict)

    def source(self, name: str) -> Source:
        """The source called ``name`` (``KeyError`` if absent)."""
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(name)

    def entry(self, name: str) -> float | None:
        """First onset of a source (its entry)."""
        on = self.onsets.get(name)
        if on:
            return min(on)
        act = self.activity.get(name)
        return min(s for s, _ in act) if act else None

    def exit(self, name: str) -> float | None:
        """Last offset of a source (its exit)."""
        act = self.activity.get(name)
        return max(e for _, e in act) if act else None

    def active_at(self, t: float) -> list[str]:
        """Sources sounding at time ``t``."""
        return [n for n, spans in self.activity.items() if any(s <= t < e for s, e in spans)]

    def tempo_at(self, t: float) -> float | None:
        """Tempo (BPM) in force at ``t`` (``None`` before the first tempo starts)."""
        bpm = float(self.tempo_curve([t])[0])
        return None if np.isnan(bpm) else bpm

    def tempo_curve(self, times: np.ndarray, default: float = np.nan) -> np.ndarray:
        """Tempo (BPM) in force at each of ``times``: the last tempo started by then (``default`` where none has)."""
        t = np.asarray(times, float)
        bpm = np.full(t.shape, default, float)
        for start, b in self.tempo:
            bpm[start <= t] = b
        return bpm

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrackAnnotation":
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["sources"] = [Source(**s) for s in d.get("sources", [])]
        d["transitions"] = [Event(**e) for e in d.get("transitions", [])]
        d["rhythm"] = Rhythm(**d["rhythm"]) if d.get("rhythm") else None
        d["activity"] = {k: [tuple(x) for x in v] for k, v in d.get("activity", {}).items()}
        d["tempo"] = [tuple(x) for x in d.get("tempo", [])]
        d["segment_sources"] = [(s, e, list(n)) for s, e, n in d.get("segment_sources", [])]
        d["regions"] = {k: [tuple(x) for x in v] for k, v in d.get("regions", {}).items()}
        return cls(**d)
