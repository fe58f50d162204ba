"""MusT processor: the tokenizer (words + ``M:SS`` time tokens + audio markers), prompts, and audio loading."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from must.timecode import format_time

__all__ = ["AUDIO_BOS", "AUDIO_EOS", "AUDIO_KEY", "MUSIC_CHANGE_WORDS", "MUSIC_READ_WORDS", "MUSIC_WORDS", "REGION_WORDS",
           "MusTProcessor",
           "time_tokens"]

AUDIO_BOS, AUDIO_EOS, AUDIO_KEY = "<|audio_bos|>", "<|audio_eos|>", "<|audio_key|>"
SYSTEM = "You are an expert music listener."
# the words the benchmark uses for the music as a whole ("the music gets louder", "the tempo slows down", "the
# dynamics swell", "the volume falls away", "the pace picks up"): music moments are added to them
MUSIC_WORDS = ("music", "tempo", "dynamics", "volume", "pace")
# the words that say which way it changes ("louder", "slows", "the dynamics swell", "the pace relaxes", …)
MUSIC_CHANGE_WORDS = ("louder", "softer", "speeds", "slows", "accelerates", "decelerates", "swell", "drop", "rises", "falls",
                      "picks", "relaxes")
# music words: their logits read the music's moment (MusTConfig.music_word_ids, one slot per word, in this order)
MUSIC_READ_WORDS = MUSIC_WORDS + MUSIC_CHANGE_WORDS
# the words MTR's questions name intensity with: a turn with one of them reads the heard intensity regions
# (MusTConfig.region_word_ids)
REGION_WORDS = ("intense", "intensity", "calmest")
ASSISTANT_TURN = " <|im_end|> <|im_start|> assistant"  # ends the user turn, opens the answer
# lone digits in a row, as the tokenizer splits numbers ("1 1 0"); not the digits of an M:SS time token
_SPLIT_NUMBER = re.compile(r"(?<![\w:.])\d(?: \d)+(?![\w:])")


@functools.lru_cache(maxsize=None)
def time_tokens(max_seconds: int) -> tuple[str, ...]:
    """``0:00``, ``0:01`` … one token per second up to ``max_seconds`` (cached: every prompt spells its audio span)."""
    return tuple(format_time(s) for s in range(max_seconds + 1))


class MusTProcessor:
    """Builds prompts for MusT (text with the audio span) and loads audio at the model's rate."""

    def __init__(self, tokenizer, max_seconds: int = 300, sample_rate: int = 16000, system: str = SYSTEM,
                 audio_first: bool = False):
        self.tokenizer, self.max_seconds, self.sample_rate, self.system = tokenizer, max_seconds, sample_rate, system
        self.audio_first = audio_first  # the checkpoint's prompt order (MusTConfig.audio_first)
        self.tokenizer.padding_side = "left"  # batched generation continues each prompt, so pads go first

    @classmethod
    def build(cls, texts: Iterable[str], max_seconds: int = 300) -> "MusTProcessor":
        """A processor with a word-level tokenizer trained locally on ``texts`` (no download)."""
        from tokenizers import AddedToken

        from must.tiny_models import build_word_tokenizer

        # the words that introduce and separate heard events, whatever the suite's text holds
        tok = build_word_tokenizer([*texts, "heard : ;"], extra_special=[AUDIO_BOS, AUDIO_EOS, AUDIO_KEY])
        # literal M:SS tokens, added in order so that their ids are contiguous (id - offset = second)
        tok.add_tokens([AddedToken(t, normalized=False, single_word=False) for t in time_tokens(max_seconds)])
        return cls(tok, max_seconds)

    @classmethod
    def from_pretrained(cls, path: str | Path, max_seconds: int = 300, audio_first: bool = False) -> "MusTProcessor":
        """Load the tokenizer saved next to a checkpoint."""
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(str(path)), max_seconds, audio_first=audio_first)

    def save_pretrained(self, path: str | Path) -> None:
        """Save the tokenizer next to a checkpoint."""
        self.tokenizer.save_pretrained(str(path))

    def config_ids(self) -> dict:
        """Token ids the model config needs (audio markers, first time token, digits)."""
        t = self.tokenizer
        return {"audio_bos_token_id": t.convert_tokens_to_ids(AUDIO_BOS), "audio_eos_token_id": t.convert_tokens_to_ids(AUDIO_EOS),
                "audio_key_token_id": t.convert_tokens_to_ids(AUDIO_KEY), "time_token_offset": t.convert_tokens_to_ids("0:00"),
                "digit_token_ids": [t.convert_tokens_to_ids(str(d)) for d in range(10)]}

    def moment_ids(self, sources: list[str]) -> dict:
        """Config ids that switch on source moments: per source, the token of the last word of its name as the
        suite writes it (``electric_bass`` → ``bass``; -1 if the tokenizer lacks it), and the turn markers."""
        return {"source_token_ids": self._word_ids(s.replace("_", " ").split()[-1].lower() for s in sources),
                **self._turn_ids()}

    def music_ids(self) -> dict:
        """Config ids that switch on music moments: the tokens of :data:`MUSIC_WORDS` the tokenizer has, and the
        turn markers."""
        return {"music_token_ids": [i for i in self._word_ids(MUSIC_WORDS) if i >= 0], **self._turn_ids()}

    def music_word_ids(self) -> dict:
        """Config ids that switch on music words: per word of :data:`MUSIC_READ_WORDS`, its token (-1 where the
        tokenizer lacks it), and the turn markers."""
        return {"music_word_ids": self._word_ids(MUSIC_READ_WORDS), **self._turn_ids()}

    def region_word_ids(self) -> dict:
        """Config ids that switch on the region pointer: the tokens of :data:`REGION_WORDS` the tokenizer has, and the
        turn markers."""
        return {"region_word_ids": [i for i in self._word_ids(REGION_WORDS) if i >= 0], **self._turn_ids()}

    def _word_ids(self, words: Iterable[str]) -> list[int]:
        """Per word, its token id, -1 where the tokenizer lacks it."""
        t = self.tokenizer
        return [-1 if i in (None, t.unk_token_id) else i for i in map(t.convert_tokens_to_ids, words)]

    def _turn_ids(self) -> dict:
        t = self.tokenizer
        return {"turn_token_ids": [t.convert_tokens_to_ids("<|im_start|>"), t.convert_tokens_to_ids("<|im_end|>")]}

    def audio_span(self, duration: float, key: int | None = None) -> str:
        """``[<|audio_key|> 1 2] <|audio_bos|> 0:00 0:01 … <|audio_eos|>`` covering the track."""
        n = min(int(math.ceil(duration)), self.max_seconds + 1)
        head = f"{AUDIO_KEY} {' '.join(str(key))} " if key is not None else ""
        return f"{head}{AUDIO_BOS} {' '.join(time_tokens(n - 1))} {AUDIO_EOS}"

    def prompt(self, question: str, duration: float, instruction: str = "", key: int | None = None,
               heard: str | None = None) -> str:
        """The full prompt up to the start of the answer. Question first (the default of older checkpoints):
        every second of audio is read knowing what is asked (the LM is causal). ``audio_first``: the audio span
        opens the user turn and the question follows it, so one audio prefix can serve many questions
        (:meth:`audio_prefix` + :meth:`question_turn`, what stages 2–3 pack). ``heard`` (what the encoder's heads
        heard, :func:`~must.model.heard.heard_text`) follows the audio as ``heard : …``."""
        if self.audio_first:
            return self.audio_prefix(duration, key, heard) + self.question_turn(question, instruction)
        return f"{self._user_turn()} {question} {instruction} {self._audio(duration, key, heard)}{ASSISTANT_TURN}"

    def audio_prefix(self, duration: float, key: int | None = None, heard: str | None = None) -> str:
        """An ``audio_first`` prompt's shared part: system turn, then the user turn's audio (and ``heard``)."""
        return f"{self._user_turn()} {self._audio(duration, key, heard)}"

    def question_turn(self, question: str, instruction: str = "") -> str:
        """An ``audio_first`` prompt's per-question part, up to the start of the answer."""
        return f" {question} {instruction}{ASSISTANT_TURN}"

    def _user_turn(self) -> str:
        """The system turn, then the opening of the user turn."""
        return f"<|im_start|> system {self.system} <|im_end|> <|im_start|> user"

    def _audio(self, duration: float, key: int | None, heard: str | None) -> str:
        """The audio span, then ``heard : …`` when given."""
        return self.audio_span(duration, key) + (f" heard : {heard}" if heard is not None else "")

    def answer(self, text: str) -> str:
        """The answer as a training target (ends the turn)."""
        return f" {text} <|im_end|>"

    def decode(self, ids) -> str:
        """Generated ids → text (time tokens read as ``M:SS``; ``electric _ bass`` rejoined as ``electric_bass``; a
        number the tokenizer split into digits, ``1 1 0 bpm``, rejoined as ``110 bpm``)."""
        text = re.sub(r"(?<=\w) _ (?=\w)", "_", self.tokenizer.decode(ids, skip_special_tokens=True).strip())
        return _SPLIT_NUMBER.sub(lambda m: m.group().replace(" ", ""), text)

    def load_audio(self, path: str) -> np.ndarray:
        """Audio as 16 kHz mono float32."""
        from must.audio import load_audio

        return load_audio(path, self.sample_rate)[0]
