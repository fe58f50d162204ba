"""MusT-small modeling: music encoder, projector, and a Llama-style LM, wired as transformers models.

Audio enters the LM through *time tokens*: the prompt holds ``<|audio_bos|> 0:00 0:01 … <|audio_eos|>``, one
token per second, and the projected features of second *s* are added to the embedding of the time token ``s``.
Answers use the same tokens (``1:05``), so pointing at a moment and writing its time are one skill: each time
token's logit gets a pointer term, the answer position's query against a key per second made of that second's
audio and of the LM's last hidden state at that second's token in the audio span (with the question first, each
second is read knowing what is asked; with ``audio_first``, one reading of the audio serves every question packed
after it in training); each second's features already carry the
change of every head probability across it and the track-relative loudness and intensity, so "where does X
start" and "where is it loudest" are local look-ups, not comparisons the small LM has to learn. A second pointer
term, the *source pointer*, lets a gate choose the source asked about and reads only that source's columns
(:func:`per_source`), so the query need not single one source out of all of them. *Source moments* turn that
round for "what changes at 0:42?": in a turn that names a time (:func:`asked_seconds`), each source's name carries
what that source does around that second, and its logit points at it (:meth:`MusTForCausalLM.point_at_sources`);
*music moments* and *music words* do the same for the music as a whole (:func:`music_columns`,
:meth:`MusTForCausalLM.point_at_music_words`).

Audio features reach the model either directly (``audio_features``: a batch of per-frame encoder outputs with
head probabilities and measured signals, from :meth:`MusTForCausalLM.encode_audio`) or through ``audio_store``: when the prompt starts
the audio span with ``<|audio_key|> <digits>``, the model looks the key up. The store is how TRL's
``GRPOTrainer`` — which has no audio input path — trains MusT unchanged: prompts are plain text.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, GenerationMixin, LlamaModel, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from must.model.configuration import SIGNALS, MusTConfig
from must.model.heard import region_seconds
from must.model.packed_attention import PACKED_ATTENTION, packed_plan
from must.model.pace import pace_rate
from must.model.pair_max import PairMax
from must.model.processing import MUSIC_READ_WORDS
from must.model.tempo import TEMPO_TRACK_SIGNALS, tempo_frames, tempo_track_signals

__all__ = ["LOG_MEL_FLOOR", "MusicEncoder", "MusTModel", "MusTForCausalLM", "time_features", "contrast", "track_signals",
           "source_context", "per_source", "time_token_seconds", "asked_seconds", "neighbour_seconds",
           "region_turn", "region_features"]

TRACK_SIGNALS = 6  # see track_signals
REGION_SIGNALS = 2  # with region_signals: the share of each second in the heard highest / lowest intensity region
REGION_FEATURES = 6  # see region_features: what the region pointer reads per second
PER_SOURCE = 6  # see per_source
SOURCE_POINTER_DIM = 16  # width of the source pointer's query and keys
MOMENT_DIM = 32  # width of a source moment (what one source does around one second)
# the frame heads about the whole music, among those before the pace head: transition, rhythm change, local tempo
MUSIC_HEADS = (0, 1, -1)
MEL_POWER_FLOOR = 1e-10
LOG_MEL_FLOOR = (math.log10(MEL_POWER_FLOOR) + 4.0) / 4.0  # MusicEncoder.log_mel of silence
# the KV cache argument is ``cache`` in newer transformers 5.x and ``past_key_values`` before; generation passes
# whichever the installed version uses, and MusT must see it to know a step continues a prompt
CACHE_ARG = "cache" if "cache" in inspect.signature(LlamaModel.forward).parameters else "past_key_values"


def _cache_from(past_key_values, kwargs: dict):
    """The KV cache of a call, under either name (popped from ``kwargs``)."""
    cache = kwargs.pop("cache", None)
    return past_key_values if cache is None else cache


def time_features(seconds: torch.Tensor, dims: int = 16) -> torch.Tensor:
    """Sinusoidal features of absolute time (periods from 0.5 s to about 10 min)."""
    periods = torch.logspace(math.log10(0.5), math.log10(600.0), dims // 2, device=seconds.device)
    angles = 2 * math.pi * seconds.unsqueeze(-1) / periods
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


def contrast(x: torch.Tensor, width: int = 2) -> torch.Tensor:
    """Per row ``s`` of ``(S, F)``: mean of rows ``[s, s+width)`` minus mean of rows ``[s-width, s)`` (edges repeated) —
    positive where something starts at ``s``, negative where it stops."""
    padded = torch.cat([x[:1].expand(width, -1), x, x[-1:].expand(width, -1)])
    c = torch.cat([torch.zeros_like(padded[:1]), padded.cumsum(0)])
    s = torch.arange(x.shape[0], device=x.device) + width
    return ((c[s + width] - c[s]) - (c[s] - c[s - width])) / width


def _rank(x: torch.Tensor) -> torch.Tensor:
    """Percentile rank of each value within the track, in [0, 1]."""
    return torch.argsort(torch.argsort(x)).float() / max(len(x) - 1, 1)


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Min-max scaled to [0, 1] over the track (zeros if constant)."""
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else torch.zeros_like(x)


