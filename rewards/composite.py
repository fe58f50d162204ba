"""Reward configs (YAML: names + weights + parameters) → TRL reward lists or one weighted composite."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from must.config import load_config
from rewards.base import REWARDS, make_reward
from rewards.relative import improvement_over_baseline

__all__ = ["RewardSpec", "RewardConfig", "load_reward_config", "build_reward_funcs", "composite_reward", "needs_baseline",
           "reads_baseline", "baseline_tasks"]


@dataclass
class RewardSpec:
    """One component: a registered reward name, its weight, its parameters, and whether it counts only the gain
    over the row's ``baseline`` completion (:func:`~rewards.relative.improvement_over_baseline`)."""

    name: str
    weight: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)
    relative: bool = False


@dataclass
class RewardConfig:
    """A named set of weighted rewards (``configs/rewards/*.yaml``)."""

    name: str = "rewards"
    rewards: list[RewardSpec] = field(default_factory=list)


def load_reward_config(path: str, overrides: list[str] | None = None) -> RewardConfig:
    """Read a reward config (shipped names like ``rewards/default.yaml`` work too)."""
    cfg = load_config(RewardConfig, path, overrides)
    if not cfg.rewards:
        raise ValueError(f"{path}: no rewards listed")
    return cfg


def build_reward_funcs(cfg: RewardConfig) -> tuple[list, list[float]]:
    """``(reward_funcs, reward_weights)`` for ``GRPOTrainer(reward_funcs=…, args=GRPOConfig(reward_weights=…))``."""
    funcs = [make_reward(s.name, **s.params) for s in cfg.rewards]
    funcs = [improvement_over_baseline(f) if s.relative else f for f, s in zip(funcs, cfg.rewards)]
    return funcs, [float(s.weight) for s in cfg.rewards]


def reads_baseline(spec: RewardSpec) -> bool:
    """Whether the component is relative or reads the ``baseline`` column itself."""
    return spec.relative or getattr(REWARDS.get(spec.name), "needs_baseline", False)


def needs_baseline(cfg: RewardConfig) -> bool:
    """Whether any component reads the ``baseline`` column, so the trainer must supply each row's baseline
    completion."""
    return any(reads_baseline(s) for s in cfg.rewards)


def baseline_tasks(cfg: RewardConfig) -> frozenset[str] | None:
    """The tasks whose rows the baseline-reading components score (``None``: any row), so the trainer need
    generate baselines only for those rows."""
    scopes = [getattr(REWARDS.get(s.name), "tasks", None) for s in cfg.rewards if reads_baseline(s)]
    return None if any(t is None for t in scopes) else frozenset().union(*scopes)


def composite_reward(cfg: RewardConfig):
    """One reward: the weighted sum of the components that apply to a row (``None`` if none applies)."""
    funcs, weights = build_reward_funcs(cfg)

    def composite(completions, **kwargs) -> list[float | None]:
        parts = [f(completions, **kwargs) for f in funcs]
        out: list[float | None] = []
        for i in range(len(completions)):
            vals = [(w, p[i]) for w, p in zip(weights, parts) if p[i] is not None]
            out.append(sum(w * v for w, v in vals) if vals else None)
        return out

    composite.__name__ = cfg.name
    return composite
