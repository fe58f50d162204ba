"""What MusT's frame heads heard, as text the LM reads before it answers.

The encoder's heads are decoded with the benchmark's own annotation procedures — activity runs → first entry and
last exit per source, measured loudness → dynamic changes (:func:`bench.annotate.transitions.dynamic_change_events`),
loudness × flux (or × the pace head) → highest and lowest intensity regions
(:func:`bench.annotate.intensity.intensity_regions`) — and phrased as the benchmark phrases its options (``0:25
the drums enter ; 0:41 the music gets softer ; highest intensity 0:30-0:55``). Nothing here sees an annotation: it
is a function of the audio features alone, the same in training and at test. Tempo changes are left out: the
local-tempo head of the default encoder is nearly flat (103–113 BPM on a track whose tempo goes 102 → 179 → 127), so
it would only add false text.

Read by rules (``heard:CHECKPOINT``, :mod:`must.models.heard_model`) these events place a source's entry within
3 s for 69 % of the test's TSG onset questions and order GTO's changes 46 % of the time, where the LM reading the
same heads through attention reaches 42 % and 12–18 %. Put in the prompt (``MusTConfig.heard_events``) in the hope
that the LM would copy what it can read, they did not help MusT-small's 4-layer LM, which did not copy them
(docs/training-log.md, rows ⁷); the option is off by default.
"""

from __future__ import annotations

import numpy as np
import torch

from must.annotation import Event
from must.model.pace import pace_rate

__all__ = ["HeardConfig", "heard_events", "heard_regions", "region_seconds", "heard_text", "heard_for", "activity_runs"]


class HeardConfig:
    """Decoding thresholds. Bridge and minimum run were chosen on the val split (TSG read straight from the
    decoded events: 61.0 % Hit@3s with 2 s / 2 s, 65.0 % with 1 s / 1 s); the rest are the annotation's."""

    activity: float = 0.5  # activity probability above which a source plays
    bridge: float = 1.0  # gaps shorter than this (s) do not end a run
    min_run: float = 1.0  # runs shorter than this (s) are noise
    end_margin: float = 2.5  # a source still playing this close to the end does not "stop"
    hop: float = 0.5  # seconds per step for loudness and intensity


