"""Accuracy for multiple-choice and closed-vocabulary answers (LTR, GTO, AVQA).

Conventions
-----------
- ``reference`` is a sequence of accepted answers per item (a string, or a collection of strings when
  several answers are accepted); ``estimated`` is one label per item, ``None`` when unparsed (a miss).
- Labels are compared exactly after ``str.strip``; normalise before calling (letters upper-case,
  AVQA words via :func:`bench.metrics.avqa.normalize_answer`).
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Sequence

__all__ = ["validate", "correct", "accuracy"]


def validate(reference: Sequence, estimated: Sequence) -> None:
    """Check that reference and estimated are aligned and references are non-empty."""
    if len(reference) != len(estimated):
        raise ValueError(f"reference and estimated differ in length: {len(reference)} vs {len(estimated)}")
    for i, r in enumerate(reference):
        if r is None or (not isinstance(r, str) and len(r) == 0):
            raise ValueError(f"item {i}: empty reference")
    if not reference:
        warnings.warn("no items: accuracy is 0", stacklevel=2)


def _accepted(r: str | Collection[str]) -> set[str]:
    return {r.strip()} if isinstance(r, str) else {str(x).strip() for x in r}


def correct(reference: Sequence, estimated: Sequence) -> list[bool]:
    """Per-item correctness."""
    validate(reference, estimated)
    return [e is not None and str(e).strip() in _accepted(r) for r, e in zip(reference, estimated)]


def accuracy(reference: Sequence, estimated: Sequence) -> float:
    """Share of items answered correctly (0 when empty)."""
    c = correct(reference, estimated)
    return sum(c) / len(c) if c else 0.0
