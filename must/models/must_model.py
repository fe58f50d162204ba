"""``must:CHECKPOINT`` — the suite's own MusT model, from any stage's ``final/`` directory (safetensors)."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from must.models.base import Model, ModelError, Request, register_model

if TYPE_CHECKING:
    import torch

__all__ = ["MusTAdapter"]


@register_model("must")
class MusTAdapter(Model):
    """Greedy answers from a MusT checkpoint; audio features are computed once per track. ``choices="scored"``
    (``--model-args choices=scored``) picks LTR and GTO letters from what the model says it heard, and
    ``choices="constrained"`` holds LTR answers to an option's description and its letter and GTO answers to three
    distinct times, lettered by their most probable ordering, and writes TSG and MTR times from the model's whole
    distribution over seconds (:mod:`must.model.inference`); the default ``generate`` takes the letter and the
    times the model writes. ``ltr_calibration`` (``constrained`` only): weight of each LTR option's score at other
    moments of the track, subtracted (0: off, how LTR was scored before this option existed). ``gto_scan``
    (``constrained`` only): GTO's times also from LTR questions asked at every second (false: from the pointer alone,
    how GTO was answered before this option existed; with the scan a GTO answer takes about 1.5 s on 2 CPU cores).
    ``gto_grounding`` (``constrained`` only): a GTO change that is a source entering or stopping also timed by the
    model's answer to TSG's question about that source (false: without, as before this option existed).
    ``ltr_grounding`` (``constrained`` only): an LTR option that is a source entering or stopping is raised or lowered
    by how much of TSG's answer about that source falls within 3 s of the asked time (false: as before this option
    existed). ``tsg_scan`` (``constrained`` only): a TSG time also from LTR's question about the asked change, asked
    at every second (false: from the pointer alone, as before this option existed; a TSG answer takes about 0.5 s
    with the scan and 0.1 s without, on 2 CPU cores). ``gto_min_gap`` (``constrained`` only): the fewest seconds between consecutive changes of a GTO
    ordering (default :data:`must.model.inference.GTO_MIN_GAP`; 1 orders them as before this option existed).
    ``avqa_closed`` (``constrained`` only): an AVQA answer is the most probable of the answers the question allows (the
    two instruments it names, else the MUSIC-AVQA vocabulary; false: the greedy text, as before this option existed).
    ``tsg_pointer_weight``, ``tsg_scan_weight`` (``constrained`` with ``tsg_scan`` only): how a TSG time weighs the
    pointer's distribution against the scan, ``p(t)^a · exp(b · s(t))`` (defaults
    :data:`must.model.inference.TSG_POINTER_WEIGHT`, :data:`~must.model.inference.TSG_SCAN_WEIGHT`; fitted on val for
    one checkpoint by ``python -m benchmarks.tsg_weights``). ``tad_choice`` (``constrained`` only): a TAD description
    opens with the change the model finds most likely among every source entering or stopping and the music's own
    changes (:func:`must.model.inference.tad_change_choice`; false: greedy, as before this option existed)."""

    def __init__(self, path: str, max_new_tokens: int = 48, cache_tracks: int = 64, choices: str = "generate",
                 ltr_calibration: float | None = None, gto_scan: bool = True, gto_min_gap: int | None = None,
                 gto_grounding: bool = True, ltr_grounding: bool = True, tsg_scan: bool = True,
                 avqa_closed: bool = True, tsg_pointer_weight: float | None = None,
                 tsg_scan_weight: float | None = None, tad_choice: bool = True):
        import torch

        from bench.evaluate.prompts import load_prompts
        from must.model import MusTForCausalLM, MusTProcessor
        from must.model.inference import CHOICE_MODES, GTO_MIN_GAP, LTR_CALIBRATION, TSG_POINTER_WEIGHT, TSG_SCAN_WEIGHT

        if choices not in CHOICE_MODES:
            raise ValueError(f"must: choices must be one of {CHOICE_MODES}, got {choices!r}")

        if not (Path(path) / "config.json").is_file():  # from_pretrained would take it for a hub name
            raise FileNotFoundError(f"must:{path}: not a MusT checkpoint (a directory with config.json, e.g. "
                                    "RUN/train/stage4_grpo/final)")
        torch.set_num_threads(max(1, torch.get_num_threads()))
        self.model = MusTForCausalLM.from_pretrained(path).eval()
        self.processor = MusTProcessor.from_pretrained(path, self.model.config.max_seconds,
                                                        self.model.config.audio_first)
        # MusT was trained with the default answer-format instructions; keep them whatever the run's prompts
        self.instructions = load_prompts().instructions
        self.max_new_tokens, self.choices = max_new_tokens, choices
        self.ltr_calibration = LTR_CALIBRATION if ltr_calibration is None else float(ltr_calibration)
        self._features: OrderedDict = OrderedDict()
        self._cache_tracks = cache_tracks
        tail = path.rstrip("/").split("/")
        self.name = f"must:{tail[-2] if tail[-1] == 'final' and len(tail) > 1 else tail[-1]}" + ("" if choices == "generate" else f"+{choices}")
        flags = {"gto_scan": gto_scan, "gto_grounding": gto_grounding, "ltr_grounding": ltr_grounding,
                 "tsg_scan": tsg_scan, "avqa_closed": avqa_closed, "tad_choice": tad_choice}
        for key, value in flags.items():
            if not isinstance(value, bool):
                raise ValueError(f"must: {key} must be true or false, got {value!r}")
        self.gto_scan, self.gto_grounding, self.ltr_grounding = gto_scan, gto_grounding, ltr_grounding
        self.tsg_scan, self.avqa_closed, self.tad_choice = tsg_scan, avqa_closed, tad_choice
        self.gto_min_gap = GTO_MIN_GAP if gto_min_gap is None else gto_min_gap
        if isinstance(self.gto_min_gap, bool) or not isinstance(self.gto_min_gap, int) or self.gto_min_gap < 1:
            raise ValueError(f"must: gto_min_gap must be a whole number of seconds, at least 1, got {gto_min_gap!r}")
        if choices == "constrained" and self.ltr_calibration != LTR_CALIBRATION:
            self.name += f"(ltr_calibration={self.ltr_calibration:g})"
        if choices == "constrained":
            self.name += "".join(f"({key}=false)" for key, value in flags.items() if not value)
        if choices == "constrained" and self.gto_min_gap != GTO_MIN_GAP:
            self.name += f"(gto_min_gap={self.gto_min_gap})"
        self.tsg_weights = (TSG_POINTER_WEIGHT if tsg_pointer_weight is None else tsg_pointer_weight,
                            TSG_SCAN_WEIGHT if tsg_scan_weight is None else tsg_scan_weight)
        for key, value in zip(("tsg_pointer_weight", "tsg_scan_weight"), self.tsg_weights):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise ValueError(f"must: {key} must be a number, at least 0, got {value!r}")
        if choices == "constrained" and self.tsg_weights != (TSG_POINTER_WEIGHT, TSG_SCAN_WEIGHT):
            self.name += "(tsg_weights={:g},{:g})".format(*self.tsg_weights)

    def features_for(self, audio: str) -> torch.Tensor:
        """The encoder features of one audio file (computed once; the last ``cache_tracks`` files are kept)."""
        if audio not in self._features:
            self._features[audio] = self.model.encode_audio(self.processor.load_audio(audio))
            if len(self._features) > self._cache_tracks:
                self._features.popitem(last=False)
        return self._features[audio]

    def generate(self, requests: list[Request]) -> list[str | BaseException]:
        """Answers for a batch (an item whose audio fails is returned as its error)."""
        from must.model.inference import answer_batch

        out: list[str | BaseException] = [ModelError("not run")] * len(requests)
        ok, feats, items = [], [], []
        for i, r in enumerate(requests):
            try:
                feats.append(self.features_for(r.audio))
            except Exception as e:  # unreadable audio for one item
                out[i] = ModelError(f"{type(e).__name__}: {e}")
                continue
            ok.append(i)
            items.append({"question": r.question, "duration": float(r.duration or len(feats[-1]) / 10),
                          "instruction": self.instructions.get(r.task, ""), "task": r.task})
        if ok:
            for i, a in zip(ok, answer_batch(self.model, self.processor, items, feats, self.max_new_tokens, self.choices,
                                                self.ltr_calibration, self.gto_scan, self.gto_min_gap,
                                                self.gto_grounding, self.ltr_grounding, self.tsg_scan,
                                                self.avqa_closed, self.tsg_weights, self.tad_choice)):
                out[i] = a
        return out
