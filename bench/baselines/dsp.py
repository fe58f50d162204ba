"""``dsp``: a signal-processing baseline with librosa — it listens, but understands nothing.

Per track (cached): HPSS + band split into drums / bass / other pseudo-stems, loudness steps (mean level
over the next 4 s minus the previous 4 s) per pseudo-stem and for the mix, the Amuse per-segment tempo,
and the estimated annotation (:func:`bench.annotate.estimate.annotate_audio`). Then per task:

- TSG: the source's band (drums, bass, or "other" for the rest); onset = its first activity or largest
  rise, offset = its last activity or largest drop.
- LTR: each option's clauses ("the X enters", "the tempo speeds up", "no noticeable change" …) are scored
  against the measured changes at the asked time; the best-supported option wins.
- TAD: a sentence naming the strongest measured changes at the asked time.
- GTO: each transition is placed at the time its evidence peaks; the implied order picks the letter.
- MTR: the estimated intensity regions. AVQA: band activity, levels and entry order.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from bench.annotate import intensity as inten
from bench.annotate.estimate import annotate_audio
from bench.annotate.sources import HPSSBandSeparator
from bench.baselines.common import intensity_kind, question_source, question_time
from bench.tasks.gto import ORDERINGS
from must.answers import LETTERS, labelled_changes, option_texts
from must.audio import load_audio
from must.models.base import Model, ModelError, Request, register_model
from must.timecode import format_intervals, format_time

BASS_WORDS = ("bass", "tuba", "contrabass")
CLAUSE_RE = re.compile(r"the ([a-z_ ]+?) (enters|enter|stops|stop)\b|tempo (speeds up|slows down)|gets (louder|softer)|(no noticeable change)")
HOP, WINDOW = 0.5, 4.0


def band_of(source: str) -> str:
    """Which pseudo-stem stands for a named source."""
    s = source.lower()
    if "drum" in s or "perc" in s:
        return "drums"
    return "bass" if any(w in s for w in BASS_WORDS) else "other"


class TrackAnalysis:
    """Pseudo-stems, loudness curves, steps and the estimated annotation of one audio file."""

    def __init__(self, path: str, sr: int = 22050):
        y, sr = load_audio(path, sr)
        self.duration = len(y) / sr
        stems = HPSSBandSeparator().separate(y, sr)
        self.times = inten.frame_times(self.duration, HOP)
        self.db = {name: 20 * np.log10(np.maximum(inten.windowed_rms(sig, sr, self.times, 1.0), 1e-6))
                   for name, sig in {"mix": y, **stems}.items()}
        k = int(WINDOW / HOP)
        self.step = {}
        for name, db in self.db.items():
            step = np.zeros_like(db)
            for i in range(k, len(db) - k):
                step[i] = db[i : i + k].mean() - db[i - k : i].mean()
            self.step[name] = step
        self.ann = annotate_audio("dsp", y, sr, stems=stems)

    def at(self, name: str, t: float) -> float:
        """Loudness step of a pseudo-stem (or ``mix``) at time ``t`` (dB)."""
        i = int(np.clip(round(t / HOP), 0, len(self.times) - 1))
        return float(self.step[name][max(0, i - 1) : i + 2].max() if self.step[name][i] >= 0 else self.step[name][max(0, i - 1) : i + 2].min())

    def tempo_change(self, t: float) -> float:
        """Relative tempo change across ``t`` from the Amuse per-segment tempi."""
        r = self.ann.rhythm
        before = [tp for s, tp in zip(r.starts, r.tempos) if s + r.segment_seconds <= t + 1e-6]
        after = [tp for s, tp in zip(r.starts, r.tempos) if s >= t - 1e-6]
        if not before or not after or before[-1] <= 0:
            return 0.0
        return (after[0] - before[-1]) / before[-1]

    def evidence(self, clause: tuple, t: float) -> float:
        """How well the audio supports one clause at time ``t`` (about -1 … 1)."""
        source, verb, tempo, loud, none = clause
        if none:
            changes = [abs(self.at(n, t)) / 6 for n in ("mix", "drums", "bass", "other")] + [abs(self.tempo_change(t)) / 0.2]
            return 1.0 - max(changes)
        if tempo:
            rel = self.tempo_change(t) / 0.2
            return rel if tempo == "speeds up" else -rel
        if loud:
            step = self.at("mix", t) / 6
            return step if loud == "louder" else -step
        step = self.at(band_of(source), t) / 6
        return step if verb.startswith("enter") else -step

    def entry_exit(self, band: str) -> tuple[float, float]:
        """First activity and last activity of a pseudo-stem (largest rise / drop when it spans the track)."""
        spans = self.ann.activity.get(band) or []
        first = min((s for s, _ in spans), default=None)
        last = max((e for _, e in spans), default=None)
        if first is None or first < 1.0:
            first = float(self.times[int(np.argmax(self.step[band]))])
        if last is None or last > self.duration - 3.0:
            last = float(self.times[int(np.argmin(self.step[band]))])
        return first, last


def clauses(text: str) -> list[tuple]:
    """The change clauses an option text contains."""
    return CLAUSE_RE.findall(text.lower())


@lru_cache(maxsize=16)
def analyse(path: str) -> TrackAnalysis:
    """Cached :class:`TrackAnalysis` (questions come in runs of the same track)."""
    return TrackAnalysis(path)


@register_model("dsp")
class DSPBaseline(Model):
    """Answers from onset/energy/beat/spectral cues measured with librosa."""

    name = "dsp"

    def answer(self, r: Request) -> str:
        """The DSP guess for one item."""
        a = analyse(r.audio)
        q = r.question
        t = question_time(q)
        if r.task == "TSG":
            first, last = a.entry_exit(band_of(question_source(q) or ""))
            return format_time(last if (r.item.get("qa_type") == "offset" or "stop" in q or "last" in q) else first)
        if r.task == "LTR":
            opts = option_texts(q)
            scores = {k: np.mean([a.evidence(c, t or 0.0) for c in clauses(v)] or [-9]) for k, v in opts.items()}
            return max(scores, key=scores.get) if scores else "A"
        if r.task == "GTO":
            labels = labelled_changes(q)
            inside = (a.times > 2) & (a.times < a.duration - 2)
            when = {}
            for lab, text in labels.items():
                cs = clauses(text)
                curve = [np.mean([a.evidence(c, float(tt)) for c in cs] or [0]) if ok else -9 for tt, ok in zip(a.times, inside)]
                when[lab] = float(a.times[int(np.argmax(curve))])
            order = tuple(sorted(when, key=when.get))
            return LETTERS[ORDERINGS.index(order)] if order in ORDERINGS else "A"
        if r.task == "MTR":
            regions = a.ann.regions.get(intensity_kind(q)) or [(0.0, a.duration)]
            return format_intervals(regions)
        if r.task == "TAD":
            return self._describe(a, t or 0.0)
        return self._avqa(a, q)

    @staticmethod
    def _describe(a: TrackAnalysis, t: float) -> str:
        cands = {"the drums enter": a.at("drums", t), "the drums stop": -a.at("drums", t),
                 "the bass enters": a.at("bass", t), "the bass stops": -a.at("bass", t),
                 "a new instrument enters": a.at("other", t), "an instrument stops": -a.at("other", t),
                 "the music gets louder": a.at("mix", t), "the music gets softer": -a.at("mix", t)}
        rel = a.tempo_change(t)
        best = sorted(cands, key=cands.get, reverse=True)[:2]
        parts = [p for p in best if cands[p] > 2.0]
        if abs(rel) > 0.15:
            r = a.ann.rhythm
            before = [tp for s, tp in zip(r.starts, r.tempos) if s + r.segment_seconds <= t + 1e-6][-1]
            parts.append(f"the tempo {'speeds up' if rel > 0 else 'slows down'} from about {before:.0f} to {before * (1 + rel):.0f} BPM")
        if not parts:
            return f"At {format_time(t)}, there is no noticeable change."
        return f"At {format_time(t)}, " + " and ".join(parts) + "."

    @staticmethod
    def _avqa(a: TrackAnalysis, q: str) -> str:
        from bench.metrics.avqa import NUMBERS

        ql = q.lower()
        share = {b: sum(e - s for s, e in a.ann.activity.get(b, [])) / a.duration for b in ("drums", "bass", "other")}
        if ql.startswith("how many"):
            t = question_time(q)
            if t is not None:
                n = sum(1 for b in ("drums", "bass", "other") if any(s <= t < e for s, e in a.ann.activity.get(b, [])))
                return NUMBERS[min(n + 1, 10)]
            return NUMBERS[min(1 + sum(v > 0.2 for v in share.values()), 10)]
        m = re.search(r"is the (.+?) louder than the (.+?)\?", ql)
        if m:
            x, y = band_of(m.group(1)), band_of(m.group(2))
            return "yes" if x != y and a.db[x].mean() > a.db[y].mean() else "no"
        m = re.search(r"(?:is there a|are there) (.+?) in", ql)
        if m:
            band = band_of(m.group(1))
            return "yes" if band == "other" or share[band] > 0.2 else "no"
        m = re.search(r"the (.+?) or the (.+?)\?", ql)
        if m:
            x, y = m.group(1), m.group(2)
            return (x if a.entry_exit(band_of(x))[0] <= a.entry_exit(band_of(y))[0] else y).replace(" ", "_")
        return "piano"

    def generate(self, requests: list[Request]) -> list[str | BaseException]:
        """Answers for a batch (a track that cannot be analysed is that item's error)."""
        out: list[str | BaseException] = []
        for r in requests:
            try:
                out.append(self.answer(r))
            except Exception as e:  # bad audio for one track must not stop the run
                out.append(ModelError(f"dsp analysis failed: {type(e).__name__}: {e}"))
        return out
