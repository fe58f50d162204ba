"""Stage 3 — SFT: LoRA (peft) on the LM for the five tasks + AVQA of the train split (optionally with more
questions drawn from the train annotations); answer-only loss; task-balanced (each task oversampled to the size
of the largest); the projector (and MusT's embeddings and output head) are trained fully."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from peft import get_peft_model
from transformers import TrainingArguments

from must.model.heard import heard_for
from stages.common import (JsonlLogger, StageTrainer, features_tag, finish_lora_stage, freeze_audio_encoder,
                           load_stage_model, lora_config, rank_world, resume_point, stage_dir, trainer_kwargs)
from stages.config import SFTStage, TrainConfig
from stages.data import TrainData
from stages.sequences import AudioCollator, must_dataset

__all__ = ["SFTStageRecipe", "balanced", "sft_target"]

log = logging.getLogger(__name__)


def balanced(examples: list[dict], seed: int, weights: dict[str, float] | None = None) -> list[dict]:
    """Examples with every task oversampled (seeded) to the count of the most frequent task, times its weight
    (default 1; a weight below 1 keeps a random subset)."""
    by_task: dict[str, list] = {}
    for e in examples:
        by_task.setdefault(e["task"], []).append(e)
    top = max(len(v) for v in by_task.values())
    rng = np.random.default_rng(seed)
    out = []
    for task in sorted(by_task):
        v, want = by_task[task], int(round(top * (weights or {}).get(task, 1.0)))
        if want < len(v):
            out += [v[int(i)] for i in rng.permutation(len(v))[:want]]
        else:
            out += v + [v[int(i)] for i in rng.integers(0, len(v), want - len(v))]
    return [out[int(i)] for i in rng.permutation(len(out))]


def sft_target(example: dict, st: SFTStage) -> str:
    """An example's answer as stage 3 teaches it: TAD's fullest description (``tad_target: full``), LTR/GTO's
    reasoned answer (``reasoning``), else the benchmark's answer."""
    if example["task"] == "TAD" and st.tad_target == "full":
        return example["full"]
    return example["reasoned"] if st.reasoning else example["answer"]


class SFTStageRecipe:
    """setup → train → save_checkpoint → cleanup."""

    def __init__(self, cfg: TrainConfig, out: Path):
        self.cfg, self.out, self.sdir = cfg, out, stage_dir(out, 3)
        self.kind = cfg.model.kind

    def setup(self) -> None:
        """Load stage 2, add LoRA, build balanced answer-only sequences and the Trainer."""
        self.sdir.mkdir(parents=True, exist_ok=True)
        base, self.processor = load_stage_model(self.cfg, stage_dir(self.out, 2) / "final")
        freeze_audio_encoder(self.kind, base)
        st = self.cfg.stage3
        self.data = TrainData(self.cfg.bench, self.out, self.cfg.max_train_tracks, self.cfg.seed)
        examples = balanced(self.data.examples("train", st.tasks) + self.data.generated_examples(st.generated_copies, st.tasks),
                            self.cfg.seed, st.task_weights)
        if self.kind == "must":
            feats = self.data.features(base, features_tag(base), self.data.tracks("train"), *rank_world())
            heard = {t: heard_for(base, f) for t, f in feats.items()}
            items = [{"question": e["question"], "instruction": e["instruction"], "duration": e["duration"],
                      "heard": heard[e["track_id"]], "target": self.processor.answer(sft_target(e, st)),
                      "track_id": e["track_id"]} for e in examples]
            dataset = must_dataset(self.processor, items, st.pack_turns, base.config.sources if st.source_labels else None)
            collator = AudioCollator(self.processor.tokenizer.pad_token_id, feats)
        else:
            from stages.hf_audio import HFChatDataset, HFCollator, chat_prompt

            rows = [{"prompt": chat_prompt(self.processor, e["question"], e["instruction"]),
                     "target": " " + sft_target(e, st),
                     "track_id": e["track_id"], "audio": e["audio"]} for e in examples]
            dataset, collator = HFChatDataset(rows), HFCollator(self.processor, self.data)
        self.model = get_peft_model(base, lora_config(self.kind, st.lora_r, st.lora_alpha, st.lora_dropout))
        # the length-grouped sampler reads each item's input_ids, which only the MusT dataset has
        sampling = {"train_sampling_strategy": "group_by_length"} if st.group_by_length and self.kind == "must" else {}
        self.trainer = StageTrainer(model=self.model,
                                    args=TrainingArguments(**trainer_kwargs(st, self.sdir, self.cfg, **sampling)),
                                    train_dataset=dataset, data_collator=collator,
                                    callbacks=[JsonlLogger(self.sdir / "metrics.jsonl", 3)], autocast=st.autocast)

    def train(self) -> None:
        """Train (resuming from the last checkpoint if one exists)."""
        self.trainer.train(resume_from_checkpoint=resume_point(self.sdir))

    def save_checkpoint(self) -> None:
        """Merge LoRA into the weights, save ``final/``, validate on val questions."""
        finish_lora_stage(3, self.out, self.trainer, self.processor, self.cfg)

    def cleanup(self) -> None:
        """Release the trainer."""
        del self.trainer
