"""What GRPO's group advantages favour on MTR: for each question, sample a group of answers from a MusT checkpoint as
stage 4 does (temperature, the answer constraints), score them with interval rewards, and normalise within the
group as TRL does ((r − mean) / (std + 1e-4), std with Bessel's correction). The mean advantage of samples that start
at 0:00, or are wider than their group's median, says which way a GRPO step pushes the policy; the greedy answer's
IoU and width say where the policy already answers. Each reward is also scored relative to the greedy answer
(``… over greedy``: max(0, r − r_greedy), as ``relative: true`` in a reward config makes stage 4 score it). The
group's medoid under IoU (the sample agreeing most with the others: a minimum-Bayes-risk choice) is scored too,
and ``--against`` an earlier run's ``grpo_groups.json`` (another checkpoint, the same questions, group and seed)
pairs the sample, greedy and medoid IoU question by question: what GRPO did to the answers it samples, against
what it did to an answer decoded from them.

``python -m benchmarks.grpo_groups CHECKPOINT --bench DIR [--split val] [--limit 100] [--group 8] [--temperature 1]
[--against JSON] --out DIR``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench.evaluate.paired import mean_difference

__all__ = ["ADVANTAGES", "group_advantages", "advantage_summary", "medoid", "paired", "run"]

# the MTR rewards compared: name → (registered reward, parameters)
REWARD_SPECS = {"iou": ("interval_iou", {}), "tiou": ("interval_tiou", {}),
                "boundary exp τ=5": ("interval_boundary", {"tau": 5.0}),
                "boundary linear τ=30": ("interval_boundary", {"tau": 30.0, "kernel": "linear"})}
ADVANTAGES = [*REWARD_SPECS, *(f"{k} over greedy" for k in REWARD_SPECS)]  # each reward as is, and relative to greedy


def group_advantages(rewards: np.ndarray) -> np.ndarray:
    """TRL's GRPO advantages for one group of rewards: (r − mean) / (std + 1e-4), std with Bessel's correction."""
    rewards = np.asarray(rewards, dtype=float)
    if rewards.ndim != 1 or len(rewards) < 2:
        raise ValueError(f"a group needs at least two rewards, got shape {rewards.shape}")
    return (rewards - rewards.mean()) / (rewards.std(ddof=1) + 1e-4)


def advantage_summary(samples: pd.DataFrame, reward: str) -> dict[str, float]:
    """Mean advantage under ``reward`` of samples starting at 0:00 vs the rest, and wider vs not wider than the
    group's median width (columns: ``question``, ``start``, ``width``, ``adv <reward>``)."""
    adv = samples[f"adv {reward}"]
    zero = samples.start == 0
    wide = samples.width > samples.groupby("question").width.transform("median")
    mean = lambda mask: round(float(adv[mask].mean()), 3) if mask.any() else float("nan")  # noqa: E731
    return {"start 0:00": mean(zero), "other starts": mean(~zero), "wider than group median": mean(wide),
            "not wider": mean(~wide)}


def medoid(intervals: list[list[tuple[float, float]] | None]) -> int:
    """Index of the answer whose summed temporal IoU with the others is highest (unparsed answers count 0 and are
    chosen only when nothing else is): the minimum-Bayes-risk choice under IoU."""
    from bench.metrics.intervals import temporal_iou

    if not intervals:
        raise ValueError("medoid of no answers")
    agree = [sum(temporal_iou(list(a), np.array(b)) for j, b in enumerate(intervals) if j != i and b) if a else -1.0
             for i, a in enumerate(intervals)]
    return int(np.argmax(agree))


PAIRED = ("sample iou", "greedy iou", "medoid iou")


def paired(run: dict[str, Any], before: dict[str, Any]) -> dict[str, str]:
    """Per figure of :data:`PAIRED`, ``run − before`` in points over the questions both scored: mean ± standard error."""
    old = {q["id"]: q for q in before["per question"]}
    both = [(q, old[q["id"]]) for q in run["per question"] if q["id"] in old]
    if len(both) < 2:
        raise ValueError(f"only {len(both)} question(s) in common: pair runs made on the same questions")
    out = {"questions": str(len(both))}
    for k in PAIRED:
        mean, se = mean_difference(100 * np.array([a[k] - b[k] for a, b in both]))
        out[k] = f"{mean:+.1f} ± {se:.1f}"
    return out


def _covered(text: str) -> tuple[float, float]:
    from must.answers import parse_interval_answer

    ivs = parse_interval_answer(text).value or []
    return (ivs[0][0] if ivs else float("nan")), float(sum(e - s for s, e in ivs))


