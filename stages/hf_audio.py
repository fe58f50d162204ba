"""The same recipes for an existing local transformers audio-LM (Qwen2-Audio style, ``model.kind: hf``).

- Stage 1 trains the audio tower with frame-level heads (same targets as MusT, at the tower's frame rate,
  on windows of the tower's length); stages 2–4 add LoRA to the language model and train the projector fully.
- Audio reaches the model through its own processor (``input_features``). For TRL's GRPO, whose prompts are
  text only, :func:`attach_audio_store` patches the inner model so a prompt whose audio placeholder is
  preceded by ``[K]`` gets ``input_features`` from a store — the same idea as MusT's key store, for a model
  we do not own.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stages.data import RepeatedTracks, frame_targets

__all__ = ["load_hf", "save_hf", "TowerObjective", "TowerCrops", "HFChatDataset", "HFCollator", "attach_audio_store",
           "chat_prompt", "LORA_TARGETS_HF", "audio_token_count"]

LORA_TARGETS_HF = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
_KEY = re.compile(r"\[\s*(\d+)\s*\]\s*$")


def load_hf(path: str | Path):
    """``(model, processor)`` from a local checkpoint (``trust_remote_code`` stays off)."""
    from transformers import AutoModelForMultimodalLM, AutoProcessor

    return AutoModelForMultimodalLM.from_pretrained(str(path)), AutoProcessor.from_pretrained(str(path))


def save_hf(model, processor, path: Path) -> None:
    """Save model (safetensors) and processor."""
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    processor.save_pretrained(str(path))


def _placeholder_tokens(processor) -> list[str]:
    return ["<|audio_bos|>", getattr(processor, "audio_token", "<|AUDIO|>"), "<|audio_eos|>"]


def _audio_placeholder(processor) -> str:
    return "".join(_placeholder_tokens(processor))


def audio_token_ids(processor) -> list[int]:
    """Ids of the audio placeholder tokens (``<|audio_bos|>``, the audio token, ``<|audio_eos|>``) the tokenizer knows."""
    tok = processor.tokenizer
    ids = [tok.convert_tokens_to_ids(n) for n in _placeholder_tokens(processor)]
    return [i for i in ids if i is not None and i != tok.unk_token_id]


def chat_prompt(processor, question: str, instruction: str, key: int | None = None, expanded: int | None = None) -> str:
    """The user turn with the audio placeholder (expanded to ``expanded`` audio tokens for text-only use)."""
    audio = _audio_placeholder(processor)
    if expanded:
        audio = audio.replace(processor.audio_token, processor.audio_token * expanded)
    ident = f"[{key}] " if key is not None else ""
    messages = [{"role": "user", "content": [{"type": "text", "text": f"{ident}{audio} {question} {instruction}"}]}]
    if getattr(processor, "chat_template", None):
        return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return f"{ident}{audio} {question} {instruction}\n"


class TowerObjective(nn.Module):
    """The audio tower with frame-level heads and the stage-1 loss (targets at the tower's frame rate)."""

    def __init__(self, tower: nn.Module, dim: int, n_out: int, n_sources: int, aux_weight: float):
        super().__init__()
        self.tower, self.heads, self.n, self.aux = tower, nn.Linear(dim, n_out), n_sources, aux_weight

    def forward(self, input_features, transition, activity, rhythm, amuse, tempo):
        from stages.stage1_encoder import dice_loss

        logits = self.heads(self.tower(input_features).last_hidden_state).float()  # float32 losses under autocast
        t = min(logits.shape[1], transition.shape[1])
        logits = logits[:, :t]
        bce = nn.functional.binary_cross_entropy_with_logits
        ones = torch.ones_like(transition[:, :t])
        n = self.n
        known = (tempo[:, :t] >= 0).float()
        l_tempo = (bce(logits[..., 2 + 2 * n], tempo[:, :t].clamp(min=0), reduction="none") * known).sum() / known.sum().clamp(min=1)
        loss = (bce(logits[..., 0], transition[:, :t]) + dice_loss(torch.sigmoid(logits[..., 0]), transition[:, :t], ones)
                + bce(logits[..., 2 : 2 + n], activity[:, :t])
                + self.aux * (bce(logits[..., 1], rhythm[:, :t]) + bce(logits[..., 2 + n : 2 + 2 * n], amuse[:, :t]) + l_tempo))
        return {"loss": loss}


class TowerCrops(RepeatedTracks):
    """Windows of the tower's length (30 s for Whisper-style towers) with frame targets at ``frames`` per window."""

    def __init__(self, data, processor, frames: int, window: float, sources: list[str], sigma: float, repeats: int, seed: int):
        super().__init__(data, repeats, seed)
        self.proc, self.frames, self.window, self.sources, self.sigma = processor, frames, window, sources, sigma

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        r = self.track(i)
        sr = self.proc.feature_extractor.sampling_rate
        wave = self.data.wave_samples(r["track_id"], r["audio"], sr)
        total = len(wave) / sr
        start = float(np.random.default_rng([self.seed, i]).uniform(0, max(0.0, total - self.window)))
        seg = np.asarray(wave[int(start * sr) : int((start + self.window) * sr)], dtype=np.float32)
        feats = self.proc.feature_extractor(seg, sampling_rate=sr, return_tensors="pt")["input_features"][0]
        rate = self.frames / self.window
        full = frame_targets(self.data.annotation(r["track_id"]), int((total + self.window) * rate) + 1, rate, self.sources, self.sigma)
        a = int(round(start * rate))
        return {"input_features": feats, **{k: torch.tensor(v[a : a + self.frames]) for k, v in full.items()}}


class HFChatDataset(torch.utils.data.Dataset):
    """(audio, prompt, target) rows for stages 2–3."""

    def __init__(self, rows: list[dict[str, Any]]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.rows[i]


class HFCollator:
    """Runs the model's processor on text + audio; labels cover the target tokens only."""

    def __init__(self, processor, data):
        self.proc, self.data = processor, data
        self.eos = processor.tokenizer.eos_token or ""

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        sr = self.proc.feature_extractor.sampling_rate
        audio = [np.asarray(self.data.wave_samples(b["track_id"], b["audio"], sr)[: int(30 * sr)], dtype=np.float32)
                 for b in batch]
        full = [b["prompt"] + b["target"] + self.eos for b in batch]
        enc = self.proc(text=full, audio=audio, sampling_rate=sr, return_tensors="pt", padding=True)
        prompts = self.proc(text=[b["prompt"] for b in batch], audio=audio, sampling_rate=sr, return_tensors="pt", padding=True)
        labels = enc["input_ids"].clone()
        labels[enc["attention_mask"] == 0] = -100
        pad_left = self.proc.tokenizer.padding_side == "left"
        for i in range(len(batch)):
            n_prompt = int(prompts["attention_mask"][i].sum())
            n_pad = int((enc["attention_mask"][i] == 0).sum())
            start = n_pad if pad_left else 0
            labels[i, start : start + n_prompt] = -100
        enc["labels"] = labels
        return dict(enc)


def audio_token_count(feature_attention_mask: torch.Tensor) -> int:
    """Audio tokens the processor would insert for a clip (Whisper conv stride 2, then pooling stride 2)."""
    frames = int(feature_attention_mask.sum())
    return (((frames - 1) // 2 + 1) - 2) // 2 + 1


def attach_audio_store(model, tokenizer, store: dict[int, dict[str, torch.Tensor]]) -> None:
    """Make ``model.model`` fetch ``input_features`` for prompts whose audio placeholder follows ``[K]`` from ``store[K]``."""
    inner = model.model
    original = inner.forward
    bos = tokenizer.convert_tokens_to_ids("<|audio_bos|>")

    def forward(*args, input_ids=None, input_features=None, feature_attention_mask=None, **kwargs):
        if input_features is None and input_ids is not None and input_ids.shape[1] > 1:
            feats, masks = [], []
            for row in input_ids:
                ids = row.tolist()
                at = ids.index(bos) if bos in ids else 0
                m = _KEY.search(tokenizer.decode(ids[max(0, at - 12) : at], skip_special_tokens=True))
                if m and int(m.group(1)) in store:
                    feats.append(store[int(m.group(1))]["input_features"])
                    masks.append(store[int(m.group(1))]["feature_attention_mask"])
            if feats and len(feats) == input_ids.shape[0]:
                input_features = torch.stack(feats).to(input_ids.device)
                feature_attention_mask = torch.stack(masks).to(input_ids.device)
        return original(*args, input_ids=input_ids, input_features=input_features,
                        feature_attention_mask=feature_attention_mask, **kwargs)

    inner.forward = forward
