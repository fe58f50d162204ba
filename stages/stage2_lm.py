"""Stage 2 — LM adaptation: projector and LM learn timestamped captions generated from the annotations,
e.g. ``[0:00-0:25] piano and bass, 96 bpm. [0:25] the drums enter. …``, and (``event_captions``) the same changes
each before its time, ``the drums enter at 0:25 ; …`` (encoder frozen; MusT's LM is trained fully, an existing
audio-LM through LoRA)."""

from __future__ import annotations

import logging
from pathlib import Path

from peft import get_peft_model
from transformers import TrainingArguments

from must.model.heard import heard_for
from stages.common import (JsonlLogger, StageTrainer, barrier, features_tag, finish_lora_stage, freeze_audio_encoder,
                           load_stage_model, lora_config, mark_done, rank_world, resume_point, save_any, stage_dir,
                           trainer_kwargs)
from stages.config import TrainConfig
from stages.data import TrainData, caption_examples
from stages.sequences import AudioCollator, must_dataset

__all__ = ["LMStageRecipe"]

log = logging.getLogger(__name__)


class LMStageRecipe:
    """setup → train → save_checkpoint → cleanup."""

    def __init__(self, cfg: TrainConfig, out: Path):
        self.cfg, self.out, self.sdir = cfg, out, stage_dir(out, 2)
        self.kind = cfg.model.kind

    def setup(self) -> None:
        """Load stage 1, freeze the encoder, build caption sequences and the Trainer."""
        self.sdir.mkdir(parents=True, exist_ok=True)
        self.model, self.processor = load_stage_model(self.cfg, stage_dir(self.out, 1) / "final", first_projector_stage=True)
        freeze_audio_encoder(self.kind, self.model)
        self.data = TrainData(self.cfg.bench, self.out, self.cfg.max_train_tracks, self.cfg.seed)
        st = self.cfg.stage2
        examples = caption_examples(self.data, self.data.tracks("train").to_dict("records"), st.event_captions, self.cfg.seed)
        if self.kind == "must":
            if not st.train_lm:
                for p in self.model.model.language_model.parameters():
                    p.requires_grad_(False)
            feats = self.data.features(self.model, features_tag(self.model), self.data.tracks("train"), *rank_world())
            heard = {t: heard_for(self.model, f) for t, f in feats.items()}
            items = [{"question": q, "instruction": "", "duration": r["duration"], "heard": heard[r["track_id"]],
                      "target": self.processor.answer(text), "track_id": r["track_id"]} for r, q, text in examples]
            dataset = must_dataset(self.processor, items, st.pack_turns)
            collator = AudioCollator(self.processor.tokenizer.pad_token_id, feats)
        else:
            from stages.hf_audio import HFChatDataset, HFCollator, chat_prompt

            self.model = get_peft_model(self.model, lora_config(self.kind, 16, 32))
            rows = [{"prompt": chat_prompt(self.processor, q, ""), "target": " " + text, "track_id": r["track_id"],
                     "audio": r["audio"]} for r, q, text in examples]
            dataset, collator = HFChatDataset(rows), HFCollator(self.processor, self.data)
        self.trainer = StageTrainer(model=self.model, args=TrainingArguments(**trainer_kwargs(st, self.sdir, self.cfg)),
                                    train_dataset=dataset, data_collator=collator,
                                    callbacks=[JsonlLogger(self.sdir / "metrics.jsonl", 2)], autocast=st.autocast)

    def train(self) -> None:
        """Train (resuming from the last checkpoint if one exists)."""
        self.trainer.train(resume_from_checkpoint=resume_point(self.sdir))

    def save_checkpoint(self) -> None:
        """``final/`` (safetensors) and the done marker."""
        if self.kind != "must":
            finish_lora_stage(2, self.out, self.trainer, self.processor, self.cfg, check=False)
            return
        save_any(self.kind, self.model, self.processor, self.sdir / "final")
        history = self.trainer.state.log_history
        mark_done(self.out, 2, {"train_loss": history[-1].get("train_loss") if history else None})
        barrier()

    def cleanup(self) -> None:
        """Release the trainer."""
        del self.trainer
