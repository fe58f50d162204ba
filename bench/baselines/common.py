"""Helpers shared by the baselines: per-item seeded randomness and answer spaces."""

from __future__ import annotations

import re
import zlib
from typing import Any

import numpy as np

from bench.metrics.avqa import INSTRUMENTS, NUMBERS
from bench.scoring import n_options
from must.answers import LETTERS
from must.timecode import find_times

__all__ = ["item_rng", "letters_for", "avqa_candidates", "question_time", "intensity_kind", "question_source", "template_key"]


def item_rng(seed: int, item_id: str) -> np.random.Generator:
    """A generator that depends only on the seed and the item (same answer on resume, any batching)."""
    return np.random.default_rng([seed, zlib.crc32(item_id.encode())])


def letters_for(item: dict[str, Any]) -> str:
    """The option letters of a multiple-choice item."""
    return LETTERS[: n_options(item["task"], item["question"])]


def avqa_candidates(question: str) -> list[str]:
    """Plausible answers for an AVQA question from its wording."""
    q = question.lower()
    if q.startswith("how many"):
        return NUMBERS[1:7]
    if q.startswith(("is ", "are ", "does ", "do ")):
        return ["yes", "no"]
    m = re.search(r"the (.+?) or the (.+?)\?", q)
    if m:
        return [m.group(1).replace(" ", "_"), m.group(2).replace(" ", "_")]
    return list(INSTRUMENTS)


def question_time(question: str) -> float | None:
    """The first time code in a question (LTR/TAD ask about "the change at M:SS")."""
    times = [t for t in find_times(question) if t.kind == "colon" and not t.impossible]
    return times[0].seconds if times else None


def intensity_kind(question: str) -> str:
    """``highest`` or ``lowest`` for an MTR question."""
    q = question.lower()
    return "lowest" if any(w in q for w in ("lowest", "calmest", "least")) else "highest"


def question_source(question: str) -> str | None:
    """The source a TSG question names ("When does the <source> first …")."""
    m = re.search(r"(?:does|can|time does) the (.+?) (?:first|finally|play|be)", question)
    return m.group(1) if m else None


def template_key(question: str) -> str:
    """A question with instrument names and times masked (for per-template statistics)."""
    q = re.sub(r"\d+:\d{2}", "<t>", question.lower())
    return re.sub(r"the [a-z_ ]+? (or|louder|in this|first|finally)", r"the <x> \1", q)
