"""Prompt → target sequences with answer-only labels and their audio features (stages 2 and 3), one question per
sequence or several packed after one shared audio prefix."""

from __future__ import annotations

import functools
import re
from typing import Any

import torch

__all__ = ["PromptTargetDataset", "PackedTurnsDataset", "AudioCollator", "pack_turns", "packed_attention", "packed_spans",
           "must_dataset", "asked_source", "answer_source_labels", "token_ids"]

NO_LABEL = -100


def asked_source(question: str, sources: list[str]) -> int:
    """The label of the source pointer's gate for a question: the index in ``sources`` of the only source it names
    (``acoustic_guitar`` read as "acoustic guitar"), ``len(sources)`` when it names none, and ``-100`` (no label)
    when it names several — multiple-choice questions list their options in the question."""
    text = question.lower()
    named = [i for i, (name, pattern) in enumerate(_source_patterns(tuple(sources))) if name in text and pattern.search(text)]
    if not named:
        return len(sources)
    return named[0] if len(named) == 1 else NO_LABEL


@functools.lru_cache(maxsize=8)
def _source_patterns(sources: tuple[str, ...]) -> list[tuple[str, re.Pattern]]:
    """Each source's name as written and as a whole-word pattern, compiled once (stage 3 asks ~10^5 questions; the
    plain substring test in :func:`asked_source` spares most of the regex searches)."""
    names = [s.replace("_", " ").lower() for s in sources]
    return [(name, re.compile(rf"\b{re.escape(name)}\b")) for name in names]


def token_ids(tokenizer, texts: list[str]) -> dict[str, list[int]]:
    """Each distinct text's token ids (no special tokens), from one batched tokenizer call."""
    unique = list(dict.fromkeys(texts))
    return dict(zip(unique, tokenizer(unique, add_special_tokens=False)["input_ids"])) if unique else {}


def answer_source_labels(question: str, answer_tokens: list[str], sources: list[str]) -> list[int]:
    """Per answer token, the source gate's label: the question's (:func:`asked_source`), except that from a
    ``( x )`` marker on, the answer is about the question's line ``(X) …`` (GTO's reasoned answer
    ``(X) 0:06 (Y) 0:31 …`` times each listed change, so each time is about that change's source)."""
    label = asked_source(question, sources)
    lines = {m.group(1).lower(): asked_source(m.group(2), sources) for m in re.finditer(r"^\(([A-Z])\)[ \t]*(.+)$", question, re.M)}
    out = []
    for i, tok in enumerate(answer_tokens):
        if tok == ")" and i >= 2 and answer_tokens[i - 2] == "(" and answer_tokens[i - 1].lower() in lines:
            label = lines[answer_tokens[i - 1].lower()]
        out.append(label)
    return out


class PromptTargetDataset(torch.utils.data.Dataset):
    """Tokenised ``prompt + target``; the loss is on the target tokens only. Rows with ``asked`` (the prompt's
    label, :func:`asked_source`) and ``asked_answer`` (the target's, per token) also give ``asked_source``."""

    def __init__(self, rows: list[dict[str, Any]], tokenizer, max_length: int = 1024):
        self.rows, self.max_length = rows, max_length
        self.ids = token_ids(tokenizer, [r[k] for r in rows for k in ("prompt", "target")])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        r = self.rows[i]
        p, t = self.ids[r["prompt"]], self.ids[r["target"]]
        ids = (p + t)[: self.max_length]
        labels = ([-100] * len(p) + t)[: self.max_length]
        item = {"input_ids": ids, "labels": labels, "track_id": r["track_id"]}
        if "asked" in r:
            item["asked_source"] = ([r["asked"]] * len(p) + r["asked_answer"])[: self.max_length]
        return item


def pack_turns(rows: list[dict[str, Any]], turns: int) -> list[dict[str, Any]]:
    """Rows ``{prefix, turn, target, track_id[, asked, asked_answer]}`` → packs ``{prefix, turns: [(turn, target,
    (asked, asked_answer)), …], track_id}`` of up to ``turns`` rows that share a prefix (one track's audio), in the
    order their first row came."""
    packs: list[dict[str, Any]] = []
    open_pack: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        key = (r["track_id"], r["prefix"])
        pack = open_pack.get(key)
        if pack is None or len(pack["turns"]) >= turns:
            pack = open_pack[key] = {"prefix": r["prefix"], "turns": [], "track_id": r["track_id"]}
            packs.append(pack)
        pack["turns"].append((r["turn"], r["target"], (r.get("asked", NO_LABEL), r.get("asked_answer"))))
    return packs


