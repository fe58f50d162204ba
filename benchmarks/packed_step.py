"""The cost of one training pass (forward and backward) of MusT-small's LM over packed batches like stage 3's, with
the packed turns' attention computed over the whole masked square (SDPA under
:func:`stages.sequences.packed_attention`'s mask) and as the ``must_packed`` blocks
(:mod:`must.model.packed_attention`). Both compute the same attention; the figure is how much of the step the masked
part of the square cost.

The batches are drawn, seeded, to look like the default config's stage 3: 6 rows, each an audio prefix of 60-170
tokens and 8 turns, 82 % of them 20-50 tokens (a question and a short answer) and 18 % 150-166 (GTO's and TAD's
long ones), a mean of about 58 as the train split's.

``python -m benchmarks.packed_step [--steps 6] [--batch 6] [--turns 8] --out DIR``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks.figures import save_table, step_table

__all__ = ["VARIANTS", "packings", "step_seconds", "run"]

VARIANTS = ("masked square", "must_packed blocks")


def packings(steps: int, batch: int = 6, turns: int = 8, seed: int = 0) -> list[list[list[tuple[int, int]]]]:
    """``steps`` batches of turn spans, each row a prefix and then ``turns`` contiguous turns (see the module doc)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        rows = []
        for _ in range(batch):
            start, spans = int(rng.integers(60, 171)), []
            for _ in range(turns):
                n = int(rng.integers(150, 167)) if rng.random() < 0.18 else int(rng.integers(20, 51))
                spans.append((start, start + n))
                start += n
            rows.append(spans)
        out.append(rows)
    return out


def _language_model() -> torch.nn.Module:
    """The LM the shipped ``configs/stages/default.yaml`` trains (its sizes; vocabulary irrelevant here), seeded."""
    from transformers import LlamaConfig, LlamaModel

    from configs import config_path
    from must.config import load_config
    from must.model.packed_attention import PACKED_ATTENTION
    from stages.config import TrainConfig

    m = load_config(TrainConfig, config_path("stages", "default.yaml")).model
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=600, hidden_size=m.hidden_size, intermediate_size=m.intermediate_size,
                      num_hidden_layers=m.num_layers, num_attention_heads=m.num_heads, num_key_value_heads=m.num_heads,
                      max_position_embeddings=2048)
    lm = LlamaModel(cfg).train()
    lm.set_attn_implementation(PACKED_ATTENTION)
    return lm


def step_seconds(variant: str, batches: list[list[list[tuple[int, int]]]], warmup: int = 1) -> float:
    """Mean wall seconds of one forward and backward pass of the LM over each of ``batches`` (after ``warmup``
    untimed ones) under ``variant`` (one of :data:`VARIANTS`)."""
    from must.model.packed_attention import packed_plan
    from stages.sequences import packed_attention

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    lm = _language_model()
    timed = 0.0
    for i, segments in enumerate(batches[:warmup] + batches):
        length = max(row[-1][1] for row in segments)
        start = time.perf_counter()
        mask, positions = packed_attention(segments, length)
        extra = {"packed_plan": packed_plan(segments, length)} if variant == VARIANTS[1] else {}
        embeds = torch.randn(len(segments), length, lm.config.hidden_size, generator=torch.Generator().manual_seed(i))
        out = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False, **extra)
        out.last_hidden_state.pow(2).mean().backward()
        lm.zero_grad()
        if i >= warmup:
            timed += time.perf_counter() - start
    return timed / len(batches)


def run(steps: int = 6, batch: int = 6, turns: int = 8) -> dict:
    """Both variants' step time over the same batches, and the blocks' speed-up."""
    batches = packings(steps, batch, turns)
    lengths = [max(row[-1][1] for row in b) for b in batches]
    times = {v: step_seconds(v, batches) for v in VARIANTS}
    return {"steps": steps, "batch": batch, "turns": turns, "threads": torch.get_num_threads(),
            "mean_length": round(float(np.mean(lengths)), 1), "step_s": {v: round(t, 4) for v, t in times.items()},
            "speedup": round(times[VARIANTS[0]] / times[VARIANTS[1]], 2)}


def main(argv: list[str] | None = None) -> None:
    """CLI entry point: print and save the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=6)
    ap.add_argument("--turns", type=int, default=8)
    ap.add_argument("--out", default="runs/benchmarks")
    a = ap.parse_args(argv)
    result = run(a.steps, a.batch, a.turns)
    lines = step_table("packed attention", result["step_s"], {VARIANTS[0]: 1.0, VARIANTS[1]: result["speedup"]})
    title = (f"MusT-small LM, forward + backward, {a.batch} rows x {a.turns} packed turns (mean length "
             f"{result['mean_length']}), {result['threads']} threads")
    save_table(a.out, "packed_step", result, title, lines)


if __name__ == "__main__":
    main()
