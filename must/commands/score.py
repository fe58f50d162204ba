"""``must-bench score PREDICTIONS --bench BENCH [--json OUT]``: score answers as the published benchmarks do."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``score`` subcommand."""
    p = sub.add_parser("score", help="score predictions against a benchmark (MusTBench metrics + MUSIC-AVQA accuracy)",
                       description=__doc__)
    p.add_argument("predictions", help="JSONL (id|question_id, prediction), Parquet or CSV")
    p.add_argument("--bench", required=True, help="benchmark Parquet, built benchmark directory, or MUSIC-AVQA question JSON")
    p.add_argument("--split", default=None, help="split to score (default: all rows of a file, 'test' for a directory)")
    p.add_argument("--json", dest="json_out", default=None, help="write the score summary here")
    p.add_argument("--items", default=None, help="write per-item results (JSONL) here")
    p.add_argument("--semantic-model", default=None,
                   help="local text-encoder checkpoint for TAD semantic similarity (CLAP or sentence encoder)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Score and print; returns the process exit code."""
    from bench.io import load_bench, read_predictions
    from bench.scoring import score_predictions
    from bench.tables import avqa_table, score_table

    console = Console()
    bench = load_bench(args.bench, args.split)
    preds = read_predictions(args.predictions)
    known = set(bench["id"])
    extra = [k for k in preds if k not in known]
    if extra:
        console.print(f"[yellow]{len(extra)} prediction id(s) not in the benchmark, ignored (e.g. {extra[0]!r})")
    results, summary = score_predictions(bench, preds, args.semantic_model, progress=True)
    if any(k != "AVQA" for k in summary.get("n", {}) if k != "total"):
        console.print(score_table(summary))
    if "AVQA" in summary:
        console.print(avqa_table(summary))
    missing = sum(summary["missing"].values())
    if missing:
        console.print(f"[yellow]{missing} item(s) had no prediction and count as wrong")
    if "meteor_matching" in summary:
        console.print(f"TAD: METEOR with {summary['meteor_matching']} matching; semantic model {summary['semantic_model']}")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(summary, indent=2))
    if args.items:
        with open(args.items, "w") as f:
            for r in results:
                f.write(json.dumps(r.to_dict()) + "\n")
    return 0