def activity_runs(active: np.ndarray, frame_rate: float, bridge: float, min_run: float) -> list[tuple[float, float]]:
    """``(start, end)`` seconds of the True runs of a per-frame mask, gaps under ``bridge`` s joined, runs under
    ``min_run`` s dropped."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], active.astype(np.int8), [0]])))
    runs: list[list[float]] = []
    for a, b in zip(edges[::2] / frame_rate, edges[1::2] / frame_rate):
        if runs and a - runs[-1][1] < bridge:
            runs[-1][1] = float(b)
        else:
            runs.append([float(a), float(b)])
    return [(a, b) for a, b in runs if b - a >= min_run]


def _per_hop(x: np.ndarray, frame_rate: float, hop: float) -> np.ndarray:
    """Frame values averaged over consecutive ``hop``-second steps."""
    k = max(1, int(round(hop * frame_rate)))
    n = int(np.ceil(len(x) / k))
    pad = np.concatenate([x, np.repeat(x[-1:], n * k - len(x), axis=0)]) if n * k > len(x) else x
    return pad.reshape(n, k, *x.shape[1:]).mean(1)


def _split(features: torch.Tensor, config) -> dict[str, np.ndarray]:
    f = features.detach().float().cpu().numpy()
    enc, n = config.encoder_dim, len(config.sources)
    h = config.n_heads_out
    heads = f[:, enc : enc + h]
    out = {"activity": heads[:, 2 : 2 + n], "loudness": f[:, enc + h], "flux": f[:, enc + h + 1]}
    if getattr(config, "pace_head", False):
        out["pace"] = pace_rate(heads[:, config.pace_index])
    return out


def heard_events(features: torch.Tensor, config, cfg: HeardConfig | None = None) -> list[Event]:
    """Transitions decoded from ``(frames, feature_dim)`` encoder features (:meth:`MusTForCausalLM.encode_audio`)."""
    from bench.annotate.transitions import dynamic_change_events, sort_events

    cfg = cfg or HeardConfig()
    s = _split(features, config)
    fr, duration = config.frame_rate, len(features) / config.frame_rate
    events, starts, ends = [], [], []
    for i, name in enumerate(config.sources):
        runs = activity_runs(s["activity"][:, i] >= cfg.activity, fr, cfg.bridge, cfg.min_run)
        if not runs:
            continue
        starts.append(runs[0][0])
        ends.append(runs[-1][1])
        events.append(Event(round(runs[0][0], 1), "enter", name))
        if runs[-1][1] < duration - cfg.end_margin:
            events.append(Event(round(runs[-1][1], 1), "exit", name))
    span = (min(starts, default=0.0), max(ends, default=duration))
    power = _per_hop(np.power(10.0, s["loudness"]), fr, cfg.hop)
    times = np.arange(len(power)) * cfg.hop
    events += dynamic_change_events(times, 10 * np.log10(np.maximum(power, 1e-10)), span=span)
    return sort_events(events)


def heard_regions(features: torch.Tensor, config, cfg: HeardConfig | None = None) -> dict[str, list[tuple[float, float]]]:
    """Highest and lowest intensity regions from measured loudness × the pace head (``pace_head``; else × flux),
    found as the MTR annotation finds them."""
    from bench.annotate.intensity import intensity_curve, intensity_regions

    cfg = cfg or HeardConfig()
    s = _split(features, config)
    fr = config.frame_rate
    amp = np.sqrt(_per_hop(np.power(10.0, s["loudness"]), fr, cfg.hop))
    curve = intensity_curve(amp, _per_hop(s.get("pace", s["flux"]), fr, cfg.hop), np.ones(len(amp)), cfg.hop)
    times = np.arange(len(curve)) * cfg.hop + cfg.hop / 2
    active = np.flatnonzero(s["activity"].max(1) >= cfg.activity) / fr
    span = (float(active[0]), float(active[-1])) if len(active) else (0.0, len(features) / fr)
    return {kind: intensity_regions(times, curve, span, kind) for kind in ("highest", "lowest")}


def region_seconds(features: torch.Tensor, config, seconds: int, cfg: HeardConfig | None = None) -> np.ndarray:
    """``(seconds, 2)``: the share of each second ``[s, s + 1)`` inside the highest and the lowest intensity regions
    of :func:`heard_regions` — what ``MusTConfig.region_signals`` adds to each second's track signals."""
    out = np.zeros((seconds, 2), np.float32)
    starts = np.arange(seconds, dtype=float)
    regions = heard_regions(features, config, cfg)
    for col, kind in enumerate(("highest", "lowest")):
        for a, b in regions[kind]:
            out[:, col] += np.clip(np.minimum(starts + 1, b) - np.maximum(starts, a), 0.0, 1.0)
    return out


def heard_text(features: torch.Tensor, config, cfg: HeardConfig | None = None) -> str:
    """The decoded transitions and intensity regions as one line: ``0:00 the piano enters ; 0:25 the drums enter
    and the bass stops ; … ; highest intensity 0:30-0:55 ; lowest intensity 1:10-1:30``."""
    from bench.annotate.transitions import group_moments
    from bench.tasks.phrasing import event_option, join_clauses
    from must.timecode import format_intervals, format_time

    parts = [f"{format_time(m[0].time)} {join_clauses([event_option(e) for e in m])}"
             for m in group_moments(heard_events(features, config, cfg))]
    parts += [f"{kind} intensity {format_intervals(r)}" for kind, r in heard_regions(features, config, cfg).items() if r]
    return " ; ".join(parts)


def heard_for(model, features: torch.Tensor | None) -> str | None:
    """:func:`heard_text` for a MusT model whose config asks for it (``heard_events``), else ``None``."""
    config = model.config
    if features is None or not getattr(config, "heard_events", False):
        return None
    return heard_text(features, config)
