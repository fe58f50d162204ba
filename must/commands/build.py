"""``must-bench build --config configs/bench/<name>.yaml --out DIR [--from AUDIO_DIR | --redraft]``: build a benchmark,
or draft a finished build's questions again under a new task config."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``build`` subcommand."""
    p = sub.add_parser("build", help="build a benchmark (synthetic renders, or real audio with --from)", description=__doc__)
    p.add_argument("--config", required=True, help="build config YAML (e.g. configs/bench/small.yaml)")
    p.add_argument("--out", required=True, help="output directory (an interrupted build resumes here)")
    p.add_argument("--from", dest="source", default=None,
                   help="folder of real audio (optional stems / JAMS; Slakh and MedleyDB layouts understood)")
    p.add_argument("--force", action="store_true", help="delete OUT first and rebuild from scratch")
    p.add_argument("--redraft", action="store_true",
                   help="draft the questions of the finished build in OUT again from its JAMS (the config may change "
                        "only tasks, splits and workers; no audio is rendered or annotated)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. tracks=8 compose.max_seconds=40")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build and print the summary."""
    from bench.build.config import BuildConfig
    from bench.build.pipeline import build, redraft
    from must.config import load_config

    cfg = load_config(BuildConfig, args.config, args.overrides)
    if args.redraft:
        if args.force or args.source:
            raise SystemExit("must-bench build: --redraft reuses OUT's audio and JAMS; it takes neither --force nor --from")
        summary = redraft(cfg, args.out, progress=not args.no_progress)
    else:
        summary = build(cfg, args.out, args.source, progress=not args.no_progress, force=args.force)
    console = Console()
    t = Table(title=f"benchmark {summary['name']}: {summary['tracks']} tracks, {summary['items']} questions")
    t.add_column("task")
    for s in summary["splits"]:
        t.add_column(s, justify="right")
    for task, counts in summary["counts"].items():
        t.add_row(task, *(str(counts.get(s, 0)) for s in summary["splits"]))
    console.print(t)
    speed = ", ".join(f"{k} {v:.0f}×" for k, v in summary["speed_x_realtime"].items())
    console.print(f"speed (× realtime): {speed}")
    for split, rep in summary["balance"].items():
        letters = {k: max(v.values()) for k, v in rep.items() if k.endswith("_letters")}
        console.print(f"{split}: max letter share {letters}; MTR coverage {rep.get('MTR_mean_coverage')}")
    if summary["failures"]:
        console.print(f"[yellow]{len(summary['failures'])} track(s) failed (see {args.out}/failures.json); rerun to retry")
    console.print(f"written to {args.out} (parquet/, hf/, audio/, jams/, summary.md)")
    return 0
