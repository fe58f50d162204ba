"""What a result was computed with — the suite's commit, package versions, the machine — recorded beside builds,
evaluations and training stages, so that two runs that differ can be told apart by more than their dates."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["PACKAGES", "cpu_model", "environment", "environment_changes", "identity", "package_versions",
           "source_commit"]

# the distributions that build, train, answer and score: a stage 1 trained on another machine with other
# transformers, peft and accelerate versions came out different (session 61), and nothing recorded which
PACKAGES = ("must-bench", "torch", "transformers", "peft", "trl", "deepspeed", "accelerate", "datasets", "numpy",
            "scipy", "librosa", "mir_eval", "tinysoundfont")

SUITE_ROOT = Path(__file__).resolve().parent.parent


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Each distribution's installed version, ``None`` where it is not installed."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5,
                          check=True).stdout.strip()


def source_commit(root: Path = SUITE_ROOT) -> str | None:
    """The git commit ``root`` holds (``+dirty`` with uncommitted changes to tracked files), ``None`` when ``root`` is
    not the top of a git checkout (an installed wheel) or git is missing."""
    try:
        if Path(_git(root, "rev-parse", "--show-toplevel")).resolve() != root.resolve():
            return None  # e.g. site-packages inside some other repository
        commit = _git(root, "rev-parse", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """The suite's commit, Python, platform, CPU and package versions, as one JSON-able dict."""
    import torch

    return {"must_bench_commit": source_commit(), "python": platform.python_version(),
            "platform": platform.platform(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "packages": package_versions()}


def identity(env: dict[str, Any]) -> dict[str, Any]:
    """What tells one :func:`environment` from another, flat: ``commit``, ``cpu`` and each package's version (thread
    counts and the platform string are left out: they describe how a run was launched, not what it ran)."""
    return {"commit": env.get("must_bench_commit"), "cpu": env.get("cpu"), **env.get("packages", {})}


def environment_changes(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs from ``before`` to ``now`` (two :func:`environment` dicts) in their :func:`identity`, as
    ``"name old -> new"``; empty when nothing differs or ``before`` recorded nothing."""
    if not before:
        return []
    old, new = identity(before), identity(now)
    return [f"{name} {old.get(name)} -> {new.get(name)}" for name in dict.fromkeys([*old, *new])
            if old.get(name) != new.get(name)]
