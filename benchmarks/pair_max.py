"""The music encoder's frequency pooling alone: ``nn.functional.max_pool2d(x, (2, 1))`` against
:func:`must.model.pair_max.pair_max`, which computes the same values and gradients, on the three maps a stage-1 batch
pools (16 crops of 15 s at the default config's sizes), forward without gradients (as features are computed) and
forward + backward (as stage 1 trains), in float32 and bfloat16.

``python -m benchmarks.pair_max [--repeats 20] [--batch 16] [--seconds 15] --out DIR``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from benchmarks.figures import save_table

__all__ = ["pooled_shapes", "op_ms", "run"]


def pooled_shapes(batch: int = 16, seconds: float = 15.0) -> list[tuple[int, int, int, int]]:
    """The ``(B, C, H, T)`` inputs of the encoder's three poolings for ``batch`` crops of ``seconds``."""
    from must.model.configuration import MusTConfig

    cfg = MusTConfig()
    c, t = cfg.encoder_channels, int(seconds * cfg.frame_rate)
    return [(batch, c, cfg.n_mels, t), (batch, 2 * c, cfg.n_mels // 2, t), (batch, 2 * c, cfg.n_mels // 4, t)]


def op_ms(pool: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, backward: bool, repeats: int = 20) -> float:
    """Mean milliseconds of ``pool(x)`` (and its backward, given ``backward``) over ``repeats`` after 3 warm-ups."""
    x = x.detach().requires_grad_(backward)
    grad = torch.ones_like(pool(x.detach()))
    for i in range(3 + repeats):
        if i == 3:
            start = time.perf_counter()
        with torch.set_grad_enabled(backward):
            y = pool(x)
            if backward:
                y.backward(grad)
    return (time.perf_counter() - start) / repeats * 1e3


def run(repeats: int = 20, batch: int = 16, seconds: float = 15.0) -> dict:
    """Per dtype, pass and shape, both poolings' milliseconds."""
    from must.model.pair_max import pair_max

    pools = {"max_pool2d": lambda x: torch.nn.functional.max_pool2d(x, (2, 1)), "pair_max": pair_max}
    rows = []
    torch.manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        for backward in (False, True):
            for shape in pooled_shapes(batch, seconds):
                x = torch.randn(shape).to(dtype)
                times = {k: round(op_ms(f, x, backward, repeats), 3) for k, f in pools.items()}
                rows.append({"dtype": str(dtype).removeprefix("torch."), "shape": list(shape),
                             "pass": "forward + backward" if backward else "forward", **times})
    return {"repeats": repeats, "threads": torch.get_num_threads(), "rows": rows}


def main(argv: list[str] | None = None) -> None:
    """CLI entry point: print and save the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--out", default="runs/benchmarks")
    a = ap.parse_args(argv)
    result = run(a.repeats, a.batch, a.seconds)
    lines = ["| dtype | pass | input (B, C, H, T) | max_pool2d, ms | pair_max, ms | speed-up |",
             "|---|---|---|---:|---:|---:|"]
    lines += [f"| {r['dtype']} | {r['pass']} | {tuple(r['shape'])} | {r['max_pool2d']} | {r['pair_max']} | "
              f"{r['max_pool2d'] / r['pair_max']:.1f}× |" for r in result["rows"]]
    save_table(a.out, "pair_max", result, f"the encoder's frequency pooling, {result['threads']} threads", lines)


if __name__ == "__main__":
    main()
