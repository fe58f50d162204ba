"""Reward functions with TRL's signature ``f(completions, **columns) -> list[float | None]``, in one registry.

>>> from rewards import REWARDS, make_reward
>>> REWARDS["timestamp_exp"](["1:05", "65 s", "1:30"], answer=["1:05"] * 3, task=["TSG"] * 3)
[1.0, 1.0, 0.006737946999085467]
"""

from rewards import choice, format, interval, timestamp  # noqa: F401,A004  (import registers the rewards)
from rewards.base import REWARDS, completion_texts, make_reward, register_reward
from rewards.composite import (RewardConfig, RewardSpec, baseline_tasks, build_reward_funcs, composite_reward,
                               load_reward_config, needs_baseline, reads_baseline)
from rewards.relative import improvement_over_baseline

__all__ = ["REWARDS", "make_reward", "register_reward", "completion_texts", "RewardConfig", "RewardSpec",
           "build_reward_funcs", "composite_reward", "load_reward_config", "needs_baseline", "reads_baseline",
           "baseline_tasks", "improvement_over_baseline"]
