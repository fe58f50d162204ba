"""Stage 2 — LM adaptation: projector and LM learn timestamped captions generated from the annotations,
e.g. ``[0:00-0:25] piano and bass, 96 bpm. [0:25] the drums enter. …`` (encoder frozen)."""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import Trainer, TrainingArguments

from stages.common import JsonlLogger, barrier, load_must, mark_done, rank_world, resume_point, save_must, stage_dir, trainer_kwargs
from stages.config import TrainConfig
from stages.data import TrainData, caption
from stages.sequences import AudioCollator, PromptTargetDataset

__all__ = ["LMStageRecipe", "CAPTION_QUESTION"]

log = logging.getLogger(__name__)
CAPTION_QUESTION = "Describe the music with timestamps."


class LMStageRecipe:
    """setup → train → save_checkpoint → cleanup."""

    def __init__(self, cfg: TrainConfig, out: Path):
        self.cfg, self.out, self.sdir = cfg, out, stage_dir(out, 2)

    def setup(self) -> None:
        """Load stage 1, freeze the encoder, cache features, build caption sequences and the Trainer."""
        self.sdir.mkdir(parents=True, exist_ok=True)
        self.model, self.processor = load_must(stage_dir(self.out, 1) / "final")
        for p in self.model.model.encoder.parameters():
            p.requires_grad_(False)
        if not self.cfg.stage2.train_lm:
            for p in self.model.model.language_model.parameters():
                p.requires_grad_(False)
        self.data = TrainData(self.cfg.bench, self.out, self.cfg.max_train_tracks, self.cfg.seed)
        tracks = self.data.tracks("train")
        rank, world = rank_world()
        feats = self.data.features(self.model, "stage1", tracks, rank, world)
        rows = [{"prompt": self.processor.prompt(CAPTION_QUESTION, r["duration"]),
                 "target": self.processor.answer(caption(self.data.annotation(r["track_id"]))), "track_id": r["track_id"]}
                for r in tracks.to_dict("records")]
        st = self.cfg.stage2
        self.trainer = Trainer(model=self.model, args=TrainingArguments(**trainer_kwargs(st, self.sdir, self.cfg)),
                               train_dataset=PromptTargetDataset(rows, self.processor.tokenizer),
                               data_collator=AudioCollator(self.processor.tokenizer.pad_token_id, feats),
                               callbacks=[JsonlLogger(self.sdir / "metrics.jsonl", 2)])

    def train(self) -> None:
        """Train (resuming from the last checkpoint if one exists)."""
        self.trainer.train(resume_from_checkpoint=resume_point(self.sdir))

    def save_checkpoint(self) -> None:
        """``final/`` (safetensors) and the done marker."""
        save_must(self.model, self.processor, self.sdir / "final")
        mark_done(self.out, 2, {"train_loss": self.trainer.state.log_history[-1].get("train_loss")})
        barrier()

    def cleanup(self) -> None:
        """Release the trainer."""
        del self.trainer
