"""``random``: uniform guesses over each task's answer space (seeded per item)."""

from __future__ import annotations

from bench.baselines.common import avqa_candidates, item_rng, letters_for
from must.models.base import Model, Request, register_model
from must.timecode import format_interval, format_time

DESCRIPTIONS = ["The music changes.", "A new instrument enters.", "An instrument stops.", "The tempo changes.",
                "The music gets louder.", "The music gets softer."]


@register_model("random")
class RandomBaseline(Model):
    """Chance level: uniform time, uniform letter, a random interval, a random generic description."""

    name = "random"
    needs_audio = False

    def __init__(self, seed: int = 0):
        self.seed = seed

    def answer(self, r: Request) -> str:
        """One uniform guess."""
        rng = item_rng(self.seed, r.id)
        d = float(r.duration or 180.0)
        if r.task == "TSG":
            return format_time(rng.uniform(0, d))
        if r.task in ("LTR", "GTO"):
            letters = letters_for(r.item)
            return letters[int(rng.integers(len(letters)))]
        if r.task == "MTR":
            length = rng.uniform(0.05, 0.3) * d
            start = rng.uniform(0, d - length)
            return format_interval(start, start + length)
        if r.task == "TAD":
            return DESCRIPTIONS[int(rng.integers(len(DESCRIPTIONS)))]
        cands = avqa_candidates(r.question)
        return cands[int(rng.integers(len(cands)))]

    def generate(self, requests: list[Request]) -> list[str]:
        """Guesses for a batch."""
        return [self.answer(r) for r in requests]
