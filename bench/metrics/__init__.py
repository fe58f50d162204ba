"""Pure metric functions (mir_eval style): each validates its inputs and documents its conventions."""

from bench.metrics import avqa, choice, intervals, summary, timestamps

__all__ = ["avqa", "choice", "intervals", "summary", "timestamps"]
