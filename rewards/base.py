"""The reward registry and helpers shared by every reward function.

A reward has TRL's signature ``f(completions, **columns) -> list[float | None]``: ``completions`` are
strings or conversations (lists of ``{"role", "content"}`` messages, the last one being the model's);
dataset columns arrive as keyword arguments (``task``, ``answer``, ``answers``, ``duration``, …), and
TRL's own extras (``prompts``, ``completion_ids``, ``trainer_state`` …) are accepted and ignored.
``None`` means "not applicable to this row" (TRL leaves it out of the sum); garbage gets the reward's
minimum. Parameters are keyword-only with defaults, so every registered function works as-is.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from must.answers import clean_text, parse_interval_answer, parse_timestamp

__all__ = ["REWARDS", "register_reward", "make_reward", "completion_texts", "column", "answer_text",
           "parsed_time", "parsed_intervals", "row_count"]

RewardFunc = Callable[..., list]
REWARDS: dict[str, RewardFunc] = {}

_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)


def register_reward(name: str, tasks: Iterable[str] | None = None) -> Callable[[RewardFunc], RewardFunc]:
    """Decorator: register a reward function under ``name``; ``tasks`` are the tasks whose rows it scores (``None``:
    any row), kept as its ``tasks`` attribute. Rows of other tasks get ``None`` without reaching the function, which
    sees only its own tasks' rows (and rows with no ``task``), every per-row column cut to them."""

    def wrap(fn: RewardFunc) -> RewardFunc:
        scope = None if tasks is None else frozenset(tasks)
        reward = fn if scope is None else _scoped(fn, scope)
        reward.__name__ = name
        reward.tasks = scope  # type: ignore[attr-defined]
        REWARDS[name] = reward
        return reward

    return wrap


def _scoped(fn: RewardFunc, scope: frozenset[str]) -> RewardFunc:
    """``fn`` called on the rows whose task is in ``scope`` (or missing) only, ``None`` on the others."""

    @functools.wraps(fn)
    def reward(completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        n = row_count(completions)
        keep = [i for i, t in enumerate(column(kwargs, "task", n)) if t is None or t in scope]
        if len(keep) == n:
            return fn(completions, **kwargs)
        out: list[float | None] = [None] * n
        if keep:
            # per-row columns (n values: lists, arrays, Series) are cut to the kept rows; TRL's scalars pass as-is
            cut = {k: _rows(v, keep) if _per_row(v, n) else v for k, v in kwargs.items()}
            for i, v in zip(keep, fn(_rows(completions, keep), **cut)):
                out[i] = v
        return out

    return reward


def _per_row(value: Any, n: int) -> bool:
    return not isinstance(value, (str, bytes, dict)) and hasattr(value, "__iter__") and hasattr(value, "__len__") \
        and len(value) == n


def _rows(values: Any, keep: list[int]) -> list[Any] | np.ndarray:
    if isinstance(values, np.ndarray):
        return values[keep]
    seq = values if isinstance(values, (list, tuple)) else list(values)  # a Series by position, not by label
    return [seq[i] for i in keep]


def make_reward(name: str, **params: Any) -> RewardFunc:
    """A registered reward with parameters bound, named ``name`` (or ``name[k=v,…]``) for TRL's logs."""
    if name not in REWARDS:
        raise KeyError(f"unknown reward {name!r}; registered: {sorted(REWARDS)}")
    base = REWARDS[name]
    if not params:
        return base
    import inspect

    allowed = {p.name for p in inspect.signature(base).parameters.values() if p.kind is p.KEYWORD_ONLY}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise TypeError(f"reward {name!r} has no parameter(s) {unknown}; it takes {sorted(allowed)}")
    fn = functools.partial(base, **params)
    fn.__name__ = f"{name}[{','.join(f'{k}={v}' for k, v in sorted(params.items()))}]"  # type: ignore[attr-defined]
    return fn


def _content(c: Any) -> str:
    if isinstance(c, str):
        return c
    if isinstance(c, dict):
        c = c.get("content", "")
        if isinstance(c, list):  # content parts
            return " ".join(p.get("text", "") for p in c if isinstance(p, dict))
        return c if isinstance(c, str) else str(c)
    if isinstance(c, (list, tuple)):
        return _content(c[-1]) if c else ""
    return "" if c is None else str(c)


def completion_texts(completions: Sequence[Any]) -> list[str]:
    """Plain text of each completion (the last message of a conversation), bounded and cleaned."""
    return [clean_text(_content(c)) for c in completions]


def answer_text(text: str) -> str:
    """The content of the last ``<answer>…</answer>`` tag, or the whole text when there is none."""
    tags = _TAG.findall(text)
    return tags[-1] if tags else text


def row_count(completions: Sequence[Any]) -> int:
    """Number of completions."""
    return len(completions)


def column(kwargs: dict[str, Any], name: str, n: int, default: Any = None) -> list[Any]:
    """A dataset column as a list of length ``n`` (a scalar is broadcast; a missing column gives ``default``)."""
    v = kwargs.get(name)
    if v is None:
        return [default] * n
    if isinstance(v, (str, bytes, int, float)) or np.isscalar(v):
        return [v] * n
    v = list(v)
    if len(v) != n:
        raise ValueError(f"column {name!r} has {len(v)} values for {n} completions")
    return v


@functools.lru_cache(maxsize=65536)
def parsed_time(text: str) -> float:
    """The answer's time in seconds (NaN when unparsed or impossible); cached, answers repeat in groups."""
    p = parse_timestamp(answer_text(text))
    return float(p.value) if p.ok else float("nan")


@functools.lru_cache(maxsize=65536)
def parsed_intervals(text: str, duration: float | None) -> tuple[tuple[float, float], ...] | None:
    """The answer's intervals clipped to ``[0, duration]`` (``None`` when unparsed or impossible)."""
    p = parse_interval_answer(answer_text(text), duration)
    return tuple(p.value) if p.ok else None
