"""Attention for packed turns, computed in dense blocks instead of one masked square.

Stages 2 and 3 pack several turns after one shared prefix (a track's audio span); each turn sees the prefix and
itself only (:func:`stages.sequences.packed_attention` gives that as an additive ``(B, 1, L, L)`` mask). Under that
mask about three quarters of the square are masked out (stage 3 of the default config: 23 % allowed), yet SDPA
still computes all of it. Here the same attention is computed in dense blocks: the prefixes, causal, in one SDPA call,
then the batch's turns, grouped by length (:func:`length_groups`), one SDPA call per group, each turn a row whose keys
are its row's prefix followed by itself. Outputs equal the masked square's to float rounding; padding after the last
turn attends to itself only, as under the mask.

It is registered as the attention implementation ``"must_packed"`` (:data:`PACKED_ATTENTION`): SDPA, except
where the model's forward passes ``packed_plan`` (:func:`packed_plan`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

__all__ = ["PACKED_ATTENTION", "PackedPlan", "TurnBlock", "length_groups", "packed_plan", "packed_turns_attention"]

PACKED_ATTENTION = "must_packed"


@dataclass(frozen=True)
class TurnBlock:
    """Turns of similar length attended to together: each one's queries, and its keys (its row's prefix, then
    itself)."""

    rows: torch.Tensor  # (N,) the batch row of each turn
    queries: torch.Tensor  # (N, T) the position of each of a turn's queries (the last one repeated past its end)
    keys: torch.Tensor  # (N, prefix + T) the positions of its keys: its row's prefix, then its own queries
    mask: torch.Tensor  # (N, 1, T, prefix + T) bool: which of those keys each query sees


@dataclass(frozen=True)
class PackedPlan:
    """Where each block's queries and keys come from and where its outputs go, for one batch's packing."""

    prefix: int  # the longest prefix: the prefix block's width
    blocks: list[TurnBlock]
    gather: torch.Tensor  # (B * L,) each output position's row in cat(prefix outputs, blocks' outputs, values)


def length_groups(lengths: list[int], width: int, call_cost: float = 4096.0) -> list[list[int]]:
    """Turn indices grouped by length, the groups chosen to minimise ``Σ n·T·(width + T) + call_cost`` over groups
    of ``n`` turns padded to ``T`` (one SDPA call each; ``call_cost``, in attention scores, is what a call costs
    beyond them: 4,096 is one 64 × 64 tile). One group would pad every turn to the longest, and stage 3's turns run
    from ~20 to ~165 tokens."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    best = [0.0] + [float("inf")] * len(order)  # best[j]: the cost of the shortest j turns
    cut = [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        t = lengths[order[j - 1]]
        for i in range(j):
            cost = best[i] + (j - i) * t * (width + t) + call_cost
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups, j = [], len(order)
    while j:
        groups.append(order[cut[j] : j])
        j = cut[j]
    return groups[::-1]


def _turn_block(turns: list[tuple[int, int, int]], prefixes: list[int], width: int) -> TurnBlock:
    """One :class:`TurnBlock` for ``turns`` ``(row, start, end)``."""
    rows, starts, ends = (torch.tensor(col, dtype=torch.long) for col in zip(*turns))
    lens, prefix_of = ends - starts, torch.tensor(prefixes, dtype=torch.long)[rows]
    t = int(lens.max())
    steps = torch.arange(t)
    queries = starts[:, None] + torch.minimum(steps[None], lens[:, None] - 1)
    prefix_keys = torch.minimum(torch.arange(width)[None], (prefix_of[:, None] - 1).clamp(min=0))
    seen = torch.cat([torch.arange(width)[None] < prefix_of[:, None], steps[None] < lens[:, None]], dim=1)
    causal = torch.cat([torch.ones(t, width, dtype=torch.bool), torch.ones(t, t, dtype=torch.bool).tril()], dim=1)
    return TurnBlock(rows, queries, torch.cat([prefix_keys, queries], dim=1), (causal[None] & seen[:, None]).unsqueeze(1))


def packed_plan(segments: list[list[tuple[int, int]]], length: int, device: torch.device | str = "cpu",
                call_cost: float = 4096.0) -> PackedPlan:
    """The plan for rows of ``length`` tokens whose turns span ``segments[b]`` (``[(start, end), …]``, the first
    starting where the row's prefix ends), as :func:`stages.sequences.packed_attention` takes them."""
    if not segments or any(not segs for segs in segments):
        raise ValueError("packed_plan needs at least one turn in every row")
    prefixes = [segs[0][0] for segs in segments]
    width = max(prefixes)
    turns = [(b, s, e) for b, segs in enumerate(segments) for s, e in segs]
    if any(not 0 <= s < e <= length for _, s, e in turns):
        raise ValueError(f"a turn span lies outside 0..{length} or is empty: {segments}")
    rows = len(segments)
    gather = torch.full((rows * length,), -1, dtype=torch.long)
    for b, p in enumerate(prefixes):
        gather[b * length : b * length + p] = b * width + torch.arange(p)
    offset, blocks = rows * width, []
    for group in length_groups([e - s for _, s, e in turns], width, call_cost):
        block = _turn_block([turns[i] for i in group], prefixes, width)
        t = block.queries.shape[1]
        for k, i in enumerate(group):
            b, s, e = turns[i]
            gather[b * length + s : b * length + e] = offset + k * t + torch.arange(e - s)
        offset += len(group) * t
        blocks.append(block)
    # the positions no span covers (padding after the last turn) attend to themselves only: their own value
    free = gather < 0
    gather[free] = offset + free.nonzero().squeeze(-1)
    move = lambda x: x.to(device)  # noqa: E731
    return PackedPlan(width, [TurnBlock(*map(move, (k.rows, k.queries, k.keys, k.mask))) for k in blocks], move(gather))


def packed_turns_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                           packed_plan: PackedPlan | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """A transformers attention function: with ``packed_plan``, the packed turns' attention as dense blocks
    (``attention_mask`` unused); otherwise, or with attention dropout or a KV cache, SDPA's."""
    if packed_plan is None or dropout > 0.0 or key.shape[2] != query.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    plan = packed_plan
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    b, h, length, d = query.shape
    w = plan.prefix
    parts = [F.scaled_dot_product_attention(query[:, :, :w], key[:, :, :w], value[:, :, :w], is_causal=True, scale=scaling)]
    # (B * L, H, D) rows; index_select's backward (index_add) is much faster on CPU than advanced indexing's
    q, k, v = (x.transpose(1, 2).reshape(b * length, h, d) for x in (query, key, value))

    def gathered(x: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        flat = (rows[:, None] * length + positions).reshape(-1)
        return x.index_select(0, flat).view(*positions.shape, h, d).transpose(1, 2)

    for block in plan.blocks:
        keys, values = gathered(k, block.rows, block.keys), gathered(v, block.rows, block.keys)
        parts.append(F.scaled_dot_product_attention(gathered(q, block.rows, block.queries), keys, values,
                                                    attn_mask=block.mask, scale=scaling))
    source = torch.cat([x.transpose(1, 2).reshape(-1, h, d) for x in parts] + [v])
    return source.index_select(0, plan.gather).view(b, length, h, d), None


AttentionInterface.register(PACKED_ATTENTION, packed_turns_attention)
AttentionMaskInterface.register(PACKED_ATTENTION, sdpa_mask)
