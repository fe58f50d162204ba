"""``must-bench rewards --bench DIR --completions RUN_OR_JSONL [...] --config YAML [...] [--baseline RUN_OR_JSONL]
--out DIR``: compare rewards."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``rewards`` subcommand."""
    p = sub.add_parser("rewards", help="compare reward configs on completions: distributions, Spearman vs metric, "
                       "dead groups, hacking probes", description=__doc__)
    p.add_argument("--bench", required=True, help="benchmark directory or Parquet")
    p.add_argument("--split", default=None)
    p.add_argument("--completions", nargs="+", required=True,
                   help="evaluation run directories or JSONL (id + prediction/completion/completions); several add samples")
    p.add_argument("--config", nargs="+", default=["rewards/default.yaml"], help="reward config YAML(s), compared side by side")
    p.add_argument("--baseline", default=None,
                   help="evaluation run directory or JSONL with one answer per question (e.g. greedy predictions), "
                   "which relative rewards (relative: true) are scored against")
    p.add_argument("--out", required=True)
    p.add_argument("--list", action="store_true", help="only list the registered rewards")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the experiment, print the tables, write rewards.json and rewards.png."""
    from bench.io import load_bench
    from rewards import REWARDS, load_reward_config
    from rewards.experiment import PROBES, baseline_problem, load_completions, plot_distributions, run_experiment

    console = Console(width=max(Console().width, 120))
    if args.list:
        for name, fn in sorted(REWARDS.items()):
            console.print(f"{name:20s} {(fn.__doc__ or '').splitlines()[0]}")
        return 0
    configs = [load_reward_config(c) for c in args.config]
    baseline = {k: v[0] for k, v in load_completions([args.baseline]).items()} if args.baseline else None
    problem = baseline_problem(configs, baseline)
    if problem:
        console.print(f"[red]{problem}")
        return 2
    result = run_experiment(load_bench(args.bench, args.split), load_completions(args.completions), configs,
                            baseline=baseline)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rewards.json").write_text(json.dumps(result, indent=1))
    plot_distributions(result, out / "rewards.png")
    t = Table(title=f"rewards on {result['n_completions']} completions of {result['n_items']} questions")
    for col in ("config", "task", "n", "mean", "std", "Spearman vs metric", "dead groups"):
        t.add_column(col, justify="left" if col in ("config", "task") else "right")
    for name, c in result["configs"].items():
        for task, pt in c["per_task"].items():
            rho, dead = pt["spearman_vs_metric"], pt["zero_variance_groups"]
            t.add_row(name, task, str(pt["n"]), f"{pt['mean']:.3f}", f"{pt['std']:.3f}",
                      "–" if rho is None else f"{rho:.2f}", "–" if dead is None else f"{100 * dead:.0f}%")
    console.print(t)
    p = Table(title="hacking probes: mean reward per task (compare with 'reference')")
    p.add_column("config")
    p.add_column("task")
    for name in PROBES:
        p.add_column(name, justify="right")
    for name, c in result["configs"].items():
        for task, vals in c["probes"].items():
            p.add_row(name, task, *(f"{vals[k]:.2f}" if k in vals else "–" for k in PROBES))
    console.print(p)
    console.print(f"written {out}/rewards.json and {out}/rewards.png")
    return 0
