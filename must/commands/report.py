"""``must-bench report RUN [RUN ...] [--pair BASE OTHER ...] --out DIR``: side-by-side Markdown + JSON + PNG report of
runs; with ``--pair`` once per training seed, the difference between two methods over all the seeds."""

from __future__ import annotations

import argparse
import logging

from rich.console import Console
from rich.table import Table

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``report`` subcommand."""
    p = sub.add_parser("report", help="compare evaluation runs side by side (Markdown, JSON, plots)", description=__doc__)
    p.add_argument("runs", nargs="*", help="run directories written by must-bench evaluate; each later one is "
                   "paired with the first")
    p.add_argument("--pair", nargs=2, action="append", default=[], metavar=("BASE", "OTHER"),
                   help="two runs of one seed (e.g. stage 3 and stage 4 of one training); given once per seed, the "
                   "report adds OTHER - BASE over all the seeds with an error counting questions and seeds")
    p.add_argument("--out", required=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the report and print the leaderboard."""
    from bench.evaluate.report import COLUMNS, leaderboard_rows, write_report

    if not args.runs and not args.pair:
        logging.getLogger("must").error("must-bench report: give run directories, --pair BASE OTHER, or both")
        return 2
    data = write_report(args.runs, args.out, [tuple(p) for p in args.pair])
    t = Table(title="Leaderboard (MusTBench order, %)")
    t.add_column("model")
    for _, label in COLUMNS:
        t.add_column(label, justify="right")
    for row in leaderboard_rows(data["runs"]):
        t.add_row(*row)
    console = Console(width=max(Console().width, 110))
    console.print(t)
    console.print(f"report: {args.out}/report.md")
    return 0
