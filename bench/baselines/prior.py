"""``prior``: answer statistics of the train split, no audio and no question reading beyond its type."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pandas as pd

from bench.baselines.common import intensity_kind, question_time, template_key
from bench.metrics.text import meteor
from must.models.base import Model, Request, register_model
from must.timecode import format_interval, format_time, parse_intervals, parse_time

TIME_RE = re.compile(r"\d+:\d{2}")


@register_model("prior")
class PriorBaseline(Model):
    """Median relative TSG time per onset/offset, the commonest letter, the median MTR region per kind,
    the medoid TAD reference, the commonest AVQA answer per question template."""

    name = "prior"
    needs_audio = False
    wants_train = True

    def __init__(self, sample: int = 60):
        self.sample = sample
        self.tsg: dict[str, float] = {}
        self.letters: dict[str, str] = {}
        self.mtr: dict[str, tuple[float, float]] = {}
        self.tad = "At {t}, the music changes."
        self.avqa: dict[str, str] = {}
        self.avqa_any = "yes"

    def fit(self, train: pd.DataFrame | None) -> None:
        """Collect the statistics from the train split (defaults when there is none)."""
        if train is None or train.empty:
            return
        tsg = train[train.task == "TSG"]
        for kind, g in tsg.groupby("qa_type"):
            self.tsg[kind] = float(np.median([parse_time(a) / d for a, d in zip(g.answer, g.duration)]))
        for task in ("LTR", "GTO"):
            g = train[train.task == task]
            if len(g):
                self.letters[task] = Counter(g.answer).most_common(1)[0][0]
        for _, r in train[train.task == "MTR"].iterrows():
            s, e = parse_intervals(r.answer)[0]
            self.mtr.setdefault(intensity_kind(r.question), []).append((s / r.duration, e / r.duration))  # type: ignore[union-attr]
        self.mtr = {k: (float(np.median([a for a, _ in v])), float(np.median([b for _, b in v]))) for k, v in self.mtr.items()}
        refs = [a for a in train[train.task == "TAD"].answer][: self.sample]
        if refs:
            masked = [TIME_RE.sub("{t}", a, count=1) for a in refs]
            scores = [np.mean([meteor([o], m) for o in masked if o is not m]) for m in masked]
            self.tad = masked[int(np.argmax(scores))]
        avqa = train[train.task == "AVQA"]
        for key, g in avqa.groupby(avqa.question.map(template_key)):
            self.avqa[key] = Counter(g.answer).most_common(1)[0][0]
        if len(avqa):
            self.avqa_any = Counter(avqa.answer).most_common(1)[0][0]

    def answer(self, r: Request) -> str:
        """The prior's guess."""
        d = float(r.duration or 180.0)
        if r.task == "TSG":
            return format_time(self.tsg.get(r.item.get("qa_type") or "onset", 0.3) * d)
        if r.task in ("LTR", "GTO"):
            return self.letters.get(r.task, "A")
        if r.task == "MTR":
            s, e = self.mtr.get(intensity_kind(r.question), (0.4, 0.55))
            return format_interval(s * d, max(e, s + 0.02) * d)
        if r.task == "TAD":
            t = question_time(r.question)
            return self.tad.replace("{t}", format_time(t) if t is not None else "that point")
        return self.avqa.get(template_key(r.question), self.avqa_any)

    def generate(self, requests: list[Request]) -> list[str]:
        """Guesses for a batch."""
        return [self.answer(r) for r in requests]
