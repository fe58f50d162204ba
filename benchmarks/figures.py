"""Saving a benchmark script's figures: the result as JSON, its table as Markdown, the table printed."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["save_table", "step_table"]


def save_table(out: str | Path, name: str, result: dict, title: str, lines: list[str]) -> None:
    """Print ``title`` and the Markdown table ``lines``; write ``result`` to ``out/name.json`` and the table to
    ``out/name.md``."""
    print(title)
    print("\n".join(lines))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")


def step_table(header: str, step_s: dict[str, float], speedup: dict[str, float]) -> list[str]:
    """The Markdown table of a step-time benchmark: per variant (``header`` names the column) its seconds per step and
    its speed-up."""
    lines = [f"| {header} | s / step | speed-up |", "|---|---:|---:|"]
    return lines + [f"| {v} | {t} | {speedup[v]}× |" for v, t in step_s.items()]
