"""``must-bench train --stage 1|2|3|4|all --config FILE --out DIR [key=value …]``: the MusT training pipeline.

Launches ``torchrun --nproc_per_node <nproc> -m stages.run`` (DeepSpeed ZeRO via the HF Trainer; on CPU with
``DS_ACCELERATOR=cpu``). Every stage reads the previous stage's ``final/`` checkpoint; rerunning the same
command after a kill skips finished stages and resumes the interrupted one from its last checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

__all__ = ["add_parser", "run", "launch_command"]

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``train`` subcommand."""
    p = sub.add_parser("train", help="run the four-stage MusT training pipeline under DeepSpeed", description=__doc__)
    p.add_argument("--stage", default="all", help="1, 2, 3, 4, a list like 3,4, or all")
    p.add_argument("--config", required=True, help="e.g. configs/stages/smoke.yaml or configs/stages/default.yaml")
    p.add_argument("--out", required=True, help="run directory (resumable)")
    p.add_argument("--nproc", type=int, default=None, help="processes (overrides the config's nproc)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.set_defaults(func=run)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(config: str, out: str, stage: str, nproc: int, overrides: list[str]) -> list[str]:
    """The torchrun command line for a run."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1",
            "--master_port", str(_free_port()), "-m", "stages.run", "--stage", stage, "--config", config, "--out", out,
            *overrides]


def run(args: argparse.Namespace) -> int:
    """Build the benchmark if needed, then launch the stages."""
    import torch

    from bench.build.config import BuildConfig
    from bench.build.pipeline import build
    from must.config import load_config
    from must.threads import threads_per_process, warn_if_oversubscribed
    from stages.config import TrainConfig

    cfg = load_config(TrainConfig, args.config, args.overrides)  # fail on typos before launching anything
    if not (Path(cfg.bench) / "parquet").exists():
        if not cfg.build_config:
            raise FileNotFoundError(f"benchmark {cfg.bench} not found and no build_config to build it")
        log.info("building the benchmark %s from %s", cfg.bench, cfg.build_config)
        build(load_config(BuildConfig, cfg.build_config), cfg.bench, progress=False)
    env = dict(os.environ)
    if not torch.cuda.is_available():
        env.setdefault("DS_ACCELERATOR", "cpu")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    nproc = args.nproc or cfg.nproc
    # torchrun would set OMP_NUM_THREADS=1 for every process of a multi-process run; share the usable CPUs instead,
    # unless the user chose a number
    threads = threads_per_process(nproc)
    warn_if_oversubscribed(threads, nproc)
    env.setdefault("OMP_NUM_THREADS", str(threads))
    config = args.config if Path(args.config).exists() else str(__import__("configs").config_path(args.config))
    cmd = launch_command(config, args.out, args.stage, nproc, args.overrides)
    log.info("launching: %s", " ".join(cmd[2:]))
    return subprocess.call(cmd, env=env)
