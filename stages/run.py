"""Entry point of a training run inside each (torchrun) process: ``python -m stages.run --stage all …``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import torch
import yaml
from transformers import set_seed

from must.config import load_config, to_dict
from must.environment import environment, environment_changes
from must.threads import threads_per_process
from stages.common import done_info, is_done, rank_world
from stages.config import TrainConfig
from stages.stage1_encoder import EncoderStageRecipe
from stages.stage2_lm import LMStageRecipe
from stages.stage3_sft import SFTStageRecipe
from stages.stage4_grpo import GRPOStageRecipe

__all__ = ["RECIPES", "run_stages", "main"]

log = logging.getLogger("stages")
RECIPES = {1: EncoderStageRecipe, 2: LMStageRecipe, 3: SFTStageRecipe, 4: GRPOStageRecipe}


def run_stages(cfg: TrainConfig, out: Path, stages: list[int]) -> None:
    """Run the given stages in order; a finished stage is skipped, an interrupted one resumes."""
    for n in stages:
        if is_done(out, n):
            log.info("stage %d already done; skipping", n)
            continue
        if n > 1:
            if not is_done(out, n - 1):
                raise RuntimeError(f"stage {n} needs stage {n - 1}'s checkpoint in {out}; run --stage {n - 1} first")
            changes = environment_changes(done_info(out, n - 1).get("environment", {}), environment())
            if changes:  # a checkpoint carried to another machine or venv: say so before results differ unexplained
                log.warning("stage %d starts from stage %d's checkpoint, trained in another environment: %s", n,
                            n - 1, "; ".join(changes))
        log.info("stage %d: %s", n, sys.modules[RECIPES[n].__module__].__doc__.strip().splitlines()[0])
        set_seed(cfg.seed)  # LoRA and heads are initialised in setup(), before the Trainer seeds anything
        recipe = RECIPES[n](cfg, out)
        recipe.setup()
        if getattr(cfg, f"stage{n}").max_steps > 0:
            recipe.train()
        else:  # ablations: the stage passes its input on untrained (a fresh encoder, an unadapted LM, …)
            log.info("stage %d: max_steps is 0, saving without training", n)
        recipe.save_checkpoint()
        recipe.cleanup()


def die_with_launcher() -> None:
    """Exit when the launcher dies: torchrun starts workers in their own session, so killing the launcher's
    process group (Ctrl-C of ``must-bench train``, a SIGKILL) would otherwise leave an orphan still training."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the launcher died before prctl took effect
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, configure threads and logging, run."""
    die_with_launcher()
    p = argparse.ArgumentParser(prog="python -m stages.run")
    p.add_argument("--stage", default="all")
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    rank, world = rank_world()
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, format=f"[rank {rank}] %(message)s")
    torch.set_num_threads(threads_per_process(world))
    if world > 1 and not torch.distributed.is_initialized():
        import deepspeed

        # ranks share feature caching before any Trainer exists, so the process group is needed from the start
        deepspeed.init_distributed()
    cfg = load_config(TrainConfig, args.config, args.overrides)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        (out / "train_config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    stages = [1, 2, 3, 4] if args.stage == "all" else [int(s) for s in args.stage.split(",")]
    run_stages(cfg, out, stages)
    return 0


if __name__ == "__main__":
    sys.exit(main())
