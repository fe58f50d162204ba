"""Try reward configs on real completions before spending a training run on them.

For each config: the reward distribution per task; Spearman rank correlation between the reward and
the benchmark's own per-item metric (TSG Hit@3s, MTR IoU, accuracy, TAD semantic+METEOR); the share of
groups (several completions of one question) whose rewards are all equal — a dead GRPO signal; and
reward-hacking probes (whole-track interval, a timestamp every 5 s, every option letter, empty, the
question copied back, the reference padded with hedges), each compared with the reward the reference answer
gets. Configs with relative rewards (``relative: true``) are scored against a baseline answer per question —
e.g. a model's greedy predictions.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.io import iter_jsonl
from bench.scoring import TextScorer, score_item
from must.timecode import format_interval, format_intervals, format_time, parse_intervals
from rewards.composite import RewardConfig, baseline_tasks, composite_reward, needs_baseline

__all__ = ["load_completions", "item_metric", "probes", "padded_reference", "baseline_problem", "run_experiment",
           "PROBES"]

PROBES = ("reference", "whole_track", "many_timestamps", "every_letter", "empty", "copied_question",
          "padded_reference")


def load_completions(paths: list[str | Path]) -> dict[str, list[str]]:
    """Completions per item id from run directories (``predictions*.jsonl``) or JSONL files with ``id`` and
    ``prediction`` / ``completion`` / ``completions`` (a list, for several samples per item). Several
    sources add samples to the same groups."""
    out: dict[str, list[str]] = defaultdict(list)
    for p in map(Path, paths):
        files = sorted(p.glob("predictions*.jsonl")) if p.is_dir() else [p]
        if not files:
            raise FileNotFoundError(f"{p}: no predictions*.jsonl")
        for f in files:
            for n, rec, problem in iter_jsonl(f):
                if problem:
                    raise ValueError(f"{f}: line {n}: {problem}")
                key = str(rec.get("id", rec.get("question_id")))
                if "completions" in rec:
                    out[key] += [str(c) for c in rec["completions"]]
                else:
                    out[key].append(str(rec.get("completion", rec.get("prediction")) or ""))
    return dict(out)


def item_metric(item: dict[str, Any], completion: str, scorer: TextScorer) -> float:
    """The benchmark's own score of one completion (0–1)."""
    s = score_item(item, completion, scorer).scores
    if item["task"] == "TSG":
        return s["hit"]
    if item["task"] == "MTR":
        return (s["iou"] + s["f1"]) / 2
    if item["task"] == "TAD":
        return (s["meteor"] + s["semantic"]) / 2
    return s["correct"]


def probes(item: dict[str, Any]) -> dict[str, str]:
    """Reward-hacking probes for one item (plus the reference answer for comparison)."""
    d = float(item.get("duration") or 180.0)
    return {"reference": str(item["answer"]), "whole_track": format_interval(0, d),
            "many_timestamps": " ".join(format_time(t) for t in np.arange(0, d, 5.0)),
            "every_letter": "A B C D E F", "empty": "", "copied_question": str(item["question"]),
            "padded_reference": padded_reference(item)}


def padded_reference(item: dict[str, Any], every: float = 10.0) -> str:
    """The reference answer followed by hedges: for MTR a 1 s interval every ``every`` seconds outside the reference
    intervals, for TSG a timestamp every ``every`` seconds, otherwise every option letter. A reward that ignores what
    comes after the first match pays this as much as the reference."""
    answer = str(item["answer"])
    d = float(item.get("duration") or 180.0)
    if item["task"] == "MTR":
        ref = parse_intervals(answer)
        extra = [(t, t + 1.0) for t in np.arange(0.0, d - 1.0, every) if not any(s - 1.0 <= t <= e for s, e in ref)]
        return format_intervals(ref + extra)
    if item["task"] == "TSG":
        return ", ".join([answer, *(format_time(t) for t in np.arange(0.0, d, every))])
    return f"{answer} A B C D E F"


def _columns(items: list[dict[str, Any]], baseline: dict[str, str] | None = None) -> dict[str, list]:
    cols = {"task": [i["task"] for i in items], "answer": [i["answer"] for i in items],
            "answers": [list(i["answers"]) for i in items], "duration": [i.get("duration") for i in items],
            "question": [i["question"] for i in items], "qa_type": [i.get("qa_type") for i in items]}
    if baseline is not None:
        cols["baseline"] = [baseline.get(str(i["id"])) for i in items]
    return cols


