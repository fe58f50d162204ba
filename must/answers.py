"""Deterministic parsing of free-form model answers into what each task scores.

Every parser returns a :class:`Parsed` whose ``status`` is ``"ok"``, ``"unparsed"`` (nothing of the
expected kind found) or ``"impossible"`` (found, but not a valid time / interval). Scorers give
0 to anything not ``"ok"`` and count it as ``unparsed``; parsers never raise on model output.

Rules
-----
- Timestamp (TSG): the first colon or unit time in the answer; plain numbers only when the
  answer has no colon/unit time. An impossible first time makes the answer impossible.
- Intervals (MTR): every interval found (see :mod:`must.timecode`); any impossible one makes
  the whole answer impossible. Intervals are clipped to ``[0, duration]`` when it is known.
- Option letter (LTR, GTO): an answer that is just a letter; else ``answer/option/choice``
  followed by a letter; else a leading ``C)``, ``C.``, ``C:`` or ``(C)``; else a single distinct
  ``(C)`` anywhere; else the one option whose text the answer contains.
- AVQA: the answer normalised to the MUSIC-AVQA 42-word vocabulary (see :mod:`bench.metrics.avqa`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from must.timecode import find_intervals, find_times

__all__ = ["Parsed", "parse_timestamp", "parse_interval_answer", "parse_choice", "option_texts", "option_clauses",
           "labelled_changes", "clean_text", "LETTERS"]

LETTERS = "ABCDEF"  # option letters: LTR uses the first four, GTO all six
MAX_ANSWER_CHARS = 20_000  # model outputs beyond this are truncated before parsing (1 MB garbage stays fast)


@dataclass(frozen=True)
class Parsed:
    """A parsed answer: ``value`` (time, intervals, letter or word) and ``status``."""

    value: Any
    status: str  # "ok" | "unparsed" | "impossible"

    @property
    def ok(self) -> bool:
        """Whether the answer parsed into a valid value."""
        return self.status == "ok"


UNPARSED = Parsed(None, "unparsed")
IMPOSSIBLE = Parsed(None, "impossible")

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(text: Any) -> str:
    """Model output as a bounded ``str`` without control characters (``None``/bytes tolerated)."""
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        text = str(text)
    # lone surrogates (invalid UTF-16 halves from broken decoders) crash tokenizers downstream
    text = text[:MAX_ANSWER_CHARS].encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub(" ", text)


# Fast paths for the common answer shapes. They are taken only when they provably agree with the
# general parser (no other digit could start an earlier or different time expression); else fall back.
_FAST_TIME = re.compile(r"(?<![\w:.])(\d{1,3}):([0-5]\d)(?![\w:.])")
_FAST_PAIR = re.compile(r"(?<![\w:.])(\d{1,3}):([0-5]\d)\s*(?:-|–|—|~|to|until|till|through|thru)\s*(\d{1,3}):([0-5]\d)(?![\w:.])",
                        re.IGNORECASE)
_DIGIT = re.compile(r"\d")


def parse_timestamp(text: Any) -> Parsed:
    """The time (seconds) a free-form answer gives, e.g. ``"The vocal starts at 2:00."`` → 120."""
    text = clean_text(text)
    m = _FAST_TIME.search(text)
    if m and not _DIGIT.search(text, 0, m.start()):
        return Parsed(float(int(m.group(1)) * 60 + int(m.group(2))), "ok")
    times = find_times(text)
    explicit = [t for t in times if t.kind != "plain"]
    candidates = explicit or times
    if not candidates:
        return UNPARSED
    first = candidates[0]
    return IMPOSSIBLE if first.impossible else Parsed(first.seconds, "ok")


def parse_interval_answer(text: Any, duration: float | None = None) -> Parsed:
    """The intervals a free-form answer gives, clipped to ``[0, duration]``, as ``[(start, end), ...]``."""
    text = clean_text(text)
    fast = _fast_pairs(text)
    if fast is not None:
        return _clip(fast, duration)
    pairs = find_intervals(text)
    if not pairs:
        return UNPARSED
    spans = []
    for a, b in pairs:
        if a.impossible or b.impossible or b.seconds <= a.seconds:
            return IMPOSSIBLE
        spans.append((a.seconds, b.seconds))
    return _clip(spans, duration)


def _fast_pairs(text: str) -> list[tuple[float, float]] | None:
    """``M:SS-M:SS`` pairs when they are the only digits in the text and valid; else ``None`` (use the general parser)."""
    spans, rest, last = [], [], 0
    for m in _FAST_PAIR.finditer(text):
        a, b = int(m.group(1)) * 60 + int(m.group(2)), int(m.group(3)) * 60 + int(m.group(4))
        if b <= a:
            return None
        rest.append(text[last : m.start()])
        last = m.end()
        spans.append((float(a), float(b)))
    if not spans or _DIGIT.search("".join(rest) + text[last:]) or "between" in text.lower():
        return None
    return spans


def _clip(spans: list[tuple[float, float]], duration: float | None) -> Parsed:
    out = []
    for s, e in spans:
        if duration is not None:
            s, e = max(0.0, min(s, duration)), max(0.0, min(e, duration))
            if e <= s:  # entirely outside the track: a valid interval covering no audio
                continue
        out.append((s, e))
    return Parsed(out, "ok")


_OPTION_LINE = re.compile(r"^\s*\(?([A-F])[\):.]\s+(.+?)\s*$", re.MULTILINE)


def option_texts(question: str) -> dict[str, str]:
    """The options listed in a multiple-choice question (``A: text`` / ``(A) text`` lines)."""
    return {m.group(1): m.group(2) for m in _OPTION_LINE.finditer(question or "")}


_LABELLED_CHANGE = re.compile(r"^\(([XYZ])\) (.+)$", re.MULTILINE)


def labelled_changes(question: str) -> dict[str, str]:
    """The changes a GTO question lists, by label: ``(X) The drums enter`` lines → ``{"X": "The drums enter"}``."""
    return dict(_LABELLED_CHANGE.findall(question or ""))


def option_clauses(text: str) -> list[str]:
    """The clauses of an option (the inverse of joining them as ``a, b and c``): ``"The drums enter and the bass
    stops."`` → ``["the drums enter", "the bass stops"]``, lower case."""
    return [c.strip().lower() for c in re.split(r", | and ", text.strip().rstrip("."))]


def parse_choice(text: Any, n_options: int = 4, question: str | None = None) -> Parsed:
    """The option letter a free-form answer picks (``"C) The male voice…"``, ``"Answer: F"``)."""
    s = clean_text(text).strip()
    valid = LETTERS[:n_options]
    cls = f"[{valid}]"
    rules = [
        rf"^\(?({cls})\)?[.:)]?$",
        rf"\b(?:answer|option|choice)\s*(?:is|:|=)?\s*\(?({cls})\b(?![''\w])",
        rf"^\(?({cls})[\):.]",
        rf"^\(({cls})\)",
        rf"^\**({cls})\**\s*$",
    ]
    for pattern in rules:
        m = re.search(pattern, s, flags=re.IGNORECASE if pattern in rules[:2] else 0)
        if m:
            return Parsed(m.group(1).upper(), "ok")
    bracketed = set(re.findall(rf"\(({cls})\)", s))
    if len(bracketed) == 1:
        return Parsed(bracketed.pop(), "ok")
    if question:
        low = s.lower()
        hits = [k for k, v in option_texts(question).items() if k in valid and v.lower() in low]
        if len(hits) == 1:
            return Parsed(hits[0], "ok")
    return UNPARSED
