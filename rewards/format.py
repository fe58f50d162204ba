"""Format rewards (an answer tag; an answer the task's parser accepts) and a length penalty."""

from __future__ import annotations

import re

from bench.metrics import avqa
from must.answers import parse_choice, parse_interval_answer, parse_timestamp
from rewards.base import answer_text, column, completion_texts, register_reward

__all__ = ["format_answer_tag", "format_parsable", "length_penalty"]

_ONE_TAG = re.compile(r"^\s*(?:<think>.*?</think>\s*)?<answer>\s*\S.*?</answer>\s*$", re.DOTALL | re.IGNORECASE)


@register_reward("format_answer_tag")
def format_answer_tag(completions, **kwargs) -> list[float | None]:
    """1 when the completion is (optional ``<think>…</think>``) then one non-empty ``<answer>…</answer>``."""
    return [float(bool(_ONE_TAG.match(t)) and t.lower().count("<answer>") == 1) for t in completion_texts(completions)]


def _parses(task: str | None, text: str) -> bool:
    if task == "TSG":
        return parse_timestamp(text).ok
    if task == "MTR":
        p = parse_interval_answer(text)
        return p.ok and bool(p.value)
    if task == "LTR":
        return parse_choice(text, 4).ok
    if task == "GTO":
        return parse_choice(text, 6).ok
    if task == "AVQA":
        return avqa.normalize_answer(text).ok
    return bool(text.strip())


@register_reward("format_parsable")
def format_parsable(completions, **kwargs) -> list[float | None]:
    """1 when the answer (tag content, or the whole text) parses for its task, else 0."""
    texts = completion_texts(completions)
    tasks = column(kwargs, "task", len(texts))
    return [float(_parses(task, answer_text(t))) for t, task in zip(texts, tasks)]


@register_reward("length_penalty")
def length_penalty(completions, *, max_words: int = 48, scale: float = 1.0, **kwargs) -> list[float | None]:
    """0 up to ``max_words`` words, then down linearly to −``scale`` at twice that length."""
    out = []
    for t in completion_texts(completions):
        words = len(t.split())
        out.append(-scale * min(1.0, max(0, words - max_words) / max_words))
    return out
