"""``must-bench report RUN [RUN ...] --out DIR``: side-by-side Markdown + JSON + PNG report of runs."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``report`` subcommand."""
    p = sub.add_parser("report", help="compare evaluation runs side by side (Markdown, JSON, plots)", description=__doc__)
    p.add_argument("runs", nargs="+", help="run directories written by must-bench evaluate")
    p.add_argument("--out", required=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the report and print the leaderboard."""
    from bench.evaluate.report import COLUMNS, leaderboard_rows, load_run, write_report

    write_report(args.runs, args.out)
    t = Table(title="Leaderboard (MusTBench order, %)")
    t.add_column("model")
    for _, label in COLUMNS:
        t.add_column(label, justify="right")
    for row in leaderboard_rows([load_run(p) for p in args.runs]):
        t.add_row(*row)
    console = Console(width=max(Console().width, 110))
    console.print(t)
    console.print(f"report: {args.out}/report.md")
    return 0
