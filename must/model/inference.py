"""Answering questions with a MusT checkpoint (used by ``must:`` evaluation and by validation during training)."""

from __future__ import annotations

from typing import Any

import torch

from must.model.processing import MusTProcessor

__all__ = ["answer_batch"]


@torch.no_grad()
def answer_batch(model, processor: MusTProcessor, items: list[dict[str, Any]], features: list[torch.Tensor],
                 max_new_tokens: int = 48) -> list[str]:
    """Greedy answers for items (``question``, ``instruction``, ``duration``) given their audio features."""
    model.eval()
    tok = processor.tokenizer
    prompts = [processor.prompt(i["question"], i["duration"], i.get("instruction", "")) for i in items]
    enc = tok(prompts, return_tensors="pt", padding=True)
    out = model.generate(input_ids=enc["input_ids"].to(model.device), attention_mask=enc["attention_mask"].to(model.device),
                         audio_features=features, max_new_tokens=max_new_tokens, do_sample=False,
                         eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tok.pad_token_id)
    return [processor.decode(row[enc["input_ids"].shape[1]:]) for row in out]
