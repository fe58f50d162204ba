"""``openai:URL[#model]`` — an OpenAI-compatible chat-completions server (vLLM, hosted APIs).

Audio goes as a base64 WAV ``input_audio`` part (mono, ``sample_rate`` Hz). Requests run ``concurrency``
at a time, each with a ``timeout`` (seconds); connection errors, timeouts, HTTP 429 and 5xx are retried
``retries`` times with exponential backoff (``backoff`` × 2^attempt, plus jitter); other failures and
unusable responses become that item's error. The API key is read from the environment variable named by
``api_key_env`` (default ``OPENAI_API_KEY``) and is never logged or written to run files.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor

from must.models.base import Model, ModelError, Request, register_model

__all__ = ["ChatCompletionsModel", "wav_base64"]

log = logging.getLogger(__name__)
RETRYABLE = {408, 409, 425, 429, 500, 502, 503, 504}


def wav_base64(path: str, sample_rate: int = 16000, max_seconds: float | None = None) -> str:
    """The audio file as base64 of a 16-bit mono WAV at ``sample_rate``."""
    import soundfile as sf

    from must.audio import load_audio

    y, sr = load_audio(path, sample_rate)
    if max_seconds:
        y = y[: int(max_seconds * sr)]
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
    return base64.b64encode(buf.getvalue()).decode("ascii")


@register_model("openai")
class ChatCompletionsModel(Model):
    """Chat completions over HTTP with audio input, concurrency, timeouts and retries."""

    def __init__(self, target: str, concurrency: int = 4, timeout: float = 60.0, retries: int = 3, backoff: float = 1.0,
                 max_tokens: int = 128, temperature: float = 0.0, api_key_env: str = "OPENAI_API_KEY",
                 sample_rate: int = 16000, max_audio_seconds: float | None = None, send_audio: bool = True):
        import requests

        url, _, model = target.partition("#")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"openai model {target!r}: expected openai:http(s)://host[:port]/v1[#model]")
        self.url = url.rstrip("/") if url.rstrip("/").endswith("/chat/completions") else url.rstrip("/") + "/chat/completions"
        self.model = model or "default"
        self.name = f"openai:{self.model}"
        self.concurrency, self.timeout, self.retries, self.backoff = max(1, concurrency), timeout, retries, backoff
        self.max_tokens, self.temperature = max_tokens, temperature
        self.sample_rate, self.max_audio_seconds, self.send_audio = sample_rate, max_audio_seconds, send_audio
        self.needs_audio = send_audio
        key = os.environ.get(api_key_env)
        self._headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
        self._session = requests.Session()
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency)
        self.stats = {"requests": 0, "retries": 0, "failures": 0}

    def _payload(self, r: Request) -> dict:
        content: list[dict] = [{"type": "text", "text": r.prompt}]
        if self.send_audio and r.audio:
            content.append({"type": "input_audio", "input_audio": {
                "data": wav_base64(r.audio, self.sample_rate, self.max_audio_seconds), "format": "wav"}})
        messages = ([{"role": "system", "content": r.system}] if r.system else []) + [{"role": "user", "content": content}]
        return {"model": self.model, "messages": messages, "max_tokens": self.max_tokens, "temperature": self.temperature}

    def _post(self, payload: dict) -> str:
        import requests

        last = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats["retries"] += 1
                time.sleep(self.backoff * 2 ** (attempt - 1) * (1 + 0.25 * random.random()))
            self.stats["requests"] += 1
            try:
                resp = self._session.post(self.url, json=payload, headers=self._headers, timeout=self.timeout)
            except requests.Timeout:
                last = f"timed out after {self.timeout:.0f} s"
                continue
            except requests.ConnectionError as e:
                last = f"connection failed ({type(e).__name__})"
                continue
            if resp.status_code in RETRYABLE:
                last = f"HTTP {resp.status_code}"
                continue
            if resp.status_code != 200:
                raise ModelError(f"HTTP {resp.status_code}: {resp.text[:200]}")
            try:
                content = resp.json()["choices"][0]["message"]["content"]
            except (ValueError, KeyError, IndexError, TypeError):
                raise ModelError(f"unusable response (not chat-completions JSON): {resp.text[:120]!r}") from None
            if isinstance(content, list):  # some servers return content parts
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
        raise ModelError(f"gave up after {self.retries + 1} attempt(s): {last}")

    def _one(self, r: Request) -> str | BaseException:
        try:
            return self._post(self._payload(r))
        except Exception as e:  # recorded per item; the run goes on
            self.stats["failures"] += 1
            return e if isinstance(e, ModelError) else ModelError(f"{type(e).__name__}: {e}")

    def generate(self, requests: list[Request]) -> list[str | BaseException]:
        """Answers for a batch, ``concurrency`` requests in flight."""
        return list(self._pool.map(self._one, requests))

    def close(self) -> None:
        """Shut the pool and report retry counts (never the key)."""
        self._pool.shutdown(wait=True)
        self._session.close()
        if self.stats["retries"] or self.stats["failures"]:
            log.info("%s: %d requests, %d retries, %d failed items", self.name, self.stats["requests"],
                     self.stats["retries"], self.stats["failures"])
