"""The cost of one GRPO step's model work in stage 4 on MusT-small at the default config's sizes, with LoRA as the
adapters' pass trains it: sample ``generations`` completions of each of ``prompts`` prompts, then score them (forward
and backward). Two ways of doing the same work: every row run whole, as TRL does, and each distinct prompt run once,
every row continuing from a copy of its cache (:mod:`stages.shared_prompts`, how stage 4 runs since session 56).

The prompts are as stage 4's: an ``audio_first`` prompt of a track of 90-150 s (seeded) from the audio store, with a
``heard`` line of 40 words, then a TSG question; completions are 4 tokens (a time, the end of the turn), as TSG's and
MTR's are.

``python -m benchmarks.grpo_step [--steps 6] [--prompts 2] [--generations 4] --out DIR``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks.figures import save_table, step_table

__all__ = ["VARIANTS", "step_seconds", "run"]

VARIANTS = ("whole rows", "prompts once")
QUESTION = "When does the piano first start to play?"


def _policy(seed: int = 0):
    """The default config's MusT-small (random weights, a locally built tokenizer) with stage 4's LoRA, and its
    processor."""
    from peft import get_peft_model

    from configs import config_path
    from must.config import load_config
    from must.model import MusTProcessor
    from stages.common import lora_config, new_must_model
    from stages.config import TrainConfig

    cfg = load_config(TrainConfig, config_path("stages", "default.yaml"))
    proc = MusTProcessor.build([QUESTION, "heard : piano enters ; drums stop", "Answer with a time."], cfg.model.max_seconds)
    proc = MusTProcessor(proc.tokenizer, cfg.model.max_seconds, cfg.model.audio_first)
    model = new_must_model(cfg, proc)
    torch.manual_seed(seed)
    st = cfg.stage4
    return get_peft_model(model, lora_config("must", st.lora_r, st.lora_alpha, st.lora_dropout)).train(), proc


def _batches(proc, model, steps: int, prompts: int, generations: int, seed: int = 0) -> list[dict]:
    """``steps`` GRPO batches: each of ``prompts`` prompts ``generations`` times, left-padded as TRL pads them."""
    rng = np.random.default_rng(seed)
    inner = model.get_base_model()
    heard = " ".join(["piano enters ; drums stop ;"] * 8)
    out = []
    for s in range(steps):
        texts = []
        for k in range(prompts):
            key, seconds = s * prompts + k, int(rng.integers(90, 151))
            inner.audio_store[key] = torch.randn(seconds * inner.config.frame_rate, inner.config.feature_dim,
                                                 generator=torch.Generator().manual_seed(key))
            texts += [proc.prompt(QUESTION, float(seconds), "Answer with a time.", key=key, heard=heard)] * generations
        enc = proc.tokenizer(texts, add_special_tokens=False, padding=True, padding_side="left", return_tensors="pt")
        out.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    return out


def _step(model, batch: dict, shared: bool, new_tokens: int, pad_id: int) -> None:
    """Sample completions, then score them and backpropagate, as a GRPO step does (TRL's fused-head call when
    ``shared``, where stage 4's scoring runs the prompts once; the model's own logits otherwise)."""
    with torch.no_grad():
        ids = model.generate(**batch, do_sample=True, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                             pad_token_id=pad_id)
    mask = torch.cat([batch["attention_mask"], torch.ones(len(ids), new_tokens, dtype=torch.long)], 1)
    labels = ids.clone()
    labels[:, : batch["input_ids"].shape[1]] = -100
    if shared:
        loss = -model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True).log_probs.sum()
    else:
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
        target = labels[:, 1:]
        loss = -logp.gather(-1, target.clamp(min=0).unsqueeze(-1))[..., 0].masked_fill(target == -100, 0).sum()
    loss.backward()
    model.zero_grad()


def step_seconds(variant: str, steps: int = 6, prompts: int = 2, generations: int = 4, new_tokens: int = 4,
                 warmup: int = 1) -> tuple[float, float]:
    """``(mean wall seconds of one step, mean prompt length)`` under ``variant`` (one of :data:`VARIANTS`), over
    seeded batches (after ``warmup`` untimed ones)."""
    from stages.stage4_grpo import sample_prompts_once, score_with_full_logits

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    model, proc = _policy()
    shared = variant == VARIANTS[1]
    if shared:
        score_with_full_logits(model.get_base_model(), temperature=1.0)
        sample_prompts_once(model.get_base_model())
    batches = _batches(proc, model, warmup + steps, prompts, generations)
    torch.manual_seed(0)
    timed = 0.0
    for i, batch in enumerate(batches):
        start = time.perf_counter()
        _step(model, batch, shared, new_tokens, proc.tokenizer.pad_token_id)
        if i >= warmup:
            timed += time.perf_counter() - start
    return timed / steps, float(np.mean([b["attention_mask"].sum(1).float().mean() for b in batches[warmup:]]))


def run(steps: int = 6, prompts: int = 2, generations: int = 4) -> dict:
    """Both variants' step time over the same batches, and the speed-up."""
    times, length = {}, 0.0
    for v in VARIANTS:
        times[v], length = step_seconds(v, steps, prompts, generations)
    return {"steps": steps, "prompts": prompts, "generations": generations, "threads": torch.get_num_threads(),
            "mean_prompt_length": round(length, 1), "step_s": {v: round(t, 4) for v, t in times.items()},
            "speedup": round(times[VARIANTS[0]] / times[VARIANTS[1]], 2)}


def main(argv: list[str] | None = None) -> None:
    """CLI entry point: print and save the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--generations", type=int, default=4)
    ap.add_argument("--out", default="runs/benchmarks")
    a = ap.parse_args(argv)
    result = run(a.steps, a.prompts, a.generations)
    lines = step_table("GRPO step", result["step_s"], {VARIANTS[0]: 1.0, VARIANTS[1]: result["speedup"]})
    title = (f"MusT-small with LoRA, sample + score + backward, {a.prompts} prompts x {a.generations} generations "
             f"(mean prompt length {result['mean_prompt_length']}), {result['threads']} threads")
    save_table(a.out, "grpo_step", result, title, lines)


if __name__ == "__main__":
    main()
