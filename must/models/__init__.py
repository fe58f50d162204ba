"""Model adapters behind one small interface (lm-eval style): ``generate(requests) -> list[str]``."""

from must.models.base import Model, ModelError, Request, load_model, register_model, MODELS

__all__ = ["Model", "ModelError", "Request", "load_model", "register_model", "MODELS"]
