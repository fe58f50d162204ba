"""``hf:PATH`` — a local transformers audio-language model (Qwen2-Audio / Qwen2.5-Omni style).

The processor turns the chat (system prompt, then a user turn with the audio and the question) into
model inputs with its chat template when it has one; generation is greedy. Audio longer than the
feature extractor's window (30 s for Whisper-style encoders) is truncated by the processor — the run
records it (``audio_truncated`` in the model's notes) so nobody mistakes it for full-track listening.
``trust_remote_code`` stays off unless ``--model-args trust_remote_code=true``.
"""

from __future__ import annotations

import logging

from must.models.base import Model, ModelError, Request, register_model

__all__ = ["HFAudioLM"]

log = logging.getLogger(__name__)


@register_model("hf")
class HFAudioLM(Model):
    """Greedy generation from a local ``AutoModelForMultimodalLM`` checkpoint with audio input."""

    def __init__(self, path: str, max_new_tokens: int = 64, trust_remote_code: bool = False, device: str = "cpu",
                 dtype: str = "float32", **kwargs):
        import torch
        from transformers import AutoModelForMultimodalLM, AutoProcessor

        self.torch = torch
        self.processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
        self.model = AutoModelForMultimodalLM.from_pretrained(path, trust_remote_code=trust_remote_code,
                                                              dtype=getattr(torch, dtype)).to(device).eval()
        self.device = device
        self.max_new_tokens = max_new_tokens
        fe = getattr(self.processor, "feature_extractor", None)
        self.sampling_rate = int(getattr(fe, "sampling_rate", 16000))
        self.window = float(getattr(fe, "chunk_length", 30) or 30)
        self.name = f"hf:{path.rstrip('/').split('/')[-1]}"
        self.truncated = 0

    def _prompt(self, r: Request) -> str:
        messages = ([{"role": "system", "content": r.system}] if r.system else []) + [
            {"role": "user", "content": [{"type": "audio", "audio_url": r.audio or ""}, {"type": "text", "text": r.prompt}]}]
        if getattr(self.processor, "chat_template", None):
            return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        audio_token = getattr(self.processor, "audio_token", "<|AUDIO|>")
        return f"{r.system}\n<|audio_bos|>{audio_token}<|audio_eos|>{r.prompt}\n"

    def _one(self, r: Request) -> str:
        from must.audio import load_audio

        y, sr = load_audio(r.audio, self.sampling_rate)
        if len(y) / sr > self.window:
            self.truncated += 1
        inputs = self.processor(text=[self._prompt(r)], audio=[y], sampling_rate=sr, return_tensors="pt")
        inputs = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in inputs.items()}
        with self.torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new = out[0, inputs["input_ids"].shape[1]:]
        return self.processor.batch_decode([new], skip_special_tokens=True)[0].strip()

    def generate(self, requests: list[Request]) -> list[str | BaseException]:
        """One greedy answer per request (an item that fails is returned as its error)."""
        out: list[str | BaseException] = []
        for r in requests:
            try:
                out.append(self._one(r))
            except Exception as e:  # one bad item (audio, length) must not end the run
                out.append(ModelError(f"{type(e).__name__}: {e}"))
        return out

    def close(self) -> None:
        """Report truncation once at the end."""
        if self.truncated:
            log.warning("%s: %d item(s) had audio longer than the model's %.0f s window and were truncated",
                        self.name, self.truncated, self.window)
