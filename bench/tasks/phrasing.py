"""Wording of transitions: short canonical option text (LTR/GTO) and varied detailed descriptions (TAD).

Options use one canonical wording for every event kind, so the correct option never reads differently
from its distractors; descriptions vary their wording from a seeded generator.
"""

from __future__ import annotations

import numpy as np

from bench.synth.instruments import display
from must.annotation import Event, TrackAnnotation
from must.timecode import format_time

__all__ = ["NO_CHANGE", "event_option", "description_opening", "moment_option", "invert", "describe_moment",
           "source_phrase", "join_clauses", "existence_question"]

NO_CHANGE = "No noticeable change"
PLURAL = {"drums", "strings", "vocals"}


def source_phrase(name: str) -> str:
    """``"the acoustic guitar"``."""
    return f"the {display(name)}"


def _verb(name: str, singular: str, plural: str) -> str:
    return plural if name in PLURAL else singular


def event_option(e: Event) -> str:
    """Canonical short wording of one event (lower case, no final period)."""
    if e.kind == "enter":
        return f"{source_phrase(e.source)} {_verb(e.source, 'enters', 'enter')}"
    if e.kind == "exit":
        return f"{source_phrase(e.source)} {_verb(e.source, 'stops', 'stop')}"
    if e.kind == "tempo_change":
        return "the tempo speeds up" if e.detail["to"] > e.detail["from"] else "the tempo slows down"
    if e.kind == "dynamic_change":
        return "the music gets louder" if e.detail["direction"] == "louder" else "the music gets softer"
    raise ValueError(f"unknown event kind {e.kind!r}")


def description_opening(e: Event) -> str:
    """How :func:`describe_moment` without a generator opens on ``e``: :func:`event_option`, with a dynamic change
    "noticeably" louder or softer (lower case)."""
    return event_option(e).replace(" gets ", " gets noticeably ") if e.kind == "dynamic_change" else event_option(e)


def join_clauses(clauses: list[str]) -> str:
    """``a``; ``a and b``; ``a, b and c``."""
    return clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + " and " + clauses[-1]


def moment_option(events: list[Event]) -> str:
    """Option text for a moment: its events joined, capitalised."""
    text = join_clauses([event_option(e) for e in events])
    return text[0].upper() + text[1:]


def existence_question(name: str) -> str:
    """``Is there a piano in this piece?`` / ``Are there drums in this piece?``."""
    return f"Are there {display(name)} in this piece?" if name in PLURAL else f"Is there a {display(name)} in this piece?"


def invert(e: Event) -> Event:
    """The opposite change (enter ↔ exit, faster ↔ slower, louder ↔ softer)."""
    if e.kind == "enter":
        return Event(e.time, "exit", e.source)
    if e.kind == "exit":
        return Event(e.time, "enter", e.source)
    if e.kind == "tempo_change":
        return Event(e.time, e.kind, None, {"from": e.detail["to"], "to": e.detail["from"]})
    return Event(e.time, e.kind, None, {**e.detail, "direction": "softer" if e.detail["direction"] == "louder" else "louder"})


_ENTER = ["{s} {enters}", "{s} {comes} in", "{s} {joins} the arrangement", "{s} {starts} playing"]
_EXIT = ["{s} {stops}", "{s} {drops} out", "{s} {falls} silent", "{s} {leaves} the arrangement"]
_FASTER = ["the tempo speeds up from about {a} to {b} BPM", "the pace picks up, moving from roughly {a} to {b} BPM",
           "the music accelerates from around {a} to {b} BPM"]
_SLOWER = ["the tempo slows down from about {a} to {b} BPM", "the pace relaxes, dropping from roughly {a} to {b} BPM",
           "the music decelerates from around {a} to {b} BPM"]
_LOUDER = ["the music gets noticeably louder", "the dynamics swell", "the volume rises sharply"]
_SOFTER = ["the music gets noticeably softer", "the dynamics drop", "the volume falls away"]
_ROLE = {"drums": "a steady beat", "bass": "a low-end foundation", "vocal": "a sung line", "instrument": "a new melodic layer"}
_OPEN = ["At {t},", "Here", "At this point", "In this moment", "Right here", "", "", ""]
_ROLE_ALT = {"drums": ["a driving rhythm", "percussion", "a groove"], "bass": ["low notes underneath", "a bass line", "depth"],
             "vocal": ["a voice", "a vocal melody", "singing"], "instrument": ["a fresh timbre", "another line", "a new colour"]}
_WORDS = {"enters": "enter", "comes": "come", "joins": "join", "starts": "start", "stops": "stop", "drops": "drop",
          "falls": "fall", "leaves": "leave"}


def _pick(pool: list[str], rng: np.random.Generator | None) -> str:
    """A seeded choice from ``pool``; its first wording without a generator."""
    return pool[0] if rng is None else pool[int(rng.integers(len(pool)))]


def _says(rng: np.random.Generator | None, p: float) -> bool:
    """Whether a seeded description adds an optional detail (with chance ``p``); always without a generator."""
    return rng is None or rng.random() < p


def _clause(e: Event, ann: TrackAnnotation, rng: np.random.Generator | None) -> str:
    if e.kind in ("enter", "exit"):
        template = _pick(_ENTER if e.kind == "enter" else _EXIT, rng)
        verbs = {k: (v if e.source in PLURAL else k) for k, v in _WORDS.items()}
        text = template.format(s=source_phrase(e.source), **verbs)
        if e.kind == "enter" and _says(rng, 0.6):
            try:
                category = ann.source(e.source).category
            except KeyError:
                category = "instrument"
            role = [_ROLE.get(category, _ROLE["instrument"]), *_ROLE_ALT.get(category, _ROLE_ALT["instrument"])]
            text += f", {_pick(['adding', 'bringing', 'contributing'], rng)} {_pick(role, rng)}"
        return text
    if e.kind == "tempo_change":
        pool = _FASTER if e.detail["to"] > e.detail["from"] else _SLOWER
        return _pick(pool, rng).format(a=int(round(e.detail["from"])), b=int(round(e.detail["to"])))
    return _pick(_LOUDER if e.detail["direction"] == "louder" else _SOFTER, rng)


def describe_moment(events: list[Event], ann: TrackAnnotation, rng: np.random.Generator | None) -> str:
    """A detailed, varied description of what changes at a moment, with what keeps playing. Without a generator
    (``rng=None``), the fullest one in the first wording of each part: every entry's role and the sources that keep
    playing are always said, and no opener (what MusT learns to write, :mod:`stages.data`)."""
    t = events[0].time
    clauses = [_clause(e, ann, rng) for e in events]
    body = join_clauses(clauses)
    changed = {e.source for e in events if e.source}
    ongoing = [s for s in ann.active_at(t - 0.25) if s not in changed]
    opener = "" if rng is None else _pick(_OPEN, rng).format(t=format_time(t))
    text = f"{opener} {body}" if opener else body[0].upper() + body[1:]
    if ongoing and _says(rng, 0.6):
        names = [display(s) for s in ongoing[:3]]
        joined = join_clauses(names)
        one = len(names) == 1 and ongoing[0] not in PLURAL
        text += _pick([f", while the {joined} {'keeps' if one else 'keep'} playing", f"; the {joined} {'continues' if one else 'continue'}",
                       f" over the {joined}", f", with the {joined} still going"], rng)
    return text + "."
