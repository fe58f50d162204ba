"""Throughput: scoring (predictions/s), rewards (completions/s), evaluate harness overhead per item with a
zero-cost model, and OpenAI-endpoint throughput against the local stub server at several concurrencies."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.evaluate.runner import EvalConfig, evaluate
from bench.scoring import score_predictions
from must.models.base import load_model
from must.stub_server import StubServer
from must.timecode import format_interval, format_time

__all__ = ["scoring", "rewards", "harness", "endpoint"]


def _rows(n: int, rng) -> tuple[pd.DataFrame, dict[str, str]]:
    rows, preds = [], {}
    opts = "\n\nA: a\nB: b\nC: c\nD: d"
    for i in range(n):
        kind = ("TSG", "MTR", "LTR", "AVQA")[i % 4]
        t, d = int(rng.integers(0, 200)), 240.0
        if kind == "TSG":
            row = dict(question="When does the piano first start to play?", answer=format_time(t), qa_type="onset")
            preds[str(i)] = f"The piano starts at {format_time(t + int(rng.integers(-5, 5)) % 200)}."
        elif kind == "MTR":
            row = dict(question="When is(are) the highest intensity duration(s)?", answer=format_interval(t, t + 20), qa_type=None)
            preds[str(i)] = f"From {format_interval(t + 3, t + 25)}."
        elif kind == "LTR":
            row = dict(question="What best describes the change at 1:00?" + opts, answer="B", qa_type=None)
            preds[str(i)] = "Answer: " + "ABCD"[i % 4]
        else:
            row = dict(question="How many instruments are playing?", answer="three", qa_type="Counting", category="Audio")
            preds[str(i)] = "There are 3."
        rows.append(dict(id=str(i), track_id=f"t{i // 8}", task=kind, answers=[row["answer"]], split="test", duration=d, **row))
    return pd.DataFrame(rows), preds


def scoring(n: int = 20000) -> dict[str, Any]:
    """Predictions scored per second (TSG/MTR/LTR/AVQA mix; TAD measured separately, it runs a text encoder)."""
    rng = np.random.default_rng(0)
    bench, preds = _rows(n, rng)
    t0 = time.perf_counter()
    score_predictions(bench, preds)
    dt = time.perf_counter() - t0
    tad = pd.DataFrame([dict(id=str(i), track_id="t", task="TAD", question="Describe the change at 0:30.",
                             answer="The drums enter, adding a steady beat.", answers=["The drums enter, adding a steady beat."],
                             split="test") for i in range(200)])
    score_predictions(tad.head(2), {"0": "x", "1": "y"})  # load the encoder outside the timing
    t1 = time.perf_counter()
    score_predictions(tad, {str(i): "The drums come in with a beat." for i in range(200)})
    dt_tad = time.perf_counter() - t1
    return {"predictions_per_s_non_TAD": round(n / dt), "predictions_per_s_TAD": round(200 / dt_tad, 1)}


def rewards(n: int = 100000) -> dict[str, Any]:
    """Completions per second of the timestamp and interval rewards (one core), typical and worst-case text."""
    from rewards import REWARDS
    from rewards.base import parsed_intervals, parsed_time

    rng = np.random.default_rng(0)
    refs = [format_time(int(t)) for t in rng.integers(0, 240, n)]
    typical = [f"It starts at {format_time(int(t))}." for t in rng.integers(0, 240, n)]
    digits = [f"It starts at {format_time(int(t))}, take {i}." for i, t in enumerate(rng.integers(0, 240, n))]
    ivr = [format_interval(int(a), int(a) + 20) for a in rng.integers(0, 220, n)]
    ivc = [f"From {format_interval(int(a), int(a) + int(b))}." for a, b in zip(rng.integers(0, 220, n), rng.integers(5, 30, n))]
    ivd = [f"{format_interval(int(a), int(a) + int(b))} (take {i})" for i, (a, b) in enumerate(zip(rng.integers(0, 220, n), rng.integers(5, 30, n)))]
    out = {}
    for name, comps, kwargs, cache in (
        ("timestamp_exp", typical, dict(answer=refs, task=["TSG"] * n), parsed_time),
        ("timestamp_exp (extra digits: general parser)", digits, dict(answer=refs, task=["TSG"] * n), parsed_time),
        ("interval_iou", ivc, dict(answer=ivr, answers=[[x] for x in ivr], task=["MTR"] * n, duration=[240.0] * n), parsed_intervals),
        ("interval_iou (extra digits: general parser)", ivd, dict(answer=ivr, answers=[[x] for x in ivr], task=["MTR"] * n, duration=[240.0] * n), parsed_intervals),
    ):
        fn = REWARDS[name.split(" ")[0]]
        fn(comps[:100], **{k: v[:100] for k, v in kwargs.items()})  # imports and first-call setup out of the timing
        rates = []
        for _ in range(3):  # median of three cold-cache passes (timeit practice; one pass is at the GC's mercy)
            cache.cache_clear()
            t0 = time.perf_counter()
            fn(comps, **kwargs)
            rates.append(n / (time.perf_counter() - t0))
        out[name] = round(float(np.median(rates)))
    return {"completions_per_s": out, "target_per_s": 100000}


def harness(bench: str) -> dict[str, Any]:
    """Harness overhead per item (ms): wall time minus model time, with the zero-cost ``constant`` model."""
    model = load_model("constant")
    with tempfile.TemporaryDirectory() as d:
        non_tad = evaluate(EvalConfig(model="constant", bench=bench, out=str(Path(d) / "a"),
                                      tasks=["TSG", "LTR", "GTO", "MTR", "AVQA"]), model, progress=False)
        meta = __import__("json").loads((Path(d) / "a" / "run.json").read_text())
        evaluate(EvalConfig(model="constant", bench=bench, out=str(Path(d) / "b"), tasks=["TAD"]), model, progress=False)
        meta_tad = __import__("json").loads((Path(d) / "b" / "run.json").read_text())
    return {"ms_per_item_non_TAD": meta["harness_overhead_ms_per_item"], "ms_per_item_TAD (includes the text encoder)":
            meta_tad["harness_overhead_ms_per_item"], "items": non_tad["n"]["total"], "target_ms": 5.0}


def endpoint(bench: str, delay: float = 0.05, limit: int = 8) -> dict[str, Any]:
    """Items/s through ``openai:`` against the stub (``delay`` s per request) at concurrency 1, 4, 16."""
    out = {}
    with StubServer(reply="0:42", delay=delay) as stub:
        for c in (1, 4, 16):
            model = load_model(f"openai:{stub.url('ok')}#stub", concurrency=c, timeout=10, retries=0)
            with tempfile.TemporaryDirectory() as d:
                t0 = time.perf_counter()
                s = evaluate(EvalConfig(model="openai", bench=bench, out=d, limit=limit, batch_size=max(16, c), tasks=["TSG", "LTR", "MTR", "AVQA"]),
                             model, progress=False)
                dt = time.perf_counter() - t0
            model.close()
            out[f"concurrency {c}"] = round(s["n"]["total"] / dt, 1)
    return {"items_per_s": out, "stub_delay_s": delay}
