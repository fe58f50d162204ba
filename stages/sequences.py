"""Prompt → target sequences with answer-only labels and their audio features (stages 2 and 3)."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["PromptTargetDataset", "AudioCollator"]


class PromptTargetDataset(torch.utils.data.Dataset):
    """Tokenised ``prompt + target``; the loss is on the target tokens only."""

    def __init__(self, rows: list[dict[str, Any]], tokenizer, max_length: int = 1024):
        self.rows, self.tok, self.max_length = rows, tokenizer, max_length

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        r = self.rows[i]
        p = self.tok(r["prompt"], add_special_tokens=False)["input_ids"]
        t = self.tok(r["target"], add_special_tokens=False)["input_ids"]
        ids = (p + t)[: self.max_length]
        labels = ([-100] * len(p) + t)[: self.max_length]
        return {"input_ids": ids, "labels": labels, "track_id": r["track_id"]}


class AudioCollator:
    """Right-pads a batch and attaches each row's encoder features as ``audio_features``."""

    def __init__(self, pad_id: int, features: dict[str, torch.Tensor]):
        self.pad_id, self.features = pad_id, features

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        n = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), n), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), n), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), n), dtype=torch.long)
        for i, b in enumerate(batch):
            k = len(b["input_ids"])
            ids[i, :k] = torch.tensor(b["input_ids"])
            labels[i, :k] = torch.tensor(b["labels"])
            mask[i, :k] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels,
                "audio_features": [self.features[b["track_id"]] for b in batch]}
