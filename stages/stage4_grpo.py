"""Stage 4 — GRPO with TRL's ``GRPOTrainer`` and rewards from ``rewards/`` (timestamp reward for TSG,
interval IoU for MTR, accuracy for the multiple-choice tasks, format …); group size, β and temperature
from the config. TRL has no audio input path: prompts name their audio with ``<|audio_key|> K`` and the
model resolves K from its feature store (see :mod:`must.model.modeling`), so prompts stay plain text."""

from __future__ import annotations

import logging
from pathlib import Path

import datasets
from peft import LoraConfig
from trl import GRPOConfig, GRPOTrainer

from rewards import build_reward_funcs, load_reward_config
from stages.common import JsonlLogger, finish_lora_stage, load_must, rank_world, resume_point, stage_dir, trainer_kwargs
from stages.config import TrainConfig
from stages.data import TrainData
from stages.stage3_sft import LORA_TARGETS, balanced

__all__ = ["GRPOStageRecipe"]

log = logging.getLogger(__name__)


class GRPOStageRecipe:
    """setup → train → save_checkpoint → cleanup."""

    def __init__(self, cfg: TrainConfig, out: Path):
        self.cfg, self.out, self.sdir = cfg, out, stage_dir(out, 4)

    def setup(self) -> None:
        """Load stage 3, fill the audio store, build the prompt dataset, rewards and the GRPO trainer."""
        self.sdir.mkdir(parents=True, exist_ok=True)
        model, self.processor = load_must(stage_dir(self.out, 3) / "final")
        for p in model.model.encoder.parameters():
            p.requires_grad_(False)
        self.data = TrainData(self.cfg.bench, self.out, self.cfg.max_train_tracks, self.cfg.seed)
        tracks = self.data.tracks("train")
        rank, world = rank_world()
        feats = self.data.features(model, "stage1", tracks, rank, world)
        keys = {tid: k for k, tid in enumerate(tracks.track_id)}
        model.audio_store.update({keys[t]: f for t, f in feats.items()})
        st = self.cfg.stage4
        rows = [{"prompt": self.processor.prompt(e["question"], e["duration"], e["instruction"], key=keys[e["track_id"]]),
                 **{k: e[k] for k in ("task", "answer", "answers", "duration", "question", "qa_type")}}
                for e in balanced(self.data.examples("train", st.tasks), self.cfg.seed)]
        funcs, weights = build_reward_funcs(load_reward_config(st.rewards))
        tok = self.processor.tokenizer
        args = GRPOConfig(**trainer_kwargs(st, self.sdir, self.cfg), num_generations=st.num_generations, beta=st.beta,
                          temperature=st.temperature, max_completion_length=st.max_completion_length,
                          reward_weights=weights, log_completions=False, bf16=False)
        lora = LoraConfig(r=st.lora_r, lora_alpha=st.lora_alpha, target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
        self.trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=datasets.Dataset.from_list(rows),
                                   processing_class=tok, peft_config=lora,
                                   callbacks=[JsonlLogger(self.sdir / "metrics.jsonl", 4)])

    def train(self) -> None:
        """Train (resuming from the last checkpoint if one exists)."""
        self.trainer.train(resume_from_checkpoint=resume_point(self.sdir))

    def save_checkpoint(self) -> None:
        """Merge LoRA into the weights, save ``final/``, validate on val questions."""
        finish_lora_stage(4, self.out, self.trainer, self.processor, self.data, self.cfg)

    def cleanup(self) -> None:
        """Release the trainer."""
        del self.trainer
