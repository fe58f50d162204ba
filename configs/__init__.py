"""YAML configs shipped with the suite (benchmark builds, prompts, stages, DeepSpeed, rewards)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CONFIG_DIR", "config_path"]

CONFIG_DIR = Path(__file__).resolve().parent


def config_path(*parts: str) -> Path:
    """Path of a shipped config, e.g. ``config_path("bench", "small.yaml")``."""
    return CONFIG_DIR.joinpath(*parts)
