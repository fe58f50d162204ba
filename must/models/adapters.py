"""Simple adapters: ``python:module:function`` callables and ``jsonl:FILE`` predictions made elsewhere."""

from __future__ import annotations

import importlib
from pathlib import Path

from must.models.base import Model, ModelError, Request, register_model

__all__ = ["CallableModel", "PredictionsFile"]


@register_model("python")
class CallableModel(Model):
    """Any callable ``(audio_path, question, item) -> str`` named as ``module:function``."""

    def __init__(self, target: str, **kwargs):
        module, _, fn = target.rpartition(":")
        if not module or not fn:
            raise ValueError(f"python model {target!r}: expected python:module:function")
        self.fn = getattr(importlib.import_module(module), fn)
        if not callable(self.fn):
            raise TypeError(f"python model {target!r} is not callable")
        self.name = f"python:{target}"
        self.kwargs = kwargs

    def generate(self, requests: list[Request]) -> list[str | BaseException]:
        """Call the function once per request; an exception becomes that item's error."""
        out: list[str | BaseException] = []
        for r in requests:
            try:
                out.append(str(self.fn(r.audio, r.question, r.item, **self.kwargs)))
            except Exception as e:  # the user's code: any failure is that item's error
                out.append(ModelError(f"{type(e).__name__}: {e}"))
        return out


@register_model("jsonl")
class PredictionsFile(Model):
    """Predictions made elsewhere: JSONL/Parquet/CSV with ``id`` (or ``question_id``) and ``prediction``."""

    needs_audio = False

    def __init__(self, path: str, **kwargs):
        from bench.io import read_predictions

        self.path = Path(path)
        self.predictions = read_predictions(self.path)
        self.name = f"jsonl:{self.path.name}"

    def generate(self, requests: list[Request]) -> list[str | BaseException]:
        """The stored prediction per id (an error for ids the file lacks)."""
        return [self.predictions[r.id] if r.id in self.predictions else ModelError(f"no prediction for id {r.id} in {self.path}")
                for r in requests]
