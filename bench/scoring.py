"""Score predictions against a benchmark exactly as MusTBench and MUSIC-AVQA define the metrics.

:func:`score_item` turns one raw answer into a parsed value and per-item scores (used while an
evaluation streams); :func:`summarize` aggregates item results into the score JSON
(``TSG_onset`` … ``overall``, ``AVQA``, ``n``, ``unparsed``, ``missing``) in percent.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.metrics import avqa, choice, intervals, summary, timestamps
from bench.metrics import text as text_metrics
from must.answers import clean_text, option_texts, parse_choice, parse_interval_answer, parse_timestamp
from must.timecode import format_intervals, format_time

__all__ = ["ItemResult", "TextScorer", "score_item", "summarize", "score_predictions", "tsg_kind", "n_options"]

TSG_WINDOW = 3.0


@dataclass
class ItemResult:
    """One scored item: the parsed answer (canonical string), its status and per-item scores."""

    id: str
    task: str
    parsed: str | None
    status: str  # ok | unparsed | impossible | missing
    scores: dict[str, float] = field(default_factory=dict)
    kind: str | None = None  # TSG: onset/offset; AVQA: "<modality> <type>"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


class TextScorer:
    """METEOR + semantic similarity for TAD, with the encoder loaded once on first use."""

    def __init__(self, encoder_path: str | None = None):
        self.encoder_path = encoder_path
        self._encoder = None

    @property
    def encoder(self) -> text_metrics.TextEncoder:
        """The sentence encoder (loaded lazily)."""
        if self._encoder is None:
            self._encoder = text_metrics.load_encoder(self.encoder_path)
        return self._encoder

    def __call__(self, references: list[str], hypothesis: str) -> dict[str, float]:
        return {
            "meteor": text_metrics.meteor(references, hypothesis),
            "semantic": text_metrics.semantic_similarity(references, hypothesis, self.encoder),
        }

    def describe(self) -> dict[str, str]:
        """Which METEOR matching and which encoder were used."""
        return {"meteor_matching": text_metrics.meteor_matching(),
                "semantic_model": self.encoder.name if self._encoder else (self.encoder_path or "all-MiniLM-L6-v2")}


def tsg_kind(qa_type: str | None, question: str) -> str:
    """``onset`` or ``offset`` for a TSG question (from ``qa_type``, else from the wording)."""
    if qa_type in ("onset", "offset"):
        return qa_type
    q = question.lower()
    return "offset" if any(w in q for w in ("stop", "disappear", "finally", "last", "end")) else "onset"


def n_options(task: str, question: str) -> int:
    """Number of options: 4 for LTR, 6 for GTO (or as many as the question lists)."""
    listed = len(option_texts(question))
    return max(listed, 6 if task == "GTO" else 4)


def _duration(item: dict) -> float | None:
    d = item.get("duration")
    return None if d is None or (isinstance(d, float) and math.isnan(d)) else float(d)


def score_item(item: dict, prediction: str | None, text_scorer: TextScorer | None = None) -> ItemResult:
    """Parse and score one answer; never raises on model output (bad answers score 0)."""
    task, refs, iid = item["task"], [str(a) for a in item["answers"]], str(item["id"])
    if prediction is None:
        return _zero(item, "missing")
    if task == "TSG":
        p = parse_timestamp(prediction)
        kind = tsg_kind(item.get("qa_type"), item["question"])
        ref_times = [parse_timestamp(r).value for r in refs]
        if not p.ok:
            return ItemResult(iid, task, None, p.status, {"hit": 0.0}, kind)
        err = min(abs(p.value - r) for r in ref_times)
        return ItemResult(iid, task, format_time(p.value), "ok", {"hit": float(err <= TSG_WINDOW), "error": err}, kind)
    if task in ("LTR", "GTO"):
        p = parse_choice(prediction, n_options(task, item["question"]), item["question"])
        ok = p.ok and choice.correct([refs], [p.value])[0]
        return ItemResult(iid, task, p.value, p.status, {"correct": float(ok)})
    if task == "AVQA":
        p = avqa.normalize_answer(prediction)
        kind = f"{item.get('category')} {item.get('qa_type')}"
        ok = p.ok and choice.correct([[avqa.normalize_answer(r).value or r for r in refs]], [p.value])[0]
        return ItemResult(iid, task, p.value, p.status, {"correct": float(ok)}, kind)
    if task == "MTR":
        p = parse_interval_answer(prediction, _duration(item))
        ref = [iv for r in refs for iv in parse_interval_answer(r).value or []]
        if not p.ok:
            return ItemResult(iid, task, None, p.status, {"iou": 0.0, "f1": 0.0})
        est = np.array(p.value, dtype=float).reshape(-1, 2)
        s = {"iou": intervals.temporal_iou(ref, est), "f1": intervals.segment_f1(ref, est)}
        return ItemResult(iid, task, format_intervals(p.value), "ok", s)
    if task == "TAD":
        hyp = clean_text(prediction).strip()
        if not hyp:
            return ItemResult(iid, task, None, "unparsed", {"meteor": 0.0, "semantic": 0.0})
        s = (text_scorer or TextScorer())(refs, hyp)
        return ItemResult(iid, task, hyp[:500], "ok", s)
    raise ValueError(f"item {iid}: unknown task {task!r}")


def _zero(item: dict, status: str) -> ItemResult:
    task = item["task"]
    keys = {"TSG": ["hit"], "LTR": ["correct"], "GTO": ["correct"], "AVQA": ["correct"],
            "MTR": ["iou", "f1"], "TAD": ["meteor", "semantic"]}[task]
    kind = None
    if task == "TSG":
        kind = tsg_kind(item.get("qa_type"), item["question"])
    elif task == "AVQA":
        kind = f"{item.get('category')} {item.get('qa_type')}"
    return ItemResult(str(item["id"]), task, None, status, {k: 0.0 for k in keys}, kind)


def _pct(values: list[float]) -> float:
    return 100.0 * float(np.mean(values)) if values else 0.0


def summarize(results: list[ItemResult], text_info: dict[str, str] | None = None) -> dict[str, Any]:
    """The score JSON (percentages) from item results: only keys whose tasks are present."""
    by_task: dict[str, list[ItemResult]] = defaultdict(list)
    for r in results:
        by_task[r.task].append(r)
    sub: dict[str, float] = {}
    tsg = by_task.get("TSG", [])
    for kind in ("onset", "offset"):
        vals = [r.scores["hit"] for r in tsg if r.kind == kind]
        if vals:
            sub[f"TSG_{kind}"] = _pct(vals)
    for task in ("LTR", "GTO"):
        if by_task.get(task):
            sub[task] = _pct([r.scores["correct"] for r in by_task[task]])
    if by_task.get("TAD"):
        sub["TAD_METEOR"] = _pct([r.scores["meteor"] for r in by_task["TAD"]])
        sub["TAD_semantic"] = _pct([r.scores["semantic"] for r in by_task["TAD"]])
    if by_task.get("MTR"):
        sub["MTR_IoU"] = _pct([r.scores["iou"] for r in by_task["MTR"]])
        sub["MTR_F1"] = _pct([r.scores["f1"] for r in by_task["MTR"]])
    out: dict[str, Any] = {}
    tasks = summary.task_scores(sub)
    for key in ("TSG_onset", "TSG_offset", "TSG", "LTR", "TAD_METEOR", "TAD_semantic", "TAD", "GTO", "MTR_IoU", "MTR_F1", "MTR"):
        if key in sub:
            out[key] = sub[key]
        elif key in tasks:
            out[key] = tasks[key]
    if sub:
        out["overall"] = summary.overall(sub)
    if by_task.get("AVQA"):
        out["AVQA"] = avqa.bucket_accuracy(
            (r.kind.rsplit(" ", 1)[0], r.kind.rsplit(" ", 1)[1], bool(r.scores["correct"])) for r in by_task["AVQA"]
        )
    out["n"] = {t: len(v) for t, v in by_task.items()} | {"total": len(results)}
    out["unparsed"] = {t: sum(r.status in ("unparsed", "impossible") for r in v) for t, v in by_task.items()}
    out["missing"] = {t: sum(r.status == "missing" for r in v) for t, v in by_task.items()}
    if "TAD" in by_task and text_info:
        out.update(text_info)
    return out


def score_predictions(
    bench: pd.DataFrame, predictions: dict[str, str], encoder_path: str | None = None, progress: bool = False
) -> tuple[list[ItemResult], dict[str, Any]]:
    """Score every benchmark item (a missing prediction counts as wrong) and summarise."""
    scorer = TextScorer(encoder_path)
    rows = bench.to_dict("records")
    iterator = rows
    if progress:
        from tqdm import tqdm

        iterator = tqdm(rows, desc="scoring", unit="item", leave=False)
    results = [score_item(row, predictions.get(str(row["id"])), scorer) for row in iterator]
    info = scorer.describe() if any(r.task == "TAD" for r in results) else None
    return results, summarize(results, info)