def track_signals(sig: torch.Tensor, smooth: int = 4, pace: torch.Tensor | None = None) -> torch.Tensor:
    """``(S, 2)`` per-second loudness (log10 power) and flux → ``(S, TRACK_SIGNALS)`` track-relative features:
    loudness below the track maximum, its rank, its change, flux and an intensity proxy (amplitude × flux, or ×
    ``pace`` — the pace head's per-second probability, :mod:`must.model.pace` — when given; ``smooth``-second mean,
    the way the MTR annotation is built) scaled and ranked over the track."""
    loud, flux = sig[:, 0], sig[:, 1]
    amp = torch.pow(10.0, (loud - loud.max()) / 2)
    busy = flux if pace is None else pace_rate(pace.float()).to(flux)
    inten = amp * (busy / busy.max().clamp(min=1e-8))
    k = min(smooth, len(inten))
    inten = torch.nn.functional.avg_pool1d(inten.view(1, 1, -1), k, 1, padding=k // 2, count_include_pad=False).view(-1)[: len(loud)]
    return torch.stack([(loud - loud.max()) / 2, _rank(loud), contrast(loud.unsqueeze(-1))[:, 0] / 2, _unit(flux),
                        _unit(inten), _rank(inten)], dim=-1)


def source_context(activity: torch.Tensor) -> torch.Tensor:
    """``(S, n)`` per-second source activity → ``(S, 2n)``: per source, the most it played in any earlier second
    and in any later second. The benchmark's "enters" is a source's *first* onset and "stops" its *last* offset,
    which a second's own change cannot tell from a re-entry; with these, "played now, never before" is a linear
    read (with the default encoder, on 300 train tracks, the second maximising ``now - before`` is within 3 s of a
    source's annotated entry for 72.5 % of entries, as the rule-based :mod:`must.model.heard` decode, 72.4 %)."""
    zero = torch.zeros_like(activity[:1])
    before = torch.cat([zero, torch.cummax(activity, 0).values[:-1]])
    after = torch.cat([torch.cummax(activity.flip(0), 0).values.flip(0)[1:], zero])
    return torch.cat([before, after], dim=-1)


def time_token_seconds(ids: torch.Tensor, config: MusTConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """``(seconds, is_time)`` of token ids: the second each time token (``M:SS``) names, and which ids are time
    tokens (ignored labels, -100, are not)."""
    secs = ids - config.time_token_offset
    return secs, (secs >= 0) & (secs <= config.max_seconds)


def per_source(probs: torch.Tensor, n: int) -> torch.Tensor:
    """``(S, H)`` per-second head probabilities → ``(S, n, PER_SOURCE)``: per source and second, its activity, the
    activity's change across the second, its Amuse source head and that head's change, and whether it played
    before and plays after (:func:`source_context`). One layout for every source, so that one small network can
    read "this source starts here" for all of them."""
    act, amuse = probs[:, 2 : 2 + n], probs[:, 2 + n : 2 + 2 * n]
    ctx = source_context(act)
    return torch.stack([act, contrast(act), amuse, contrast(amuse), ctx[:, :n], ctx[:, n:]], dim=-1)


def music_columns(probs: torch.Tensor, signals: torch.Tensor) -> torch.Tensor:
    """``(S, H)`` per-second head probabilities and ``(S, K)`` track-relative signals → ``(S, 2 (K + 3))``: the
    signals, the whole-music heads (:data:`MUSIC_HEADS`) and the change of each across the second — what the music
    as a whole does then (louder or softer, faster or slower), which no source's columns hold."""
    x = torch.cat([signals, probs[:, list(MUSIC_HEADS)]], dim=-1)
    return torch.cat([x, contrast(x)], dim=-1)


def neighbour_seconds(x: torch.Tensor) -> torch.Tensor:
    """``(S, …, F)`` per second → ``(S, …, 3F)``: each second with the one before and the one after (edges
    repeated). A question's ``0:42`` is the annotation's time rounded, so the change may sit a second either side."""
    prev = torch.cat([x[:1], x[:-1]])
    nxt = torch.cat([x[1:], x[-1:]])
    return torch.cat([prev, x, nxt], dim=-1)


def asked_seconds(ids: torch.Tensor, config: MusTConfig, span: tuple[int, int] | None = None, initial: int = -1
                  ) -> torch.Tensor:
    """``(L,)`` per position of one row's ids: the second named by the latest time token at or before it, outside
    the audio span ``[start, end)``, in the same question-and-answer turn; -1 where there is none. A turn ends at
    an ``<|im_end|>`` that is not followed by ``<|im_start|>`` (the answer's, not the question's), so packed
    questions do not inherit each other's times. ``initial``: the value carried over from earlier ids (generation
    steps continue their prompt)."""
    secs, event = time_token_seconds(ids, config)
    if span is not None:
        event[span[0] : span[1]] = False
    idx = torch.arange(len(ids), device=ids.device)
    last_event = torch.where(event, idx, -1).cummax(0).values
    last_end = _last_turn_end(ids, config)
    from_ids = (last_event >= 0) & (last_event > last_end)
    carried = (last_event < 0) & (last_end < 0)
    return torch.where(from_ids, secs[last_event.clamp(min=0)], torch.where(carried, initial, -1))


def _last_turn_end(ids: torch.Tensor, config: MusTConfig) -> torch.Tensor:
    """``(L,)`` per position, the index of the latest answer-ending ``<|im_end|>`` (one not followed by
    ``<|im_start|>``) at or before it; -1 where there is none, or without turn markers."""
    idx = torch.arange(len(ids), device=ids.device)
    if len(config.turn_token_ids) != 2:
        return torch.full_like(idx, -1)
    start, end = config.turn_token_ids
    after = torch.cat([ids[1:], ids.new_full((1,), -1)])
    return torch.where((ids == end) & (after != start), idx, -1).cummax(0).values


def region_turn(ids: torch.Tensor, config: MusTConfig, initial: bool = False) -> torch.Tensor:
    """``(L,)`` bool per position of one row's ids: whether its question-and-answer turn has named intensity
    (one of ``config.region_word_ids``) at or before it — where the time pointer also reads the heard intensity
    regions. ``initial``: the value carried over from earlier ids (generation steps continue their prompt)."""
    idx = torch.arange(len(ids), device=ids.device)
    words = torch.tensor(config.region_word_ids, dtype=ids.dtype, device=ids.device)
    last_word = torch.where(torch.isin(ids, words), idx, -1).cummax(0).values
    last_end = _last_turn_end(ids, config)
    carried = (last_word < 0) & (last_end < 0) & initial
    return ((last_word >= 0) & (last_word > last_end)) | carried


def region_features(regions: torch.Tensor) -> torch.Tensor:
    """``(S, 2)`` per-second shares of the heard highest / lowest intensity regions (:func:`region_seconds`) →
    ``(S, REGION_FEATURES)``: the shares and their steps over one and two seconds, which peak at a region's first
    second (up) and at the second its end names (down)."""
    return torch.cat([regions, contrast(regions, 1), contrast(regions, 2)], dim=-1)


class MusicEncoder(nn.Module):
    """Log-mel (50 Hz) → 2-D conv stack (time strided to ``frame_rate`` Hz, frequency pooled ×8) → + absolute time
    → transformer → frame heads. Timbre is a spectral pattern, hence 2-D convolutions over (mel, time)."""

    def __init__(self, config: MusTConfig):
        super().__init__()
        d, c, stride = config.encoder_dim, config.encoder_channels, config.mel_frames_per_frame
        self.config = config
        # built on first use, not a buffer: from_pretrained constructs modules on the meta device and leaves
        # non-persistent buffers uninitialised
        self._mel_fb: torch.Tensor | None = None
        self.conv = nn.Sequential(
            nn.Conv2d(1, c, (3, stride), stride=(1, stride), padding=(1, 0)), nn.GELU(),
            nn.Conv2d(c, c, 3, padding=1), nn.GELU(), PairMax(),
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.GELU(), PairMax(),
            nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.GELU(), PairMax())
        self.frame_proj = nn.Linear(2 * c * (config.n_mels // 8), d)
        self.time_proj = nn.Linear(16, d)
        layer = nn.TransformerEncoderLayer(d, config.encoder_heads, 2 * d, dropout=0.1, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, config.encoder_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.heads = nn.Linear(d, config.n_heads_out)

    def power_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """``(B, samples)`` 16 kHz audio → ``(B, n_mels, frames)`` mel power at 50 Hz."""
        import librosa

        window = torch.hann_window(1024, device=wave.device)
        spec = torch.stft(wave, 1024, hop_length=self.config.mel_hop, window=window, return_complex=True).abs() ** 2
        if self._mel_fb is None or self._mel_fb.device != wave.device:
            fb = librosa.filters.mel(sr=self.config.sample_rate, n_fft=1024, n_mels=self.config.n_mels)
            self._mel_fb = torch.tensor(fb, dtype=torch.float32, device=wave.device)
        return torch.matmul(self._mel_fb, spec)

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """``(B, samples)`` 16 kHz audio → ``(B, n_mels, frames)`` scaled log-mel at 50 Hz."""
        return (torch.log10(self.power_mel(wave).clamp(min=MEL_POWER_FLOOR)) + 4.0) / 4.0

    def signals(self, mel: torch.Tensor) -> torch.Tensor:
        """Measured (not learned) per-frame signals from a scaled log-mel: ``(B, T, 2)`` loudness (log10 mean
        power) and spectral flux. The transformer's LayerNorm discards level, so intensity questions need them."""
        stride = self.config.mel_frames_per_frame
        power = torch.pow(10.0, mel * 4.0 - 4.0).mean(1)
        flux = torch.relu(torch.diff(mel, dim=-1, prepend=mel[..., :1])).mean(1)
        n = mel.shape[-1] // stride
        pool = lambda x: x[:, : n * stride].reshape(x.shape[0], n, stride).mean(-1)  # noqa: E731
        return torch.stack([torch.log10(pool(power).clamp(min=1e-10)), pool(flux)], dim=-1)

    def forward(self, mel: torch.Tensor, offset_seconds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(frames (B, T, D), head logits (B, T, H))`` at ``frame_rate`` Hz; ``offset_seconds`` for crops."""
        x = self.conv(mel.unsqueeze(1))  # (B, C, n_mels / 8, T)
        x = self.frame_proj(x.flatten(1, 2).transpose(1, 2))
        t = torch.arange(x.shape[1], device=x.device, dtype=torch.float32) / self.config.frame_rate
        if offset_seconds is not None:
            t = t.unsqueeze(0) + offset_seconds.view(-1, 1).float()
        x = x + self.time_proj(time_features(t))
        x = self.norm(self.transformer(x))
        return x, self.heads(x)


class MusTPreTrainedModel(PreTrainedModel):
    """Shared ``PreTrainedModel`` plumbing (config class, weight init)."""

    config_class = MusTConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["LlamaDecoderLayer"]

    def _init_weights(self, module: nn.Module) -> None:
        std = 0.02
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        if getattr(module, "zero_init", False):
            # also when a checkpoint saved before this module existed is loaded: it then changes nothing
            nn.init.zeros_(module.weight)


class MusTModel(MusTPreTrainedModel):
    """Encoder + projector + LM backbone; returns the LM's hidden states."""

    def __init__(self, config: MusTConfig):
        super().__init__(config)
        self.encoder = MusicEncoder(config)
        # track-relative signals: loudness and intensity, then (tempo_signals) tempo change
        self.n_track_signals = (TRACK_SIGNALS + (TEMPO_TRACK_SIGNALS if config.tempo_signals else 0)
                                + (REGION_SIGNALS if config.region_signals else 0))
        feat = 2 * config.encoder_dim + 2 * config.n_heads_out + self.n_track_signals
        feat += 2 * len(config.sources) if config.source_context else 0
        hidden = config.text_config.hidden_size
        self.projector = nn.Sequential(nn.Linear(feat, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.time_key = nn.Linear(feat, hidden)
        self.time_key_change = nn.Linear(self.n_track_signals, hidden)  # keys from how the signals change around s
        self.time_embed = nn.Linear(17, hidden)  # where each time token sits on the time line (ordering, distance)
        # keys from the LM's own reading of each second of the audio span (which follows the question, unless audio_first)
        self.time_key_context = nn.Linear(hidden, hidden, bias=False)
        self.time_key_context.zero_init = True
        # keys of the source pointer (MusTForCausalLM.point_at_seconds): per second and source, from that source's
        # own columns only, with weights shared by all sources
        self.source_key = nn.Sequential(nn.Linear(PER_SOURCE, 32), nn.GELU(), nn.Linear(32, SOURCE_POINTER_DIM))
        # source moments: what each source does around each second (its columns over three seconds, weights shared
        # by all sources), added to a source name's embedding in a turn that names that second
        self.source_moment = nn.Sequential(nn.Linear(3 * PER_SOURCE, MOMENT_DIM), nn.GELU())
        self.moment_embed = nn.Linear(MOMENT_DIM, hidden, bias=False)
        self.moment_embed.zero_init = True
        # music moments: the same for the music as a whole, added to the words that name it (``music_token_ids``)
        # the music's moment reads the signals without the heard regions, which step at MTR's boundaries, not where
        # the music gets louder or faster (with them in, LTR fell 81.1 -> 72.5 in runs/r46)
        self.n_music_signals = self.n_track_signals - (REGION_SIGNALS if config.region_signals else 0)
        self.music_moment = nn.Sequential(nn.Linear(6 * (self.n_music_signals + len(MUSIC_HEADS)), MOMENT_DIM), nn.GELU())
        self.music_embed = nn.Linear(MOMENT_DIM, hidden, bias=False)
        self.music_embed.zero_init = True
        self.language_model = LlamaModel(config.text_config)
        if self.language_model.config._attn_implementation == "sdpa":
            # SDPA with a fast path for packed turns (stages 2-3); an implementation asked for explicitly is kept
            self.language_model.set_attn_implementation(PACKED_ATTENTION)
        self.audio_store: dict[int, torch.Tensor] = {}
        # per batch row, (projected seconds, time keys, source keys, source moments, music moments, region features or
        # None) of the last prompt embedded:
        # generation steps after the first see only new tokens but still need the audio of their row
        self.audio_cache: list[tuple[torch.Tensor, ...] | None] = []
        self.audio_positions: list[tuple[torch.Tensor, torch.Tensor] | None] = []  # (positions, seconds) per row
        self.asked: list[torch.Tensor] = []  # per row, asked_seconds of the ids last embedded
        self.region_turns: list[torch.Tensor] = []  # per row, region_turn of the ids last embedded
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.embed_tokens = value

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """``(T, feature_dim)`` frame features → ``(seconds, 2D + 2H [+ 2n] + 6 [+ 3] [+ 2])``: per second, frame mean
        and max, head probabilities and their change across the second, (``source_context``) whether each source
        played before and plays after it, track-relative signals (last, as :meth:`_row_audio` reads them), then
        (``tempo_signals``) the tempo-change ones and (``region_signals``) the heard intensity regions."""
        cfg = self.config
        fr, enc, h, n = cfg.frame_rate, cfg.encoder_dim, cfg.n_heads_out, len(cfg.sources)
        seconds = math.ceil(features.shape[0] / fr)
        pad = seconds * fr - features.shape[0]
        f = torch.cat([features, features[-1:].expand(pad, -1)]) if pad else features
        f = f.view(seconds, fr, -1)
        probs = f[..., enc : enc + h].mean(1)
        context = [source_context(probs[:, 2 : 2 + n])] if cfg.source_context else []  # the activity heads
        signals = f[..., enc + h :].mean(1)
        tempo = [tempo_track_signals(signals[:, SIGNALS:])] if cfg.tempo_signals else []
        pace = probs[:, cfg.pace_index] if cfg.pace_head else None
        regions = [torch.from_numpy(region_seconds(features, cfg, seconds)).to(signals)] if cfg.region_signals else []
        return torch.cat([f[..., :enc].mean(1), f[..., :enc].amax(1), probs, contrast(probs), *context,
                          track_signals(signals[:, :SIGNALS], pace=pace), *tempo, *regions], dim=-1).to(features.dtype)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """``(T, feature_dim)`` frame features → ``(seconds, hidden)`` embeddings added to the time tokens."""
        return self.projector(self.pool(features))

    def _key(self, ids: list[int], start: int) -> int | None:
        digits = self.config.digit_token_ids
        key = ""
        for tok in ids[start:]:
            if tok in digits:
                key += str(digits.index(tok))
            else:
                break
        return int(key) if key else None

    def _row_audio(self, ids: list[int], feats: torch.Tensor | None, like: torch.Tensor, names_intensity: bool = False
                   ) -> tuple[torch.Tensor, ...] | None:
        """(projected seconds, time keys, source keys, source moments, music moments, region features) for one prompt,
        from its features or its ``<|audio_key|>``; region features (:func:`region_features`) only when the prompt
        ``names_intensity`` (some position of it is in a :func:`region_turn`), else ``None``."""
        cfg = self.config
        if cfg.audio_bos_token_id not in ids:
            return None
        if feats is None and cfg.audio_key_token_id in ids:
            feats = self.audio_store.get(self._key(ids, ids.index(cfg.audio_key_token_id) + 1))
        if feats is None:
            return None
        feats = feats.to(like.device, like.dtype)
        pooled = self.pool(feats)
        keys = self.time_key(pooled) + self.time_key_change(contrast(pooled[:, -self.n_track_signals :]))
        d2, h = 2 * cfg.encoder_dim, cfg.n_heads_out
        columns = per_source(pooled[:, d2 : d2 + h], len(cfg.sources))
        moments = self.source_moment(neighbour_seconds(columns))
        # the pace head, last, is read through the intensity signal, not as a music head
        heads = pooled[:, d2 : d2 + h - int(cfg.pace_head)]
        signals = pooled[:, -self.n_track_signals :][:, : self.n_music_signals]
        music = self.music_moment(neighbour_seconds(music_columns(heads, signals)))
        regions = None
        if names_intensity:
            regions = region_features(torch.from_numpy(region_seconds(feats, cfg, pooled.shape[0])).to(pooled))
        return self.projector(pooled), keys, self.source_key(columns), moments, music, regions

    def embed(self, input_ids: torch.Tensor, audio_features: list[torch.Tensor] | None = None,
              continuing: bool = False) -> torch.Tensor:
        """Token embeddings with that second's projected audio added at every time token (audio span, question,
        answer) and, with source (music) moments on, the asked second's source (music) moment added at every source
        name (word naming the music).
        ``continuing``: a generation step after the prompt — reuse the audio of each row's prompt."""
        emb = self.get_input_embeddings()(input_ids)
        cfg = self.config
        if not cfg.audio_bos_token_id:
            return emb
        secs, is_time = time_token_seconds(input_ids, cfg)
        if is_time.any():
            t = secs[is_time].float()
            emb = emb.clone()
            emb[is_time] = emb[is_time] + self.time_embed(torch.cat([time_features(t), (t / cfg.max_seconds).unsqueeze(-1)], -1).to(emb.dtype))
        # before the audio: a prompt's region features are computed only if some turn of it names intensity
        self.region_turns = [self._region_row(input_ids[b], b, continuing) for b in range(input_ids.shape[0])]
        if not continuing:
            if audio_features is not None and len(audio_features) != input_ids.shape[0]:
                raise ValueError(f"audio_features has {len(audio_features)} rows for a batch of {input_ids.shape[0]}")
            self.audio_positions = [self._span_positions(input_ids[b]) for b in range(input_ids.shape[0])]
            self.audio_cache = [self._row_audio(input_ids[b].tolist(), None if audio_features is None else audio_features[b],
                                                emb, bool(self.region_turns[b].any()))
                                for b in range(input_ids.shape[0])]
        self.asked = [self._asked_row(input_ids[b], b, continuing) for b in range(input_ids.shape[0])]
        rows = []
        for b in range(input_ids.shape[0]):
            audio = self.audio_cache[b] if b < len(self.audio_cache) else None
            if audio is None:
                rows.append(emb[b])
                continue
            proj = audio[0]
            ok = is_time[b] & (secs[b] < proj.shape[0])
            add = torch.zeros_like(emb[b])
            add[ok] = proj[secs[b][ok]].to(add.dtype)
            src, at = self.source_of(input_ids[b]), self.asked[b]
            named = (src >= 0) & (at >= 0) & (at < proj.shape[0])
            if named.any():
                add[named] = add[named] + self.moment_embed(audio[3][at[named], src[named]]).to(add.dtype)
            music = self.names_music(input_ids[b]) & (at >= 0) & (at < proj.shape[0])
            if music.any():
                add[music] = add[music] + self.music_embed(audio[4][at[music]]).to(add.dtype)
            rows.append(emb[b] + add)
        return torch.stack(rows)

    def source_of(self, ids: torch.Tensor) -> torch.Tensor:
        """Per id, the index in ``config.sources`` of the source whose name it is (``source_token_ids``), else -1."""
        out = torch.full_like(ids, -1)
        for k, tok in enumerate(self.config.source_token_ids):
            if tok >= 0:
                out[ids == tok] = k
        return out

    def names_music(self, ids: torch.Tensor) -> torch.Tensor:
        """Per id, whether it is one of the words naming the music as a whole (``music_token_ids``)."""
        return torch.isin(ids, torch.tensor(self.config.music_token_ids, dtype=ids.dtype, device=ids.device))

    def _asked_row(self, ids: torch.Tensor, row: int, continuing: bool) -> torch.Tensor:
        """:func:`asked_seconds` of one row; a generation step carries on from the row's previous ids."""
        if not (self.config.source_token_ids or self.config.music_token_ids or self.config.music_word_ids):
            return torch.full_like(ids, -1)
        if continuing:
            before = self.asked[row] if row < len(self.asked) else None
            return asked_seconds(ids, self.config, initial=int(before[-1]) if before is not None and len(before) else -1)
        span = self.audio_positions[row] if row < len(self.audio_positions) else None
        bounds = (int(span[0][0]), int(span[0][-1]) + 1) if span is not None and len(span[0]) else None
        return asked_seconds(ids, self.config, bounds)

    def _region_row(self, ids: torch.Tensor, row: int, continuing: bool) -> torch.Tensor:
        """:func:`region_turn` of one row (all false without ``region_word_ids``); a generation step carries on from
        the row's previous ids."""
        if not self.config.region_word_ids:
            return torch.zeros_like(ids, dtype=torch.bool)
        before = self.region_turns[row] if continuing and row < len(self.region_turns) else None
        return region_turn(ids, self.config, initial=bool(before[-1]) if before is not None and len(before) else False)

    def _span_positions(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(positions, seconds) of the time tokens between a row's ``<|audio_bos|>`` and ``<|audio_eos|>``."""
        cfg = self.config
        bos, eos = (ids == cfg.audio_bos_token_id).nonzero(), (ids == cfg.audio_eos_token_id).nonzero()
        if not len(bos) or not len(eos):
            return None
        pos = torch.arange(int(bos[0]) + 1, int(eos[0]), device=ids.device)
        secs, ok = time_token_seconds(ids[pos], cfg)
        return pos[ok], secs[ok]

    def add_context_keys(self, hidden: torch.Tensor) -> None:
        """Add to each row's time keys the LM's last hidden state at that second's token in the audio span,
        projected: when the span follows the question these keys can already say "this is the second asked for"
        (a pointer over contextual encodings, not only over the audio)."""
        for b, (audio, span) in enumerate(zip(self.audio_cache, self.audio_positions)):
            if audio is None or span is None:
                continue
            pos, secs = span
            ok = secs < audio[1].shape[0]
            ctx = self.time_key_context(hidden[b, pos[ok]])
            self.audio_cache[b] = (audio[0], audio[1].index_add(0, secs[ok], ctx.to(audio[1].dtype)), *audio[2:])

    def select_rows(self, rows: list[int]) -> None:
        """Keep the per-row audio state of batch rows ``rows`` (repeats allowed), in that order: after a prompt has been
        run once and its KV cache repeated (``Cache.reorder_cache``), each copy continues with its prompt's audio,
        asked seconds and turn."""
        for name in ("audio_cache", "audio_positions", "asked", "region_turns"):
            state = getattr(self, name)
            setattr(self, name, [state[r] for r in rows] if state else state)

    def _cached(self, row: int, part: int) -> torch.Tensor | None:
        """Part ``part`` of batch row ``row``'s entry in :attr:`audio_cache` (from the last prompt embedded)."""
        audio = self.audio_cache[row] if row < len(self.audio_cache) else None
        return None if audio is None else audio[part]

    def time_keys(self, row: int) -> torch.Tensor | None:
        """``(seconds, hidden)`` pointer keys of batch row ``row``'s audio (from the last prompt embedded)."""
        return self._cached(row, 1)

    def source_keys(self, row: int) -> torch.Tensor | None:
        """``(seconds, sources, SOURCE_POINTER_DIM)`` source-pointer keys of batch row ``row``'s audio."""
        return self._cached(row, 2)

    def source_moments(self, row: int) -> torch.Tensor | None:
        """``(seconds, sources, MOMENT_DIM)`` source moments of batch row ``row``'s audio."""
        return self._cached(row, 3)

    def music_moments(self, row: int) -> torch.Tensor | None:
        """``(seconds, MOMENT_DIM)`` music moments of batch row ``row``'s audio."""
        return self._cached(row, 4)

    def region_features(self, row: int) -> torch.Tensor | None:
        """``(seconds, REGION_FEATURES)`` heard intensity-region features of batch row ``row``'s audio, or ``None``
        when its prompt does not name intensity."""
        return self._cached(row, 5)

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None, inputs_embeds=None,
                use_cache=None, audio_features=None, packed_segments=None, **kwargs) -> BaseModelOutputWithPast:
        """As a Llama model, plus ``audio_features`` (per row, see :meth:`embed`) and ``packed_segments``: per row,
        the ``(start, end)`` spans of turns packed after a shared prefix (``(B, S, 2)``, rows padded with -1), whose
        ``attention_mask`` is :func:`stages.sequences.packed_attention`'s; the ``must_packed`` attention then computes
        only the blocks that mask allows (:mod:`must.model.packed_attention`)."""
        cache = _cache_from(past_key_values, kwargs)
        prompt_pass = inputs_embeds is None and not (cache is not None and cache.get_seq_length() > 0)
        if inputs_embeds is None:
            inputs_embeds = self.embed(input_ids, audio_features, continuing=not prompt_pass)
        if packed_segments is not None and prompt_pass:
            spans = [[(s, e) for s, e in row if 0 <= s < e] for row in packed_segments.tolist()]
            if all(spans):  # a row of prefix alone (a turn truncated away) keeps the masked square
                kwargs["packed_plan"] = packed_plan(spans, inputs_embeds.shape[1], inputs_embeds.device)
        out = self.language_model(attention_mask=attention_mask, position_ids=position_ids, inputs_embeds=inputs_embeds,
                                  use_cache=use_cache, **{CACHE_ARG: cache}, **kwargs)
        if prompt_pass:
            self.add_context_keys(out.last_hidden_state)
        return out


class MusTForCausalLM(MusTPreTrainedModel, GenerationMixin):
    """MusT-small with a language-modelling head."""

    _tied_weights_keys: dict = {}

    def __init__(self, config: MusTConfig):
        super().__init__(config)
        self.model = MusTModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        hidden = config.text_config.hidden_size
        self.time_query = nn.Linear(hidden, hidden, bias=False)
        # the source pointer: which source the answer is about (the last class: none), and what to find in its columns
        self.source_gate = nn.Linear(hidden, len(config.sources) + 1)
        self.source_query = nn.Linear(hidden, SOURCE_POINTER_DIM, bias=False)
        self.source_query.zero_init = True
        # source moments: a source name's logit, in a turn that names a time, reads what that source does then
        self.moment_query = nn.Linear(hidden, MOMENT_DIM, bias=False)
        self.moment_query.zero_init = True
        # music words: the logits of the words naming the music and how it changes read its moment, one query per word;
        # built without drawing random numbers, so that every other weight starts as it did before it existed
        self.music_word_query = nn.utils.skip_init(nn.Linear, hidden, len(MUSIC_READ_WORDS) * MOMENT_DIM, bias=False)
        self.music_word_query.zero_init = True
        # the region pointer: in a turn that names intensity, each second's time logit also reads the heard intensity
        # regions (region_features); last and zero, so every other weight starts as it did before it existed
        self.region_query = nn.utils.skip_init(nn.Linear, hidden, REGION_FEATURES, bias=False)
        self.region_query.zero_init = True
        self.post_init()
        nn.init.zeros_(self.time_query.weight)  # starts as a plain LM head; the pointer is learned
        nn.init.zeros_(self.music_word_query.weight)
        nn.init.zeros_(self.region_query.weight)

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.lm_head = value

    @property
    def encoder(self) -> MusicEncoder:
        """The music encoder."""
        return self.model.encoder

    @property
    def audio_store(self) -> dict[int, torch.Tensor]:
        """Key → frame features, for prompts that reference audio by ``<|audio_key|> <digits>``."""
        return self.model.audio_store

    @torch.no_grad()
    def encode_audio(self, wave: np.ndarray | torch.Tensor) -> torch.Tensor:
        """16 kHz mono audio → ``(frames, feature_dim)``: encoder frames, head probabilities, measured signals.

        The encoder sees ``encoder_window`` seconds at a time, as in training: a transformer trained on crops
        and run over a whole track lets evidence from anywhere leak into every frame. Tempo signals, measured
        not learned, are computed over the whole track (their windows span chunk borders)."""
        w = torch.as_tensor(wave, dtype=torch.float32, device=self.device).flatten()
        mel = self.encoder.log_mel(w.unsqueeze(0))
        per_chunk = int(self.config.encoder_window * self.config.sample_rate / self.config.mel_hop)
        starts = list(range(0, mel.shape[-1], per_chunk))
        if len(starts) > 1 and mel.shape[-1] - starts[-1] < per_chunk // 4:
            starts.pop()  # a short tail joins the previous chunk (the convolutions need a few frames)
        ends = starts[1:] + [mel.shape[-1]]
        out = []
        for a, b in zip(starts, ends):
            frames, logits = self.encoder(mel[..., a:b], torch.tensor([a * self.config.mel_hop / self.config.sample_rate]))
            out.append(torch.cat([frames, torch.sigmoid(logits), self.encoder.signals(mel[..., a:b])], dim=-1)[0])
        feats = torch.cat(out)
        if self.config.tempo_signals:
            rate = self.config.sample_rate / self.config.mel_hop
            tempo = tempo_frames(mel[0], rate, self.config.mel_frames_per_frame).to(feats)
            # the whole track has at least as many frames as its chunks together (each chunk rounds down)
            feats = torch.cat([feats, tempo[: len(feats)]], dim=-1)
        return feats

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None, inputs_embeds=None,
                labels=None, use_cache=None, logits_to_keep: int = 0, audio_features=None, asked_source=None,
                **kwargs) -> CausalLMOutputWithPast:
        """As a causal LM, plus ``asked_source`` ``(B, L)``: in training, the index in ``config.sources`` of the
        source each token is about (``len(sources)``: none; -100: no label); the source gate learns it by
        cross-entropy where the answer writes a time (:meth:`source_gate_loss`), added to the LM loss."""
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=_cache_from(past_key_values, kwargs), inputs_embeds=inputs_embeds, use_cache=use_cache,
                         audio_features=audio_features, **kwargs)
        hidden = out.last_hidden_state
        sl = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) and logits_to_keep else slice(None)
        h = hidden[:, sl, :]
        logits = self.point_at_music_words(h, self.point_at_sources(h, self.point_at_seconds(h, self.lm_head(h))))
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size, **kwargs)
            if asked_source is not None:
                loss = loss + self.source_gate_loss(hidden, labels, asked_source)
            if self.training and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
                loss = loss + self.zero_touch()
        return CausalLMOutputWithPast(loss=loss, logits=logits, **{CACHE_ARG: getattr(out, CACHE_ARG)},
                                      hidden_states=out.hidden_states, attentions=out.attentions)

    def zero_touch(self) -> torch.Tensor:
        """Zero times one element of every trainable parameter. DeepSpeed ZeRO-2 reduces gradients in buckets that
        must match across ranks; a batch that skips a module on one rank only (no turn names a time, no question names
        a source) left its parameters without a gradient there and the ranks' collectives out of step (a gloo size
        mismatch at stage 3's step 24 with two processes). Only used when more than one process trains."""
        return sum(p.reshape(-1)[:1].sum() for p in self.parameters() if p.requires_grad) * 0.0

    def source_gate_loss(self, hidden: torch.Tensor, labels: torch.Tensor, asked_source: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the source gate at each position that predicts an answer's time token (``labels``
        shifted, as the LM loss) against the source that time is about; zero when no such position is labelled.
        Only where a time is written does the gate act, so only there is it taught."""
        _, writes_time = time_token_seconds(labels[:, 1:], self.config)
        target = asked_source[:, 1:].masked_fill(~writes_time.to(asked_source.device), -100)
        if not bool((target != -100).any()):
            return hidden.new_zeros(())
        gate = self.source_gate(hidden[:, :-1]).float()
        return nn.functional.cross_entropy(gate.flatten(0, 1), target.flatten().to(gate.device), ignore_index=-100)

    def point_at_seconds(self, hidden: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Add a pointer term to the time-token logits: ``query(h) · key(second s)`` for each second of the row's
        audio, plus the source pointer: ``Σ_k gate_k(h) · source_query(h) · source_key(s, k)``, the gate choosing
        the source asked about and the keys reading only that source's columns. Writing "when" becomes choosing a
        second by its audio, not recalling a token by heart; "when does the piano enter" reads the piano's columns,
        not a mixture the LM's query would have to untangle. In a turn that names intensity (:func:`region_turn`),
        also ``region_query(h) · region_features(s)``: the heads' own intensity regions, read by the MTR
        annotation's rule, as steps the answer's boundaries can point at."""
        offset = self.config.time_token_offset
        if not self.config.audio_bos_token_id or not self.model.audio_cache:
            return logits
        scale = hidden.shape[-1] ** -0.5
        n_src = len(self.config.sources)
        rows = []
        for b in range(logits.shape[0]):
            keys = self.model.time_keys(b)
            if keys is None:
                rows.append(logits[b])
                continue
            n = min(keys.shape[0], logits.shape[-1] - offset)
            ptr = self.time_query(hidden[b]) @ keys[:n].T * scale
            if n_src:
                gate = torch.softmax(self.source_gate(hidden[b]).float(), -1)[:, :n_src].to(hidden.dtype)
                # Σ_k gate_k q · key_k as one product: (gate ⊗ query) · keys, both flattened over (source, dim)
                gq = (gate.unsqueeze(-1) * self.source_query(hidden[b]).unsqueeze(-2)).flatten(1)
                ptr = ptr + gq @ self.model.source_keys(b)[:n].flatten(1).T
            regions = self.model.region_features(b)
            turn = self.model.region_turns[b][-hidden.shape[1]:] if b < len(self.model.region_turns) else None
            if regions is not None and turn is not None and bool(turn.any()):
                ptr = ptr + turn.unsqueeze(-1).to(ptr.dtype) * (self.region_query(hidden[b]) @ regions[:n].T.to(ptr.dtype))
            rows.append(torch.cat([logits[b, :, :offset], logits[b, :, offset : offset + n] + ptr,
                                   logits[b, :, offset + n :]], dim=-1))
        return torch.stack(rows)

    def point_at_sources(self, hidden: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Add to each source name's logit ``moment_query(h) · moment(asked second, source)``: in a turn that names
        a time ("what changes at 0:42?"), naming the source that enters or stops there is a look-up of the sources'
        moments at that second, the source pointer's question turned round."""
        return self._read_moments(hidden, logits, self.config.source_token_ids, self.model.source_moments,
                                  lambda h, m: torch.einsum("ld,lkd->lk", self.moment_query(h), m))

    def point_at_music_words(self, hidden: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Add to each music word's logit ``music_word_query_w(h) · music_moment(asked second)``: in a turn that names
        a time, "the music gets softer" reads whether the music gets softer then — the word that answers, not only the
        word "music" two tokens before it (music moments), sees the measured change."""
        n = len(MUSIC_READ_WORDS)
        if self.config.music_word_ids and len(self.config.music_word_ids) != n:
            raise ValueError(f"music_word_ids has {len(self.config.music_word_ids)} ids for the {n} music words")
        return self._read_moments(hidden, logits, self.config.music_word_ids, self.model.music_moments,
                                  lambda h, m: torch.einsum("lwd,ld->lw", self.music_word_query(h).view(len(h), n, -1), m))

    def _read_moments(self, hidden: torch.Tensor, logits: torch.Tensor, token_ids: list[int], moments_of, bonus
                      ) -> torch.Tensor:
        """Add ``bonus(h, moments at the asked second)`` ``(L, len(token_ids))`` to the logits of ``token_ids`` (-1:
        none) at each position of a turn that names a time."""
        ids = torch.tensor(token_ids, device=logits.device, dtype=torch.long)
        if not len(ids) or not self.model.audio_cache:
            return logits
        valid = ids >= 0
        rows = []
        for b in range(logits.shape[0]):
            moments = moments_of(b)
            at = self.model.asked[b][-logits.shape[1]:] if b < len(self.model.asked) else None
            ok = None if moments is None or at is None else (at >= 0) & (at < moments.shape[0])
            if ok is None or not bool(ok.any()):
                rows.append(logits[b])
                continue
            add = bonus(hidden[b][ok], moments[at[ok]]).to(logits.dtype)
            row = logits[b].clone()
            row[ok.nonzero()[:, :1], ids[valid]] += add[:, valid]
            rows.append(row)
        return torch.stack(rows)

    def _expand_inputs_for_generation(self, expand_size: int = 1, is_encoder_decoder: bool = False, input_ids=None,
                                      **model_kwargs):
        """Repeat each row's audio features with its row (``num_return_sequences``, beams): transformers expands
        only tensors, and ``audio_features`` is a list of per-track tensors."""
        feats = model_kwargs.get("audio_features")
        if expand_size > 1 and isinstance(feats, (list, tuple)):
            model_kwargs["audio_features"] = [f for f in feats for _ in range(expand_size)]
        return super()._expand_inputs_for_generation(expand_size, is_encoder_decoder, input_ids, **model_kwargs)

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, audio_features=None, cache=None, **kwargs):
        # ``cache`` named here, as newer transformers name it: generate checks a cache passed in against this signature
        cache = past_key_values if cache is None else cache
        inputs = super().prepare_inputs_for_generation(input_ids, **{CACHE_ARG: cache}, **kwargs)
        # audio is added when the prompt is first embedded; later steps only see generated tokens
        first_step = cache is None or cache.get_seq_length() == 0
        inputs["audio_features"] = audio_features if first_step else None
        return inputs


AutoConfig.register("must", MusTConfig)
AutoModelForCausalLM.register(MusTConfig, MusTForCausalLM)