class PackedTurnsDataset(torch.utils.data.Dataset):
    """Tokenised ``prefix + (turn + target) + (turn + target) …``; each turn sees the prefix and itself only
    (``segments`` gives their spans for :func:`packed_attention`); the loss is on the targets only. Turns that
    would pass ``max_length`` are dropped (the first is always kept, truncated). ``asked_source`` gives each turn's
    question tokens its ``asked`` label and its answer tokens their ``asked_answer`` labels (the prefix: none)."""

    def __init__(self, packs: list[dict[str, Any]], tokenizer, max_length: int = 1024):
        self.packs, self.max_length = packs, max_length
        self.ids = token_ids(tokenizer, [p["prefix"] for p in packs] + [text for p in packs for t in p["turns"] for text in t[:2]])

    def __len__(self) -> int:
        return len(self.packs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        pack = self.packs[i]
        ids = self.ids[pack["prefix"]]
        labels, segments = [-100] * len(ids), []
        asked = [NO_LABEL] * len(ids)
        for turn, target, (label, answer_labels) in pack["turns"]:
            q, a = self.ids[turn], self.ids[target]
            if segments and len(ids) + len(q) + len(a) > self.max_length:
                break
            segments.append((len(ids), min(len(ids) + len(q) + len(a), self.max_length)))
            ids, labels = ids + q + a, labels + [-100] * len(q) + a
            asked += [label] * len(q) + (answer_labels or [label] * len(a))
        return {"input_ids": ids[: self.max_length], "labels": labels[: self.max_length], "segments": segments,
                "track_id": pack["track_id"], "asked_source": asked[: self.max_length]}


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


def packed_spans(segments: list[list[tuple[int, int]]]) -> torch.Tensor:
    """Per row's turn spans as one ``(B, S, 2)`` tensor, rows with fewer turns padded with -1 (the model's
    ``packed_segments``)."""
    out = torch.full((len(segments), max(len(s) for s in segments), 2), -1, dtype=torch.long)
    for b, segs in enumerate(segments):
        out[b, : len(segs)] = torch.tensor(segs, dtype=torch.long).view(-1, 2)
    return out


class AudioCollator:
    """Right-pads a batch and attaches each row's encoder features as ``audio_features``; packed rows (with
    ``segments``) get their block attention mask and position ids from :func:`packed_attention` and their spans as
    ``packed_segments`` (:func:`packed_spans`, for MusT's ``must_packed`` attention). ``asked_source``
    labels are passed on when any row has a label."""

    def __init__(self, pad_id: int, features: dict[str, torch.Tensor]):
        self.pad_id, self.features = pad_id, features

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        n = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), n), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), n), -100, dtype=torch.long)
        asked = torch.full((len(batch), n), NO_LABEL, dtype=torch.long)
        mask = torch.zeros((len(batch), n), dtype=torch.long)
        for i, b in enumerate(batch):
            k = len(b["input_ids"])
            ids[i, :k] = torch.tensor(b["input_ids"])
            labels[i, :k] = torch.tensor(b["labels"])
            if "asked_source" in b:
                asked[i, :k] = torch.tensor(b["asked_source"])
            mask[i, :k] = 1
        out = {"input_ids": ids, "attention_mask": mask, "labels": labels,
               "audio_features": [self.features[b["track_id"]] for b in batch]}
        if bool((asked != NO_LABEL).any()):
            out["asked_source"] = asked
        if "segments" in batch[0]:
            segments = [b["segments"] for b in batch]
            out["attention_mask"], out["position_ids"] = packed_attention(segments, n)
            out["packed_segments"] = packed_spans(segments)
        return out


def must_dataset(processor, items: list[dict[str, Any]], turns: int = 1,
                 sources: list[str] | None = None) -> torch.utils.data.Dataset:
    """MusT training sequences from items ``{question, instruction, duration, heard, target, track_id}``: one
    prompt per item, or (``turns`` > 1, ``audio_first`` prompts) up to ``turns`` items of a track per sequence.
    With ``sources``, each item's tokens carry the source they are about (:func:`answer_source_labels`)."""
    asked = [{}] * len(items)
    if sources:
        answers = processor.tokenizer([i["target"] for i in items], add_special_tokens=False)["input_ids"]
        asked = [{"asked": asked_source(i["question"], sources),
                  "asked_answer": answer_source_labels(i["question"], processor.tokenizer.convert_ids_to_tokens(a), sources)}
                 for i, a in zip(items, answers)]
    if turns > 1:
        rows = [{"prefix": processor.audio_prefix(i["duration"], heard=i["heard"]),
                 "turn": processor.question_turn(i["question"], i["instruction"]),
                 "target": i["target"], "track_id": i["track_id"], **a} for i, a in zip(items, asked)]
        return PackedTurnsDataset(pack_turns(rows, turns), processor.tokenizer)
    rows = [{"prompt": processor.prompt(i["question"], i["duration"], i["instruction"], heard=i["heard"]),
             "target": i["target"], "track_id": i["track_id"], **a} for i, a in zip(items, asked)]
    return PromptTargetDataset(rows, processor.tokenizer)
