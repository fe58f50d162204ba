"""Time codes: find, parse and format times (``M:SS``, ``H:MM:SS``, units, seconds) and intervals.

Conventions
-----------
- Times are float seconds from the start of the track.
- Canonical output is ``M:SS`` (``H:MM:SS`` from one hour on), rounded to the nearest second,
  as MusTBench answers are written; intervals are ``M:SS-M:SS`` and interval lists are joined by ``", "``.
- Accepted input: ``M:SS``, ``MM:SS``, ``H:MM:SS`` (optionally with decimals: ``1:05.5``), unit forms
  (``65 s``, ``65 seconds``, ``1 minute 5 seconds``, ``1m05s``, ``2 min``) and plain numbers (seconds).
  A colon time needs a two-digit seconds field; a seconds field of 60 or more (``23:76``) or a
  minutes field of 60 or more inside ``H:MM:SS`` makes the time *impossible*.
- Intervals: two times joined by a hyphen, en dash, em dash, ``~``, ``to``, ``until``, ``through``,
  or ``between X and Y``. Several intervals may be separated by commas, semicolons or ``and``.
  An interval whose end is not after its start is impossible.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

__all__ = [
    "ImpossibleTimeError",
    "TimeExpression",
    "find_times",
    "find_intervals",
    "parse_time",
    "parse_interval",
    "parse_intervals",
    "format_time",
    "format_interval",
    "format_intervals",
]


class ImpossibleTimeError(ValueError):
    """A time code that is well-formed but cannot denote a time (``23:76``, end before start)."""


_NUM = r"\d+(?:\.\d+)?"
_HOUR = r"(?:h|hr|hrs|hour|hours)"
_MIN = r"(?:m|min|mins|minute|minutes)"
_SEC = r"(?:s|sec|secs|second|seconds)"
_JOIN = r"\s*(?:,\s*|and\s+)?"
_NOT_LETTER = r"(?![a-z])"

_COLON_HMS = rf"(?P<hh>\d{{1,2}}):(?P<hm>\d{{2}}):(?P<hs>\d{{2}}(?:\.\d+)?)"
_COLON_MS = rf"(?P<mm>\d{{1,3}}):(?P<ms>\d{{2}}(?:\.\d+)?)"
_UNITS = (
    rf"(?=\d)(?:(?P<uh>{_NUM})\s*{_HOUR}{_NOT_LETTER}{_JOIN})?"
    rf"(?:(?P<um>{_NUM})\s*{_MIN}{_NOT_LETTER}{_JOIN})?"
    rf"(?:(?P<us>{_NUM})\s*{_SEC}{_NOT_LETTER})?"
)
_PLAIN = rf"(?P<plain>{_NUM})"
_TIME_RE = re.compile(
    rf"(?<![\w:.])(?:{_COLON_HMS}|{_COLON_MS}|{_UNITS}|{_PLAIN})(?![\w:])",
    re.IGNORECASE,
)
_RANGE_SEP = re.compile(r"^\s*(?:-|–|—|~|to|until|till|through|thru)\s*$", re.IGNORECASE)
_AND_SEP = re.compile(r"^\s*and\s*$", re.IGNORECASE)
_BETWEEN = re.compile(r"\b(?:between|from)\s*$", re.IGNORECASE)


class TimeExpression(NamedTuple):
    """One time found in text: its value (``None`` when impossible), span and kind."""

    seconds: float | None
    start: int
    end: int
    kind: str  # "colon", "units" or "plain"

    @property
    def impossible(self) -> bool:
        """Whether the expression is well-formed but denotes no time."""
        return self.seconds is None


# Group numbers in _TIME_RE: 1-3 H:MM:SS, 4-5 M:SS, 6-8 hours/minutes/seconds units, 9 plain number.
def _value(g: tuple) -> tuple[float | None, str] | None:
    hh, hm, hs, mm, ms, uh, um, us, plain = g
    if hh is not None:
        mi, sec = int(hm), float(hs)
        return (None if mi >= 60 or sec >= 60 else int(hh) * 3600 + mi * 60 + sec), "colon"
    if mm is not None:
        sec = float(ms)
        return (None if sec >= 60 else int(mm) * 60 + sec), "colon"
    if plain is not None:
        return float(plain), "plain"
    if uh is None and um is None and us is None:
        return None  # the empty alternative of the unit pattern matched nothing
    h = float(uh) if uh is not None else None
    mi = float(um) if um is not None else None
    sec = float(us) if us is not None else None
    if (sec is not None and sec >= 60 and (mi is not None or h is not None)) or (mi is not None and mi >= 60 and h is not None):
        return None, "units"
    return (h or 0.0) * 3600 + (mi or 0.0) * 60 + (sec or 0.0), "units"


def find_times(text: str) -> list[TimeExpression]:
    """All time expressions in ``text``, in order of appearance (impossible ones included)."""
    found = []
    for m in _TIME_RE.finditer(text or ""):
        start, end = m.span()
        if end == start:
            continue
        v = _value(m.groups())
        if v is None:
            continue
        seconds, kind = v
        if seconds is not None and not math.isfinite(seconds):
            seconds = None
        found.append(TimeExpression(seconds, start, end, kind))
    return found


def find_intervals(text: str) -> list[tuple[TimeExpression, TimeExpression]]:
    """Pairs of time expressions joined by a range separator, scanned left to right."""
    times = find_times(text)
    pairs, i = [], 0
    while i + 1 < len(times):
        a, b = times[i], times[i + 1]
        between = text[a.end : b.start]
        joined = _RANGE_SEP.match(between) or (
            _AND_SEP.match(between) and _BETWEEN.search(text[max(0, a.start - 12) : a.start])
        )
        if joined:
            pairs.append((a, b))
            i += 2
        else:
            i += 1
    return pairs


def parse_time(text: str) -> float:
    """Parse a string that is exactly one time code into seconds (``ValueError`` otherwise)."""
    times = find_times(text.strip())
    if len(times) != 1 or (times[0].start, times[0].end) != (0, len(text.strip())):
        raise ValueError(f"not a time code: {text!r}")
    if times[0].impossible:
        raise ImpossibleTimeError(f"impossible time code: {text!r}")
    return times[0].seconds  # type: ignore[return-value]


def _checked(a: TimeExpression, b: TimeExpression, text: str) -> tuple[float, float]:
    if a.impossible or b.impossible:
        raise ImpossibleTimeError(f"impossible time code in interval: {text!r}")
    if b.seconds <= a.seconds:  # type: ignore[operator]
        raise ImpossibleTimeError(f"interval ends before it starts: {text!r}")
    return a.seconds, b.seconds  # type: ignore[return-value]


def parse_interval(text: str) -> tuple[float, float]:
    """Parse a string that is exactly one interval (``0:57-1:12``, ``0:57 to 1:12``)."""
    pairs = find_intervals(text)
    if len(pairs) != 1:
        raise ValueError(f"not one interval: {text!r}")
    return _checked(*pairs[0], text)


def parse_intervals(text: str) -> list[tuple[float, float]]:
    """Parse a list of intervals separated by commas, semicolons or ``and``."""
    pairs = find_intervals(text)
    if not pairs:
        raise ValueError(f"no interval in {text!r}")
    return [_checked(a, b, text) for a, b in pairs]


def format_time(seconds: float) -> str:
    """Format seconds as ``M:SS`` (``H:MM:SS`` from one hour on), rounded to the nearest second."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format time {seconds!r}")
    total = int(round(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_interval(start: float, end: float) -> str:
    """Format an interval as ``M:SS-M:SS``."""
    return f"{format_time(start)}-{format_time(end)}"


def format_intervals(intervals: list[tuple[float, float]]) -> str:
    """Format several intervals as ``M:SS-M:SS, M:SS-M:SS``."""
    return ", ".join(format_interval(s, e) for s, e in intervals)
