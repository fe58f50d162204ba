"""MusT-small: a music encoder (log-mel → conv/transformer at 10 Hz with absolute time), a projector and a
small causal LM built locally, as a transformers ``PreTrainedModel`` (save/load with safetensors)."""

from must.model.configuration import MusTConfig
from must.model.modeling import MusTForCausalLM, MusTModel
from must.model.processing import MusTProcessor

__all__ = ["MusTConfig", "MusTModel", "MusTForCausalLM", "MusTProcessor"]
