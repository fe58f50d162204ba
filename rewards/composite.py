"""Reward configs (YAML: names + weights + parameters) → TRL reward lists or one weighted composite."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from must.config import load_config
from rewards.base import make_reward

__all__ = ["RewardSpec", "RewardConfig", "load_reward_config", "build_reward_funcs", "composite_reward"]


@dataclass
class RewardSpec:
    """One component: a registered reward name, its weight and its parameters."""

    name: str
    weight: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)


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
    return [make_reward(s.name, **s.params) for s in cfg.rewards], [float(s.weight) for s in cfg.rewards]


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
