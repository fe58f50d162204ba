"""GRPO's batches repeat every prompt ``num_generations`` times, for sampling and again for scoring, and a MusT prompt
(system turn, audio span, question) is ten times longer than its completion: run each distinct prompt once, then
continue every row from a copy of its prompt's KV cache and per-row audio state. Sampling and scoring equal those of
whole rows to float rounding (tests/test_model.py); with LoRA dropout in train mode, the copies of a prompt share one
dropout draw."""

from __future__ import annotations

from collections.abc import Callable

import torch

from must.model.modeling import CACHE_ARG

__all__ = ["distinct_rows", "run_prompts_once"]


def distinct_rows(*tensors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(first, inverse)`` over the rows of ``tensors`` side by side: the index of each distinct row's first
    occurrence, and for every row the position of its distinct row in ``first``."""
    key = torch.cat([t.reshape(t.shape[0], -1).long() for t in tensors], dim=1)
    _, inverse = torch.unique(key, dim=0, return_inverse=True)
    rows = torch.arange(key.shape[0], device=key.device)
    first = torch.full((int(inverse.max()) + 1,), key.shape[0], device=key.device).scatter_reduce(0, inverse, rows, "amin")
    return first, inverse


def run_prompts_once(forward: Callable, model, input_ids: torch.Tensor, attention_mask: torch.Tensor, upto: int,
                     **kwargs) -> tuple[object, torch.Tensor] | None:
    """Run ``forward`` (MusT's, with ``use_cache``) once per distinct row of ``input_ids[:, :upto]`` (and its mask),
    then repeat its KV cache and ``model.model``'s per-row audio state (:meth:`MusTModel.select_rows`) for every row.
    Returns ``(outputs of the distinct rows, inverse)`` — ``inverse[b]`` is row ``b``'s prompt in them, and the cache
    in the outputs now has a row per input row — or ``None`` when no two rows share a prompt, or no cache came back
    (gradient checkpointing turns it off), so the caller runs whole rows. ``kwargs`` go to ``forward``, sliced to the
    prompt where they are per-position (``position_ids``)."""
    if upto < 1 or input_ids.shape[0] < 2:
        return None
    first, inverse = distinct_rows(input_ids[:, :upto], attention_mask[:, :upto])
    if len(first) == input_ids.shape[0]:
        return None
    if "position_ids" in kwargs:
        kwargs["position_ids"] = kwargs["position_ids"][first, :upto]
    out = forward(input_ids=input_ids[first, :upto], attention_mask=attention_mask[first, :upto], use_cache=True, **kwargs)
    cache = getattr(out, CACHE_ARG, None)
    if cache is None:
        return None
    cache.reorder_cache(inverse)
    model.model.select_rows(inverse.tolist())
    return out, inverse
