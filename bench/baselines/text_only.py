"""``text-only``: a question-only model trained on the train split — it reads the question, never the audio.

It measures how much the questions leak: option wording (LTR), kinds of change and their usual order
(GTO), source names and times (TSG), question templates (AVQA). Logistic regression on word features.
"""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np
import pandas as pd

from bench.baselines.common import avqa_candidates, intensity_kind, question_source, question_time
from bench.baselines.prior import PriorBaseline
from must.answers import labelled_changes, option_texts
from must.models.base import Model, Request, register_model
from must.timecode import format_interval, format_time, parse_intervals, parse_time


def _kind(text: str) -> str:
    t = text.lower()
    for word, kind in (("enter", "enter"), ("stop", "exit"), ("speeds up", "faster"), ("slows down", "slower"),
                       ("louder", "louder"), ("softer", "softer"), ("no noticeable", "none")):
        if word in t:
            return kind
    return "other"


def _ltr_features(question: str, option: str) -> str:
    t = question_time(question)
    bucket = "t_none" if t is None else f"t{min(int(t // 20), 9)}"
    words = re.findall(r"[a-z]+", option.lower())
    return " ".join(words + [f"{bucket}_{_kind(option)}", f"kind_{_kind(option)}"])


def _gto_features(question: str, ordering: str) -> str:
    labels = labelled_changes(question)
    seq = re.findall(r"\(([XYZ])\)", ordering)
    kinds = [_kind(labels.get(x, "")) for x in seq]
    feats = [f"{a}_before_{b}" for i, a in enumerate(kinds) for b in kinds[i + 1:]]
    return " ".join(feats + [f"first_{kinds[0]}" if kinds else "first_none"])


class _OptionRanker:
    """Scores options with a logistic regression on bag-of-words features (correct vs not)."""

    def __init__(self):
        self.model = None
        self.vec = None

    def fit(self, texts: list[str], labels: list[int]) -> None:
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.linear_model import LogisticRegression

        if len(set(labels)) < 2:
            return
        self.vec = CountVectorizer(token_pattern=r"[^ ]+", binary=True)
        self.model = LogisticRegression(C=0.5, max_iter=2000).fit(self.vec.fit_transform(texts), labels)

    def best(self, texts: list[str]) -> int:
        if self.model is None:
            return 0
        return int(np.argmax(self.model.predict_proba(self.vec.transform(texts))[:, 1]))


@register_model("text-only")
class TextOnlyBaseline(Model):
    """Question-only predictions learned from the train split."""

    name = "text-only"
    needs_audio = False
    wants_train = True

    def __init__(self):
        self.ltr, self.gto = _OptionRanker(), _OptionRanker()
        self.tsg: dict[tuple[str, str], float] = {}
        self.tsg_kind: dict[str, float] = {}
        self.mtr: dict[str, tuple[float, float]] = {}
        self.avqa = None
        self.prior = PriorBaseline()

    def fit(self, train: pd.DataFrame | None) -> None:
        """Learn from the train split's questions and answers."""
        self.prior.fit(train)
        if train is None or train.empty:
            return
        for task, ranker, features in (("LTR", self.ltr, _ltr_features), ("GTO", self.gto, _gto_features)):
            texts, labels = [], []
            for _, r in train[train.task == task].iterrows():
                for letter, opt in option_texts(r.question).items():
                    texts.append(features(r.question, opt))
                    labels.append(int(letter == r.answer))
            ranker.fit(texts, labels)
        times = defaultdict(list)
        for _, r in train[train.task == "TSG"].iterrows():
            times[(question_source(r.question) or "", r.qa_type)].append(parse_time(r.answer))
            times[("", r.qa_type)].append(parse_time(r.answer))
        self.tsg = {k: float(np.median(v)) for k, v in times.items()}
        spans = defaultdict(list)
        for _, r in train[train.task == "MTR"].iterrows():
            spans[intensity_kind(r.question)].append(parse_intervals(r.answer)[0])
        self.mtr = {k: (float(np.median([s for s, _ in v])), float(np.median([e for _, e in v]))) for k, v in spans.items()}
        avqa = train[train.task == "AVQA"]
        if avqa.answer.nunique() >= 2:
            from sklearn.feature_extraction.text import CountVectorizer
            from sklearn.linear_model import LogisticRegression

            vec = CountVectorizer(ngram_range=(1, 2), binary=True)
            self.avqa = (vec, LogisticRegression(C=1.0, max_iter=2000).fit(vec.fit_transform(avqa.question), avqa.answer))

    def answer(self, r: Request) -> str:
        """The question-only guess."""
        if r.task in ("LTR", "GTO"):
            opts = option_texts(r.question)
            letters = sorted(opts)
            if not letters:
                return "A"
            feats = [(_ltr_features if r.task == "LTR" else _gto_features)(r.question, opts[k]) for k in letters]
            return letters[(self.ltr if r.task == "LTR" else self.gto).best(feats)]
        if r.task == "TSG":
            kind = r.item.get("qa_type") or "onset"
            t = self.tsg.get((question_source(r.question) or "", kind), self.tsg.get(("", kind), 30.0))
            return format_time(t)
        if r.task == "MTR":
            s, e = self.mtr.get(intensity_kind(r.question), (20.0, 30.0))
            return format_interval(s, max(e, s + 1))
        if r.task == "AVQA" and self.avqa is not None:
            vec, clf = self.avqa
            probs = clf.predict_proba(vec.transform([r.question]))[0]
            cands = set(avqa_candidates(r.question))
            ranked = [c for c in clf.classes_[np.argsort(-probs)] if c in cands]
            return ranked[0] if ranked else clf.classes_[int(np.argmax(probs))]
        return self.prior.answer(r)

    def generate(self, requests: list[Request]) -> list[str]:
        """Guesses for a batch."""
        return [self.answer(r) for r in requests]
