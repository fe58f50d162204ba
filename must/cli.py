"""The ``must-bench`` command line: one subcommand per job, each in :mod:`must.commands`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from rich.logging import RichHandler

from must.schema import BenchFormatError

__all__ = ["main", "build_parser"]

COMMANDS = ["build", "annotate", "evaluate", "report", "rewards", "score", "train"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="must-bench",
        description="Temporal grounding in music: build the benchmark, evaluate models, score, train.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"must.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``must-bench`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(show_path=False, show_time=False)])
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (BenchFormatError, FileNotFoundError) as e:
        logging.getLogger("must").error("%s", e)
        return 2
    except KeyboardInterrupt:
        logging.getLogger("must").error("interrupted; completed work is kept and the same command resumes")
        return 130


if __name__ == "__main__":
    sys.exit(main())
