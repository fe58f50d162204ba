"""Stage 3 — SFT: LoRA (peft) on the LM for the five tasks + AVQA of the train split; answer-only loss;
task-balanced (each task oversampled to the size of the largest); the projector is trained fully."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from peft import LoraConfig, get_peft_model
from transformers import Trainer, TrainingArguments

from stages.common import JsonlLogger, finish_lora_stage, load_must, rank_world, resume_point, stage_dir, trainer_kwargs
from stages.config import TrainConfig
from stages.data import TrainData
from stages.sequences import AudioCollator, PromptTargetDataset

__all__ = ["SFTStageRecipe", "LORA_TARGETS", "balanced"]

log = logging.getLogger(__name__)
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def balanced(examples: list[dict], seed: int) -> list[dict]:
    """Examples with every task oversampled (seeded) to the count of the most frequent task."""
    by_task: dict[str, list] = {}
    for e in examples:
        by_task.setdefault(e["task"], []).append(e)
    top = max(len(v) for v in by_task.values())
    rng = np.random.default_rng(seed)
    out = []
    for task in sorted(by_task):
        v = by_task[task]
        out += v + [v[int(i)] for i in rng.integers(0, len(v), top - len(v))]
    return [out[int(i)] for i in rng.permutation(len(out))]


class SFTStageRecipe:
    """setup → train → save_checkpoint → cleanup."""

    def __init__(self, cfg: TrainConfig, out: Path):
        self.cfg, self.out, self.sdir = cfg, out, stage_dir(out, 3)

    def setup(self) -> None:
        """Load the previous stage, add LoRA, build balanced answer-only sequences and the Trainer."""
        self.sdir.mkdir(parents=True, exist_ok=True)
        self.base, self.processor = load_must(stage_dir(self.out, 2) / "final")
        for p in self.base.model.encoder.parameters():
            p.requires_grad_(False)
        st = self.cfg.stage3
        lora = LoraConfig(r=st.lora_r, lora_alpha=st.lora_alpha, lora_dropout=st.lora_dropout, target_modules=LORA_TARGETS,
                          modules_to_save=["projector"], task_type="CAUSAL_LM")
        self.model = get_peft_model(self.base, lora)
        self.data = TrainData(self.cfg.bench, self.out, self.cfg.max_train_tracks, self.cfg.seed)
        rank, world = rank_world()
        feats = self.data.features(self.base, "stage1", self.data.tracks("train"), rank, world)
        rows = [{"prompt": self.processor.prompt(e["question"], e["duration"], e["instruction"]),
                 "target": self.processor.answer(e["answer"]), "track_id": e["track_id"]}
                for e in balanced(self.data.examples("train", st.tasks), self.cfg.seed)]
        self.trainer = Trainer(model=self.model, args=TrainingArguments(**trainer_kwargs(st, self.sdir, self.cfg)),
                               train_dataset=PromptTargetDataset(rows, self.processor.tokenizer),
                               data_collator=AudioCollator(self.processor.tokenizer.pad_token_id, feats),
                               callbacks=[JsonlLogger(self.sdir / "metrics.jsonl", 3)])

    def train(self) -> None:
        """Train (resuming from the last checkpoint if one exists)."""
        self.trainer.train(resume_from_checkpoint=resume_point(self.sdir))

    def save_checkpoint(self) -> None:
        """Merge LoRA into the weights, save ``final/``, validate on val questions."""
        finish_lora_stage(3, self.out, self.trainer, self.processor, self.data, self.cfg)

    def cleanup(self) -> None:
        """Release the trainer."""
        del self.trainer
