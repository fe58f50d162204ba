"""The model interface, request objects, and the registry that maps spec strings to adapters.

A spec is ``NAME`` (a baseline: ``random``, ``prior``, ``constant``, ``text-only``, ``dsp``, ``oracle``) or
``KIND:ARG`` (``hf:PATH``, ``openai:URL[#model]``, ``python:module:function``, ``jsonl:FILE``,
``must:CHECKPOINT``). Extra keyword arguments come from ``--model-args k=v,k=v``.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Request", "Model", "ModelError", "MODELS", "register_model", "load_model", "parse_model_args"]


class ModelError(RuntimeError):
    """A model failed on one item (the run records it and goes on)."""


@dataclass
class Request:
    """One question put to a model: the rendered prompt plus everything an adapter may need."""

    id: str
    task: str
    question: str
    prompt: str
    system: str
    audio: str | None
    duration: float | None
    item: dict[str, Any] = field(default_factory=dict)

    def messages(self) -> list[dict[str, Any]]:
        """Chat messages (system + user text); adapters add the audio in their own format."""
        out = [{"role": "system", "content": self.system}] if self.system else []
        return out + [{"role": "user", "content": self.prompt}]


class Model(ABC):
    """A model answers a batch of requests; an item may be answered by an exception instance (its error)."""

    name: str = "model"
    needs_audio: bool = True

    @abstractmethod
    def generate(self, requests: list[Request]) -> list[str | BaseException]:
        """One answer (or the exception that prevented it) per request, in order."""

    def fit(self, train: "Any") -> None:  # noqa: B027  (optional hook)
        """Baselines that learn from the train split override this; others ignore it."""

    def close(self) -> None:  # noqa: B027
        """Release resources (servers, pools)."""


MODELS: dict[str, Callable[..., Model]] = {}


def register_model(name: str) -> Callable:
    """Decorator: register a model factory under ``name`` (a baseline name or a ``KIND:`` prefix)."""

    def wrap(factory: Callable[..., Model]) -> Callable[..., Model]:
        MODELS[name] = factory
        return factory

    return wrap


def parse_model_args(text: str | None) -> dict[str, Any]:
    """``"a=1,b=x"`` → ``{"a": 1, "b": "x"}`` (YAML scalars)."""
    import yaml

    out: dict[str, Any] = {}
    for part in filter(None, (text or "").split(",")):
        if "=" not in part:
            raise ValueError(f"model argument {part!r} is not key=value")
        k, v = part.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def _ensure_registered() -> None:
    for module in ("must.models.adapters", "must.models.hf", "must.models.openai", "must.models.must_model",
                   "must.models.heard_model", "bench.baselines"):
        importlib.import_module(module)


def load_model(spec: str, **kwargs: Any) -> Model:
    """Instantiate the adapter for ``spec`` (``ValueError`` listing the known specs otherwise)."""
    _ensure_registered()
    if spec in MODELS:
        return MODELS[spec](**kwargs)
    kind, sep, arg = spec.partition(":")
    if sep and kind in MODELS:
        return MODELS[kind](arg, **kwargs)
    known = sorted(k for k in MODELS if k not in ("hf", "openai", "python", "jsonl", "must", "heard"))
    raise ValueError(f"unknown model spec {spec!r}: use one of {known} or hf:PATH, openai:URL[#model], "
                     "python:module:function, jsonl:FILE, must:CHECKPOINT, heard:CHECKPOINT")
