"""Measured tempo signals (must.model.tempo): a click track whose tempo changes, hand-computed per-second values,
and a MusT model that carries them."""

import numpy as np
import pytest
import torch

from must.model import MusTConfig, MusTForCausalLM
from must.model.modeling import MusicEncoder
from must.model.tempo import TEMPO_FRAME_SIGNALS, metrical_tempo, tempo_frames, tempo_track_signals

SR = 16000


def clicks(bpm_before: float, bpm_after: float, change: float, seconds: float) -> np.ndarray:
    """20 ms decaying 1 kHz bursts on every beat, ``bpm_before`` until ``change`` s, then ``bpm_after``."""
    y = np.zeros(int(seconds * SR), np.float32)
    burst = np.sin(2 * np.pi * 1000 * np.arange(int(0.02 * SR)) / SR) * np.exp(-np.arange(int(0.02 * SR)) / 60)
    t = 0.0
    while t < seconds - 0.05:
        i = int(t * SR)
        y[i : i + len(burst)] += burst.astype(np.float32)
        t += 60.0 / (bpm_before if t < change else bpm_after)
    return y


def per_second(frames: torch.Tensor, rate: int = 10) -> torch.Tensor:
    n = len(frames) // rate
    return frames[: n * rate].view(n, rate, -1).mean(1)


def test_a_tempo_change_is_located_and_its_direction_read():
    cfg = MusTConfig()
    mel = MusicEncoder(cfg).log_mel(torch.from_numpy(clicks(100, 150, 24.0, 48.0))[None])[0]
    frames = tempo_frames(mel, cfg.sample_rate / cfg.mel_hop, cfg.mel_frames_per_frame)
    assert frames.shape == (480, TEMPO_FRAME_SIGNALS)
    sec = per_second(frames)
    # onsets per 0.1 s frame, averaged over each second: 100 BPM is 1.67 onsets a second, 150 BPM 2.5
    assert 10 * sec[2:20, 1].mean() == pytest.approx(100 / 60, abs=0.15)
    assert 10 * sec[28:46, 1].mean() == pytest.approx(150 / 60, abs=0.15)
    sig = tempo_track_signals(sec)
    peak = int(torch.argmax(sig[:, 0]))
    assert abs(peak - 24) <= 2, peak
    # more onsets after, and the tempo measured after is 1.5 times the tempo before: log2 1.5 = 0.585
    assert sig[peak, 1] > 0.2 and sig[peak, 2].item() == pytest.approx(np.log2(1.5), abs=0.03)
    # the tempo change is read within 2 s of the novelty peak, and nowhere else
    assert torch.allclose(sig[peak - 2 : peak + 3, 2], torch.tensor(np.log2(1.5), dtype=torch.float32), atol=0.03)
    assert torch.all(sig[: peak - 2, 2] == 0) and torch.all(sig[peak + 3 :, 2] == 0)
    slower = tempo_track_signals(per_second(tempo_frames(
        MusicEncoder(cfg).log_mel(torch.from_numpy(clicks(150, 100, 24.0, 48.0))[None])[0], 50.0, 5)))
    peak = int(torch.argmax(slower[:, 0]))
    assert abs(peak - 24) <= 2 and slower[peak, 1] < -0.2
    assert slower[peak, 2].item() == pytest.approx(-np.log2(1.5), abs=0.03)


def test_steady_clicks_have_no_novelty():
    cfg = MusTConfig()
    mel = MusicEncoder(cfg).log_mel(torch.from_numpy(clicks(120, 120, 0.0, 30.0))[None])[0]
    sig = tempo_track_signals(per_second(tempo_frames(mel, 50.0, 5)))
    assert float(sig[6:24, 0].max()) < 0.05
    assert torch.all(sig[:, 2] == 0)


def test_tempo_track_signals_by_hand():
    onsets = torch.tensor([2.0, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3])
    change = torch.full((16,), 0.5)  # log2 tempo after over before, as a 10 s window either side reads it
    novelty = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.7, 0.3, 0.2, 0.1, 0.0, 0.0, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0])
    sig = tempo_track_signals(torch.stack([novelty, onsets, change], -1), span=2)
    assert torch.equal(sig[:, 0], novelty)
    # the peak at second 4 keeps seconds 2-6; the bump at 10 is within 6 s of it, so no peak; nor is any flat second
    # that sees the bump
    assert sig[:, 2].tolist() == [0.0, 0, .5, .5, .5, .5, .5, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    # at second 4: (3 + 3) / 2 - (2 + 2) / 2 = 1 onset a second more, over the track's mean of 44 / 16 = 2.75
    assert sig[4, 1].item() == pytest.approx(1 / 2.75)
    assert sig[0, 1].item() == 0.0 and sig[15, 1].item() == 0.0  # edges repeat, so nothing changes there


def impulses(period: float, seconds: float = 10.0, rate: float = 50.0) -> np.ndarray:
    """An envelope at ``rate`` Hz with a 1 every ``period`` seconds."""
    env = np.zeros(int(seconds * rate))
    env[np.round(np.arange(0, seconds, period) * rate).astype(int)] = 1.0
    return env


def test_the_bar_settles_the_octave_of_the_tempo():
    # onsets on every half beat of 70 BPM (0.43 s) alone read as 140 BPM: the biased autocorrelation favours the
    # shortest period that explains them
    hats = impulses(60 / 140)
    assert 2 ** metrical_tempo(hats, np.zeros_like(hats), 50.0) == pytest.approx(140, rel=0.02)
    # chords changing every 3.43 s (four beats of 70 BPM, not of 140) make it 70
    assert 2 ** metrical_tempo(hats, impulses(4 * 60 / 70), 50.0) == pytest.approx(70, rel=0.02)


def test_a_model_with_tempo_signals_carries_them_to_the_pooled_seconds():
    cfg = MusTConfig(sources=["piano"], encoder_dim=16, encoder_layers=1, encoder_channels=4, max_seconds=60,
                     tempo_signals=True, text_config=dict(vocab_size=200, hidden_size=16, intermediate_size=32,
                                                          num_hidden_layers=1, num_attention_heads=2,
                                                          num_key_value_heads=2, max_position_embeddings=256))
    torch.manual_seed(0)
    model = MusTForCausalLM(cfg).eval()
    feats = model.encode_audio(clicks(100, 150, 12.0, 24.0))
    assert feats.shape == (240, 16 + cfg.n_heads_out + 2 + TEMPO_FRAME_SIGNALS) == (240, cfg.feature_dim)
    pooled = model.model.pool(feats)
    assert model.model.n_track_signals == 9
    assert torch.allclose(pooled[:, -3:], tempo_track_signals(per_second(feats[:, -TEMPO_FRAME_SIGNALS:])))
    assert model.model.time_key_change.in_features == 9
    assert model.model.projector[0].in_features == pooled.shape[1]
