"""Transitions (entries, exits, tempo changes, dynamic changes) and their grouping into moments."""

from __future__ import annotations

import numpy as np

from must.annotation import Event, Rhythm, TrackAnnotation

__all__ = ["entry_exit_events", "tempo_change_events", "rhythm_change_events", "dynamic_change_events",
           "group_moments", "sort_events"]


def entry_exit_events(ann: TrackAnnotation, end_margin: float = 1.0) -> list[Event]:
    """An ``enter`` at each source's first onset; an ``exit`` at its last offset unless it plays to the end."""
    events = []
    for src in ann.sources:
        start, stop = ann.entry(src.name), ann.exit(src.name)
        if start is not None:
            events.append(Event(round(float(start), 3), "enter", src.name))
        if stop is not None and stop < ann.duration - end_margin - 1.5:
            events.append(Event(round(float(stop), 3), "exit", src.name))
    return events


def tempo_change_events(tempo: list[tuple[float, float]], min_rel: float = 0.1) -> list[Event]:
    """Tempo changes from a tempo map ``[(start, bpm), ...]`` (changes under ``min_rel`` ignored)."""
    events = []
    for (_, a), (t, b) in zip(tempo[:-1], tempo[1:]):
        if a > 0 and abs(b - a) / a >= min_rel:
            events.append(Event(round(t, 3), "tempo_change", None, {"from": round(a, 1), "to": round(b, 1)}))
    return events


def rhythm_change_events(rhythm: Rhythm) -> list[Event]:
    """Tempo-change events at the segments Amuse flags as rhythm changes."""
    out = []
    for i, (t, flag) in enumerate(zip(rhythm.starts, rhythm.changes)):
        if flag and i > 0:
            out.append(Event(t, "tempo_change", None, {"from": rhythm.tempos[i - 1], "to": rhythm.tempos[i]}))
    return out


def dynamic_change_events(times: np.ndarray, loudness_db: np.ndarray, window: float = 4.0, min_db: float = 6.0,
                          min_gap: float = 6.0, span: tuple[float, float] | None = None) -> list[Event]:
    """Points where mean loudness over the next ``window`` s differs from the previous by ``min_db`` or more."""
    times, db = np.asarray(times, float), np.asarray(loudness_db, float)
    if len(times) < 3:
        return []
    hop = times[1] - times[0]
    k = max(1, int(round(window / hop)))
    diffs = np.zeros(len(db))
    for i in range(k, len(db) - k):
        diffs[i] = db[i : i + k].mean() - db[i - k : i].mean()
    if span is not None:
        diffs[(times < span[0] + window) | (times > span[1] - window)] = 0
    events: list[Event] = []
    for i in np.argsort(-np.abs(diffs)):
        if abs(diffs[i]) < min_db:
            break
        if all(abs(times[i] - e.time) >= min_gap for e in events):
            direction = "louder" if diffs[i] > 0 else "softer"
            events.append(Event(round(float(times[i]), 3), "dynamic_change", None,
                                {"direction": direction, "db": round(float(diffs[i]), 1)}))
    return sorted(events, key=lambda e: e.time)


_ORDER = {"exit": 0, "enter": 1, "tempo_change": 2, "dynamic_change": 3}


def sort_events(events: list[Event]) -> list[Event]:
    """Events by time (then kind, then source) — a stable, documented order."""
    return sorted(events, key=lambda e: (e.time, _ORDER.get(e.kind, 9), e.source or ""))


def group_moments(events: list[Event], tolerance: float = 0.75) -> list[list[Event]]:
    """Events within ``tolerance`` seconds of the moment's first event form one moment."""
    moments: list[list[Event]] = []
    for e in sort_events(events):
        if moments and e.time - moments[-1][0].time <= tolerance:
            moments[-1].append(e)
        else:
            moments.append([e])
    return moments
