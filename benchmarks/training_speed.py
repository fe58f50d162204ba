"""Training throughput (samples/s) per stage with 1 and 2 DeepSpeed processes, peak memory, and whether the
two loss curves agree (same global batch and the same examples per step: the 2-process run halves the
per-process batch)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["run"]

STAGES = ("stage1_encoder", "stage2_lm", "stage3_sft", "stage4_grpo")


def _train(out: Path, bench: Path, nproc: int, overrides: list[str]) -> float:
    env = {**os.environ, "DS_ACCELERATOR": "cpu"}
    cmd = [sys.executable, "-m", "must.cli", "train", "--stage", "all", "--config", "configs/stages/smoke.yaml", "--out", str(out),
           "--nproc", str(nproc), f"bench={bench}", "val_items=0", *overrides]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parent.parent)
    if res.returncode:
        raise RuntimeError(f"training with {nproc} process(es) failed: {res.stdout[-1500:]}{res.stderr[-1500:]}")
    return time.perf_counter() - t0


def _build_smoke_bench(bench: Path) -> None:
    from bench.build.config import BuildConfig
    from bench.build.pipeline import build
    from configs import config_path
    from must.config import load_config

    build(load_config(BuildConfig, str(config_path("bench", "smoke.yaml"))), bench, progress=False)


def _metrics(out: Path) -> dict[str, Any]:
    per = {}
    for s in STAGES:
        lines = [json.loads(x) for x in (out / s / "metrics.jsonl").read_text().splitlines()]
        summary = next((x for x in lines if "train_samples_per_second" in x), {})
        per[s] = {"samples_per_s": summary.get("train_samples_per_second"), "loss_curve": [round(x["loss"], 4) for x in lines if "loss" in x]}
    return per


def run(quick: bool = False) -> dict[str, Any]:
    """Smoke-sized runs of all four stages with 1 and 2 processes."""
    root = Path(tempfile.mkdtemp(prefix="must-train-bench-"))
    bench = root / "bench"
    _build_smoke_bench(bench)  # outside the timings: the first run would otherwise include building it
    steps = [] if quick else ["stage1.max_steps=40", "stage2.max_steps=40", "stage3.max_steps=48", "stage4.max_steps=8"]
    # length grouping sorts within groups of 50 per-process batches, so halving that batch would change which
    # examples meet in a step; unsorted batches let the two runs see the same examples per step
    steps.append("stage3.group_by_length=false")
    out: dict[str, Any] = {}
    for nproc in (1, 2):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        half = [] if nproc == 1 else ["stage1.batch_size=2", "stage2.batch_size=2", "stage3.batch_size=4"]
        wall = _train(root / f"p{nproc}", bench, nproc, steps + half)
        peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        out[f"{nproc} process(es)"] = {"wall_s": round(wall, 1), "peak_rss_mb_per_process": round(peak / 1024, 1),
                                        "stages": _metrics(root / f"p{nproc}")}
    a, b = out["1 process(es)"]["stages"], out["2 process(es)"]["stages"]
    out["loss_curve_max_abs_diff"] = {s: (round(max(abs(x - y) for x, y in zip(a[s]["loss_curve"], b[s]["loss_curve"])), 4)
                                          if a[s]["loss_curve"] and b[s]["loss_curve"] else None) for s in STAGES[:3]}
    return out
