"""The cost of one stage-1 step of MusT-small's music encoder (forward, backward, AdamW) on this CPU, as the default
config trains it (16 crops of 15 s), under ways of running the same model: float32, the conv stack in channels-last
memory format, bfloat16 autocast (as stage 1 runs since session 54), and both; and float32 and bfloat16 with the
conv stack's frequency pooling as ``nn.MaxPool2d((2, 1))`` (before session 60) instead of
:class:`must.model.pair_max.PairMax`, which computes the same values and gradients. A guide to where stage 1's time
could go, not a quality figure: bfloat16 changes the arithmetic, so a variant is only a candidate until a training
run shows it learns as well.

``python -m benchmarks.encoder_step [--steps 30] [--batch 16] [--seconds 15] --out DIR``
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from benchmarks.figures import save_table, step_table

__all__ = ["VARIANTS", "step_seconds", "run"]

VARIANTS = ("float32", "channels_last", "bfloat16", "channels_last+bfloat16", "float32+max_pool2d",
            "bfloat16+max_pool2d")


def _encoder(channels_last: bool, max_pool2d: bool = False) -> torch.nn.Module:
    """The encoder the shipped ``configs/stages/default.yaml`` trains in stage 1 (its sizes, the suite's sources, its
    pace head), seeded; ``max_pool2d``: its pooling as ``nn.MaxPool2d((2, 1))``, as before session 60."""
    from configs import config_path
    from must.config import load_config
    from must.model.configuration import MusTConfig
    from must.model.modeling import MusicEncoder
    from must.model.pair_max import PairMax
    from stages.config import TrainConfig
    from stages.data import SOURCES

    m = load_config(TrainConfig, config_path("stages", "default.yaml")).model
    torch.manual_seed(0)
    cfg = MusTConfig(sources=SOURCES, encoder_dim=m.encoder_dim, encoder_layers=m.encoder_layers,
                     encoder_heads=m.encoder_heads, encoder_channels=m.encoder_channels, pace_head=m.pace_head)
    enc = MusicEncoder(cfg).train()
    if max_pool2d:
        enc.conv = torch.nn.Sequential(*[torch.nn.MaxPool2d((2, 1)) if isinstance(x, PairMax) else x for x in enc.conv])
    if channels_last:
        # weights and input both channels-last: with the input alone converted the kernels do not change
        enc.conv = enc.conv.to(memory_format=torch.channels_last)
        forward = enc.conv.forward
        enc.conv.forward = lambda x: forward(x.contiguous(memory_format=torch.channels_last))
    return enc


def step_seconds(variant: str, steps: int = 30, batch: int = 16, seconds: float = 15.0, warmup: int = 5) -> float:
    """Mean wall seconds of one encoder training step under ``variant`` (one of :data:`VARIANTS`)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    enc = _encoder("channels_last" in variant, "max_pool2d" in variant)
    n_mels, frames = enc.config.n_mels, int(seconds * enc.config.sample_rate / enc.config.mel_hop)
    mel, offset = torch.randn(batch, n_mels, frames), torch.rand(batch) * 60
    opt = torch.optim.AdamW(enc.parameters(), 1e-3)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if "bfloat16" in variant else contextlib.nullcontext()
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        with autocast:
            _, logits = enc(mel, offset)
        logits.float().pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
    return (time.perf_counter() - start) / steps


def run(steps: int = 30, batch: int = 16, seconds: float = 15.0) -> dict:
    """Every variant's step time and its speed-up over float32."""
    times = {v: step_seconds(v, steps, batch, seconds) for v in VARIANTS}
    return {"steps": steps, "batch": batch, "seconds": seconds, "threads": torch.get_num_threads(),
            "step_s": {v: round(t, 4) for v, t in times.items()},
            "speedup": {v: round(times["float32"] / t, 2) for v, t in times.items()}}


def main(argv: list[str] | None = None) -> None:
    """CLI entry point: print and save the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--out", default="runs/benchmarks")
    a = ap.parse_args(argv)
    result = run(a.steps, a.batch, a.seconds)
    lines = step_table("variant", result["step_s"], result["speedup"])
    title = f"stage-1 encoder step, {a.batch} crops of {a.seconds:g} s, {result['threads']} threads"
    save_table(a.out, "encoder_step", result, title, lines)


if __name__ == "__main__":
    main()
