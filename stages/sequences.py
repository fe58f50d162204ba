"""Prompt → target sequences with answer-only labels and their audio features (stages 2 and 3), one question per
sequence or several packed after one shared audio prefix."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["PromptTargetDataset", "PackedTurnsDataset", "AudioCollator", "pack_turns", "packed_attention", "must_dataset"]


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


def pack_turns(rows: list[dict[str, Any]], turns: int) -> list[dict[str, Any]]:
    """Rows ``{prefix, turn, target, track_id}`` → packs ``{prefix, turns: [(turn, target), …], track_id}`` of up to
    ``turns`` rows that share a prefix (one track's audio), in the order their first row came."""
    packs: list[dict[str, Any]] = []
    open_pack: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        key = (r["track_id"], r["prefix"])
        pack = open_pack.get(key)
        if pack is None or len(pack["turns"]) >= turns:
            pack = open_pack[key] = {"prefix": r["prefix"], "turns": [], "track_id": r["track_id"]}
            packs.append(pack)
        pack["turns"].append((r["turn"], r["target"]))
    return packs


class PackedTurnsDataset(torch.utils.data.Dataset):
    """Tokenised ``prefix + (turn + target) + (turn + target) …``; each turn sees the prefix and itself only
    (``segments`` gives their spans for :func:`packed_attention`); the loss is on the targets only. Turns that
    would pass ``max_length`` are dropped (the first is always kept, truncated)."""

    def __init__(self, packs: list[dict[str, Any]], tokenizer, max_length: int = 1024):
        self.packs, self.tok, self.max_length = packs, tokenizer, max_length

    def __len__(self) -> int:
        return len(self.packs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        pack = self.packs[i]
        ids = self.tok(pack["prefix"], add_special_tokens=False)["input_ids"]
        labels, segments = [-100] * len(ids), []
        for turn, target in pack["turns"]:
            q = self.tok(turn, add_special_tokens=False)["input_ids"]
            a = self.tok(target, add_special_tokens=False)["input_ids"]
            if segments and len(ids) + len(q) + len(a) > self.max_length:
                break
            segments.append((len(ids), min(len(ids) + len(q) + len(a), self.max_length)))
            ids, labels = ids + q + a, labels + [-100] * len(q) + a
        return {"input_ids": ids[: self.max_length], "labels": labels[: self.max_length], "segments": segments,
                "track_id": pack["track_id"]}


def packed_attention(segments: list[list[tuple[int, int]]], length: int, dtype: torch.dtype = torch.float32
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row's turn spans: the additive ``(B, 1, L, L)`` mask under which each turn attends causally to the
    shared prefix (before its first turn) and to itself, and the ``(B, L)`` position ids that restart every turn
    right after the prefix — so a packed turn sees exactly what the same question alone would. Padding attends
    to itself only."""
    allowed = torch.zeros((len(segments), length, length), dtype=torch.bool)
    pos = torch.zeros((len(segments), length), dtype=torch.long)
    causal = torch.ones((length, length), dtype=torch.bool).tril()
    for b, segs in enumerate(segments):
        prefix = segs[0][0]
        allowed[b, :prefix, :prefix] = causal[:prefix, :prefix]
        pos[b, :prefix] = torch.arange(prefix)
        for s, e in segs:
            allowed[b, s:e, :prefix] = True
            allowed[b, s:e, s:e] = causal[: e - s, : e - s]
            pos[b, s:e] = torch.arange(prefix, prefix + e - s)
        end = segs[-1][1]
        allowed[b, end:, end:] = torch.eye(length - end, dtype=torch.bool)
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    return mask.unsqueeze(1), pos


class AudioCollator:
    """Right-pads a batch and attaches each row's encoder features as ``audio_features``; packed rows (with
    ``segments``) get their block attention mask and position ids from :func:`packed_attention`."""

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
        out = {"input_ids": ids, "attention_mask": mask, "labels": labels,
               "audio_features": [self.features[b["track_id"]] for b in batch]}
        if "segments" in batch[0]:
            out["attention_mask"], out["position_ids"] = packed_attention([b["segments"] for b in batch], n)
        return out


def must_dataset(processor, items: list[dict[str, Any]], turns: int = 1) -> torch.utils.data.Dataset:
    """MusT training sequences from items ``{question, instruction, duration, heard, target, track_id}``: one
    prompt per item, or (``turns`` > 1, ``audio_first`` prompts) up to ``turns`` items of a track per sequence."""
    if turns > 1:
        rows = [{"prefix": processor.audio_prefix(i["duration"], heard=i["heard"]),
                 "turn": processor.question_turn(i["question"], i["instruction"]),
                 "target": i["target"], "track_id": i["track_id"]} for i in items]
        return PackedTurnsDataset(pack_turns(rows, turns), processor.tokenizer)
    rows = [{"prompt": processor.prompt(i["question"], i["duration"], i["instruction"], heard=i["heard"]),
             "target": i["target"], "track_id": i["track_id"]} for i in items]
    return PromptTargetDataset(rows, processor.tokenizer)
