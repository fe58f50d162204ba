"""``MusTConfig``: encoder, projector and language-model sizes of MusT-small."""

from __future__ import annotations

from typing import Any

from transformers import LlamaConfig, PretrainedConfig

from must.model.tempo import TEMPO_FRAME_SIGNALS

__all__ = ["MusTConfig", "SIGNALS"]

SIGNALS = 2  # measured per-frame signals appended to the encoder features: loudness, spectral flux


class MusTConfig(PretrainedConfig):
    """Configuration of :class:`~must.model.modeling.MusTForCausalLM`.

    The encoder turns 16 kHz audio into ``frame_rate`` Hz frames (log-mel at 50 Hz, 2-D conv stack, transformer,
    sinusoidal absolute-time embedding in seconds) with frame-level heads for transitions, source activity and the
    Amuse auxiliary targets. It sees ``encoder_window`` seconds at a time, in training (crops) and inference alike.
    The projector pools each second (frame mean and max, head probabilities and their change across the second,
    track-relative loudness and intensity) into one LM embedding, added to the embedding of that second's time
    token (``M:SS``). With ``heard_events``, prompts also carry what the heads heard as text
    (:func:`~must.model.heard.heard_text`) after the audio span. ``audio_first``: prompts open with the audio and
    ask after it (:meth:`~must.model.processing.MusTProcessor.prompt`); checkpoints saved without it ask first.
    ``source_context``: each second's projector input also says whether each source played before and plays after it
    (:func:`~must.model.modeling.source_context`); it widens the projector, so it is fixed from stage 2 on.
    ``tempo_signals``: the features also carry measured tempo signals (:mod:`must.model.tempo`: tempogram novelty,
    onset rate, metrical tempo change), pooled into per-second tempo-change features; it widens the features and the
    projector, so it too is fixed from stage 2 on.
    ``pace_head``: the encoder has one more frame head, the *pace* (onsets per second × tempo, :mod:`must.model.pace`),
    last among the heads, and the intensity it reads is loudness × that pace rather than loudness × flux; it is an
    encoder head, so it is fixed from stage 1 on.
    ``region_signals``: each second's track signals end with the share of it inside the highest and the lowest
    intensity regions that the heads' own intensity gives (:func:`~must.model.heard.region_seconds`, found by the MTR
    annotation's rule), so an MTR boundary is where a signal steps, not a threshold the LM has to learn; it widens the
    projector, so it is fixed from stage 2 on.
    ``source_token_ids`` (one word token per source, -1 where the tokenizer has none) and ``turn_token_ids``
    (``<|im_start|>``, ``<|im_end|>``) switch on *source moments* (:func:`~must.model.modeling.asked_seconds`):
    a source's name, in a turn that names a time, carries what that source does at that time, and its logit points
    at it. Empty (older checkpoints): off. ``music_token_ids`` (the words that name the music as a whole: "music",
    "tempo", "dynamics", …) switch on *music moments* the same way: such a word, in a turn that names a time, carries
    what the music as a whole does then (:func:`~must.model.modeling.music_columns`: louder or softer, faster or
    slower). ``music_word_ids`` (one token per word of :data:`~must.model.processing.MUSIC_READ_WORDS`, -1 where the
    tokenizer has none) switch on *music words*: the logits of the words naming the music and how it changes
    ("louder", "slows", …), in a turn that names a time, read the music's moment then
    (:meth:`~must.model.modeling.MusTForCausalLM.point_at_music_words`). ``region_word_ids`` (the words that name
    intensity: "intense", "intensity", "calmest") switch on the *region pointer*: in a turn that names intensity, the
    time logits also read the intensity regions the heads' own intensity gives
    (:func:`~must.model.modeling.region_features`) — only there, so the other tasks' inputs are what they were.
    """

    model_type = "must"
    sub_configs = {"text_config": LlamaConfig}

    def __init__(self, sample_rate: int = 16000, n_mels: int = 64, mel_hop: int = 320, frame_rate: int = 10,
                 encoder_dim: int = 128, encoder_layers: int = 2, encoder_heads: int = 4, encoder_channels: int = 32,
                 encoder_window: float = 15.0, max_seconds: int = 300,
                 sources: list[str] | None = None, text_config: dict[str, Any] | LlamaConfig | None = None,
                 audio_bos_token_id: int = 0, audio_eos_token_id: int = 0, audio_key_token_id: int = 0,
                 time_token_offset: int = 0, digit_token_ids: list[int] | None = None,
                 heard_events: bool = False, audio_first: bool = False, source_context: bool = False,
                 tempo_signals: bool = False, source_token_ids: list[int] | None = None,
                 turn_token_ids: list[int] | None = None, music_token_ids: list[int] | None = None,
                 music_word_ids: list[int] | None = None, pace_head: bool = False, region_signals: bool = False,
                 region_word_ids: list[int] | None = None, **kwargs):
        self.sample_rate, self.n_mels, self.mel_hop, self.frame_rate = sample_rate, n_mels, mel_hop, frame_rate
        self.encoder_dim, self.encoder_layers, self.encoder_heads = encoder_dim, encoder_layers, encoder_heads
        self.encoder_channels, self.encoder_window = encoder_channels, encoder_window
        self.max_seconds = max_seconds
        self.sources = list(sources or [])
        if isinstance(text_config, dict) or text_config is None:
            text_config = LlamaConfig(**(text_config or dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                                                             num_attention_heads=4, num_key_value_heads=4,
                                                             max_position_embeddings=1024, vocab_size=1000)))
        self.text_config = text_config
        self.audio_bos_token_id, self.audio_eos_token_id = audio_bos_token_id, audio_eos_token_id
        self.audio_key_token_id, self.time_token_offset = audio_key_token_id, time_token_offset
        self.digit_token_ids = list(digit_token_ids or [])
        self.heard_events = heard_events
        self.audio_first = audio_first
        self.source_context = source_context
        self.tempo_signals = tempo_signals
        self.pace_head = pace_head
        self.region_signals = region_signals
        self.source_token_ids = list(source_token_ids or [])
        self.turn_token_ids = list(turn_token_ids or [])
        self.music_token_ids = list(music_token_ids or [])
        self.music_word_ids = list(music_word_ids or [])
        self.region_word_ids = list(region_word_ids or [])
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)

    @property
    def n_heads_out(self) -> int:
        """Frame-level head outputs: transition, rhythm change, activity + Amuse sources per source, local tempo,
        then (``pace_head``) pace."""
        return 3 + 2 * len(self.sources) + int(self.pace_head)

    @property
    def pace_index(self) -> int | None:
        """Column of the pace head among the head outputs (the last), or ``None`` without one."""
        return 3 + 2 * len(self.sources) if self.pace_head else None

    @property
    def n_signals(self) -> int:
        """Measured per-frame signals: loudness and flux, then (``tempo_signals``) :mod:`must.model.tempo`'s."""
        return SIGNALS + (TEMPO_FRAME_SIGNALS if self.tempo_signals else 0)

    @property
    def feature_dim(self) -> int:
        """Width of :meth:`~must.model.modeling.MusTForCausalLM.encode_audio` rows: frame, head probabilities, signals."""
        return self.encoder_dim + self.n_heads_out + self.n_signals

    @property
    def mel_frames_per_frame(self) -> int:
        """Mel frames pooled into one encoder frame."""
        return self.sample_rate // self.mel_hop // self.frame_rate