def baseline_problem(configs: list[RewardConfig], baseline: dict[str, str] | None) -> str | None:
    """Why ``configs`` cannot be scored without a baseline answer per question, or ``None`` when they can."""
    relative = [c.name for c in configs if needs_baseline(c)]
    if relative and baseline is None:
        return (f"reward config(s) {relative} score relative to a baseline answer: give one per question "
                "(--baseline RUN_OR_JSONL, e.g. the greedy predictions of the model the completions were sampled from)")
    return None


def run_experiment(bench: pd.DataFrame, completions: dict[str, list[str]], configs: list[RewardConfig],
                   max_probe_items: int = 100, semantic_model: str | None = None,
                   baseline: dict[str, str] | None = None) -> dict[str, Any]:
    """Everything the ``rewards`` command reports, as a JSON-ready dict. ``baseline``: one answer per question id,
    which relative rewards are scored against (needed when a config has any; completions of questions without one
    are then left out, unless no baseline-reading reward scores their task)."""
    by_id = {str(r["id"]): r for r in bench.to_dict("records")}
    problem = baseline_problem(configs, baseline)
    if problem:
        raise ValueError(problem)
    if baseline is not None:
        needed = baseline_tasks(RewardConfig(rewards=[s for c in configs for s in c.rewards]))
        by_id = {k: v for k, v in by_id.items() if k in baseline or (needed is not None and v["task"] not in needed)}
    pairs = [(by_id[k], c) for k, cs in sorted(completions.items()) if k in by_id for c in cs]
    if not pairs:
        raise ValueError("no completion matches a benchmark id" + (" with a baseline answer" if baseline is not None else ""))
    items = [p[0] for p in pairs]
    texts = [p[1] for p in pairs]
    scorer = TextScorer(semantic_model)
    metric = np.array([item_metric(i, c, scorer) for i, c in pairs])
    cols = _columns(items, baseline)
    probe_items = []
    for task in sorted({i["task"] for i in items}):
        probe_items += [i for i in by_id.values() if i["task"] == task][:max_probe_items]
    result: dict[str, Any] = {"n_completions": len(pairs), "n_items": len({i["id"] for i in items}), "configs": {}}
    from scipy.stats import spearmanr

    for cfg in configs:
        f = composite_reward(cfg)
        rewards = np.array([np.nan if r is None else r for r in f(texts, **cols)], dtype=float)
        per_task: dict[str, Any] = {}
        for task in sorted({i["task"] for i in items}):
            mask = np.array([i["task"] == task for i in items]) & ~np.isnan(rewards)
            if not mask.any():
                continue
            r, m = rewards[mask], metric[mask]
            rho = spearmanr(r, m).statistic if np.std(r) > 0 and np.std(m) > 0 else float("nan")
            groups = defaultdict(list)
            for i, v in zip(np.array(items, dtype=object)[mask], r):
                groups[i["id"]].append(v)
            multi = [g for g in groups.values() if len(g) >= 2]
            per_task[task] = {
                "n": int(mask.sum()), "mean": float(r.mean()), "std": float(r.std()),
                "quantiles": [float(q) for q in np.quantile(r, [0, 0.25, 0.5, 0.75, 1])],
                "spearman_vs_metric": None if np.isnan(rho) else float(rho),
                "zero_variance_groups": (sum(np.ptp(g) == 0 for g in multi) / len(multi)) if multi else None,
                "values": r.round(4).tolist(),
            }
        probe_scores: dict[str, dict[str, float]] = defaultdict(dict)
        for name in PROBES:
            ptexts = [probes(i)[name] for i in probe_items]
            vals = f(ptexts, **_columns(probe_items, baseline))
            for task in sorted({i["task"] for i in probe_items}):
                v = [x for x, i in zip(vals, probe_items) if i["task"] == task and x is not None]
                if v:
                    probe_scores[task][name] = float(np.mean(v))
        result["configs"][cfg.name] = {"per_task": per_task, "probes": dict(probe_scores),
                                       "components": [s.name for s in cfg.rewards]}
    return result


def plot_distributions(result: dict[str, Any], path: Path) -> None:
    """Histograms: one row per task, one column per config."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["configs"])
    tasks = sorted({t for c in result["configs"].values() for t in c["per_task"]})
    fig, axes = plt.subplots(len(tasks), len(names), figsize=(3.2 * len(names), 1.9 * len(tasks)), squeeze=False)
    for j, name in enumerate(names):
        for i, task in enumerate(tasks):
            ax = axes[i][j]
            pt = result["configs"][name]["per_task"].get(task)
            if pt:
                ax.hist(pt["values"], bins=20, color=f"C{j}")
                rho = pt["spearman_vs_metric"]
                ax.set_title(f"{name} · {task}  ρ={rho:.2f}" if rho is not None else f"{name} · {task}", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