def run(checkpoint: str, bench: str, split: str = "val", limit: int = 100, group: int = 8,
        temperature: float = 1.0, seed: int = 0) -> dict[str, Any]:
    """Sample groups on the first ``limit`` MTR questions of ``split`` and summarise their advantages."""
    from bench.evaluate.runner import select_items
    from bench.io import load_bench
    from must.model.heard import heard_for
    from must.model.inference import answer_form_processors
    from must.models.must_model import MusTAdapter
    from rewards import make_reward
    from rewards.base import parsed_intervals

    adapter = MusTAdapter(checkpoint)
    model, proc = adapter.model, adapter.processor
    tok = proc.tokenizer
    fns = {k: make_reward(name, **params) for k, (name, params) in REWARD_SPECS.items()}
    items = select_items(load_bench(bench, split), ["MTR"], limit, (0, 1))
    torch.manual_seed(seed)
    rows, greedy, per_question = [], [], []
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    for item in items.to_dict("records"):
        feats = adapter.features_for(item["audio"])
        prompt = proc.prompt(item["question"], item["duration"], adapter.instructions["MTR"], heard=heard_for(model, feats))

        def answers(count: int, **how) -> list[str]:
            enc = tok([prompt] * count, return_tensors="pt")
            n = enc["input_ids"].shape[1]
            out = model.generate(**enc, audio_features=[feats] * count, max_new_tokens=24, eos_token_id=eos,
                                 pad_token_id=tok.pad_token_id, logits_processor=answer_form_processors(model, tok, n), **how)
            return [proc.decode(row[n:]) for row in out]

        # as TRL samples (top_k 0, top_p 1 are its defaults); then the greedy answer evaluation writes
        texts = answers(group, do_sample=True, temperature=temperature, top_k=0, top_p=1.0) + answers(1, do_sample=False)
        cols = dict(task=["MTR"] * len(texts), answer=[item["answer"]] * len(texts),
                    answers=[list(item["answers"])] * len(texts), duration=[item["duration"]] * len(texts))
        scores = {k: np.array(fn(texts, **cols), dtype=float) for k, fn in fns.items()}
        advs = {k: group_advantages(v[:group]) for k, v in scores.items()}
        advs |= {f"{k} over greedy": group_advantages(np.maximum(0.0, v[:group] - v[group])) for k, v in scores.items()}
        for j, text in enumerate(texts[:group]):
            start, width = _covered(text)
            rows.append({"question": item["id"], "start": start, "width": width, "iou": scores["iou"][j],
                         **{f"adv {k}": a[j] for k, a in advs.items()}})
        start, width = _covered(texts[group])
        greedy.append({"iou": scores["iou"][group], "width": width, "start": start})
        chosen = medoid([parsed_intervals(t, item["duration"]) for t in texts[:group]])
        per_question.append({"id": str(item["id"]), "sample iou": round(float(scores["iou"][:group].mean()), 4),
                             "greedy iou": round(float(scores["iou"][group]), 4),
                             "medoid iou": round(float(scores["iou"][chosen]), 4)})
    samples, best = pd.DataFrame(rows), pd.DataFrame(greedy)
    ref = [_covered(a) for a in items.answer]
    return {"checkpoint": checkpoint, "split": split, "questions": len(items), "group": group, "temperature": temperature,
            "sample IoU": round(100 * samples.iou.mean(), 1), "greedy IoU": round(100 * best.iou.mean(), 1),
            "medoid IoU": round(100 * float(np.mean([q["medoid iou"] for q in per_question])), 1),
            "share starting at 0:00": {"samples": round(float((samples.start == 0).mean()), 3),
                                       "greedy": round(float((best.start == 0).mean()), 3),
                                       "references": round(float(np.mean([s == 0 for s, _ in ref])), 3)},
            "mean width (s)": {"samples": round(float(samples.width.mean()), 1), "greedy": round(float(best.width.mean()), 1),
                               "references": round(float(np.mean([w for _, w in ref])), 1)},
            "mean advantage": {k: advantage_summary(samples, k) for k in ADVANTAGES}, "per question": per_question}


def main(argv: list[str] | None = None) -> int:
    """Print and save the group-advantage summary."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.grpo_groups", description=__doc__)
    p.add_argument("checkpoint")
    p.add_argument("--bench", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--against", help="an earlier run's grpo_groups.json to pair with, question by question")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    with torch.no_grad():
        result = run(args.checkpoint, args.bench, args.split, args.limit, args.group, args.temperature)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "grpo_groups.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))  # kept if pairing fails
    if args.against:
        try:
            result["paired with"] = {"run": args.against, **paired(result, json.loads(Path(args.against).read_text()))}
        except (OSError, ValueError, KeyError) as e:
            raise SystemExit(f"--against {args.against}: cannot pair ({type(e).__name__}: {e}); this run's figures are "
                             f"in {out / 'grpo_groups.json'}")
        (out / "grpo_groups.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(json.dumps({k: v for k, v in result.items() if k != "per question"}, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
