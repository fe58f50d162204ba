"""``must-bench evaluate --model SPEC --bench DIR_OR_PARQUET --out RUN``: run a model on the benchmark."""

from __future__ import annotations

import argparse
import logging

from rich.console import Console

__all__ = ["add_parser", "run"]

log = logging.getLogger(__name__)


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``evaluate`` subcommand."""
    p = sub.add_parser("evaluate", help="evaluate a model (baseline, hf:, openai:, python:, jsonl:, must:) on a benchmark",
                       description=__doc__)
    p.add_argument("--model", required=True, help="random | prior | constant | text-only | dsp | oracle | hf:PATH | "
                   "openai:URL[#model] | python:module:function | jsonl:FILE | must:CHECKPOINT")
    p.add_argument("--model-args", default=None, help="adapter arguments k=v,k=v (e.g. concurrency=8,timeout=60)")
    p.add_argument("--bench", required=True, help="built benchmark directory or Parquet")
    p.add_argument("--split", default=None, help="split to evaluate (default: test for a directory, all rows of a file)")
    p.add_argument("--tasks", default=None, help="comma-separated tasks, e.g. TSG,MTR")
    p.add_argument("--limit", type=int, default=None, help="at most N items per task")
    p.add_argument("--shard", type=_shard, default=(0, 1), help="i/n: evaluate every n-th item starting at i")
    p.add_argument("--prompts", default=None, help="prompt template YAML (default configs/prompts/default.yaml)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-audio-seconds", type=float, default=900.0, help="longer audio is recorded as an item error")
    p.add_argument("--retry-errors", action="store_true", help="redo items that ended in an error in an earlier run")
    p.add_argument("--semantic-model", default=None, help="local text encoder for TAD semantic similarity")
    p.add_argument("--out", required=True, help="run directory (the same command resumes an interrupted run)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the score table."""
    from bench.evaluate.runner import EvalConfig, evaluate
    from bench.io import load_bench
    from bench.tables import avqa_table, score_table
    from must.models.base import load_model, parse_model_args
    from must.schema import BenchFormatError
    from must.threads import warn_if_oversubscribed

    cfg = EvalConfig(model=args.model, bench=args.bench, out=args.out, split=args.split,
                     tasks=args.tasks.split(",") if args.tasks else None, limit=args.limit, shard=args.shard,
                     prompts=args.prompts, batch_size=args.batch_size, max_audio_seconds=args.max_audio_seconds,
                     retry_errors=args.retry_errors, semantic_model=args.semantic_model)
    if args.model.startswith(("must:", "hf:")):  # local torch models run on every core unless told otherwise
        import torch

        warn_if_oversubscribed(torch.get_num_threads())
    model = load_model(args.model, **parse_model_args(args.model_args))
    if getattr(model, "wants_train", False):
        try:
            model.fit(load_bench(args.bench, "train"))
        except BenchFormatError:
            log.warning("%s: no train split; %s falls back to uninformed defaults", args.bench, model.name)
            model.fit(None)
    try:
        summary = evaluate(cfg, model, progress=not args.no_progress)
    finally:
        model.close()
    console = Console()
    if summary.get("partial"):
        console.print(f"shard {args.shard[0]}/{args.shard[1]} finished; run the other shards to get scores")
        return 0
    if any(k != "AVQA" for k in summary.get("n", {}) if k != "total"):
        console.print(score_table(summary, title=f"{model.name} — MusTBench scores (%)"))
    if "AVQA" in summary:
        console.print(avqa_table(summary))
    errors = sum(summary.get("errors", {}).values())
    if errors:
        console.print(f"[yellow]{errors} item(s) ended in an error (recorded with the reason in {args.out}/predictions*.jsonl)")
    console.print(f"scores: {args.out}/scores.json")
    return 0
