"""Build speed in × realtime for render, annotation and question generation, and how it scales with track
length and with the number of tracks (1×, 4×, 16×)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench.annotate.rhythm import RhythmConfig
from bench.annotate.truth import annotate_render
from bench.build.config import BuildConfig
from bench.build.pipeline import build
from bench.synth.compose import ComposeConfig, compose
from bench.synth.render import render_stems
from bench.tasks.base import TaskConfig, generate_drafts

__all__ = ["per_stage", "run"]


def per_stage(seconds: float, n: int = 2, seed: int = 100) -> dict[str, float]:
    """× realtime of each stage for ``n`` tracks of about ``seconds`` seconds, one core."""
    cfg = ComposeConfig(min_seconds=seconds, max_seconds=seconds, min_sections=5, max_sections=5)
    t = {"render": 0.0, "annotate": 0.0, "tasks": 0.0}
    audio = 0.0
    for i in range(n):
        t0 = time.perf_counter()
        piece = compose(seed + i, cfg)
        mix, stems = render_stems(piece)
        t1 = time.perf_counter()
        ann = annotate_render(f"b{i}", piece, mix, stems, 22050, RhythmConfig.named("paper"))
        t2 = time.perf_counter()
        generate_drafts(ann, seed + i, TaskConfig())
        t3 = time.perf_counter()
        t["render"] += t1 - t0
        t["annotate"] += t2 - t1
        t["tasks"] += t3 - t2
        audio += len(mix) / 22050
    return {k: round(audio / v, 1) for k, v in t.items()} | {"audio_seconds": round(audio, 1)}


def run(quick: bool = False) -> dict[str, Any]:
    """Per-stage speed, scaling with length (on one core) and with track count (build pipeline, 2 workers)."""
    per_stage(10.0, 1)  # warm numba's JIT cache so that it is not in the figures
    base = 10.0 if quick else 20.0
    length = {f"{k}x ({base * k:.0f} s)": per_stage(base * k, 1 if k > 4 else 2) for k in (1, 4, 16)}
    counts = {}
    for k in ((1, 4) if quick else (1, 4, 16)):
        with tempfile.TemporaryDirectory() as d:
            cfg = BuildConfig(name="speed", tracks=k, workers=2, compose=ComposeConfig(min_seconds=30, max_seconds=30))
            t0 = time.perf_counter()
            summary = build(cfg, Path(d) / "b", progress=False)
            wall = time.perf_counter() - t0
        counts[f"{k} tracks"] = {"wall_s": round(wall, 2), "x_realtime_wall": round(summary["audio_hours"] * 3600 / wall, 1)}
    return {"per_stage_x_realtime_by_length": length, "pipeline_by_track_count": counts}
