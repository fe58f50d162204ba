"""The hf audio-LM helpers: the keyed audio store for text-only GRPO prompts, and answer-only labels."""

import numpy as np
import pytest
import torch

from must.tiny_models import build_tiny_qwen2_audio
from stages.hf_audio import attach_audio_store, audio_token_count, chat_prompt, load_hf


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = build_tiny_qwen2_audio(tmp_path_factory.mktemp("q") / "m", ["When does the piano first start to play?"])
    return load_hf(path)


def test_keyed_store_gives_text_only_prompts_their_audio(tiny):
    model, proc = tiny
    fe = proc.feature_extractor
    store = {}
    for k, seed in ((1, 0), (2, 1)):
        wave = np.random.default_rng(seed).normal(0, 0.3, 16000 * 5).astype(np.float32)
        f = fe(wave, sampling_rate=16000, return_tensors="pt", return_attention_mask=True, padding="max_length")
        store[k] = {"input_features": f["input_features"][0], "feature_attention_mask": f["attention_mask"][0]}
    n = audio_token_count(store[1]["feature_attention_mask"])
    assert n == 125  # 5 s: 500 mel frames → 250 → 125 tokens
    with torch.no_grad():
        bare = model(**proc.tokenizer([chat_prompt(proc, "When does the piano first start to play?", "", key=1, expanded=n)],
                                      return_tensors="pt")).logits[0, -1]
    attach_audio_store(model, proc.tokenizer, store)
    logits = {}
    for k in (1, 2, 3):
        ids = proc.tokenizer([chat_prompt(proc, "When does the piano first start to play?", "", key=k, expanded=n)],
                             return_tensors="pt")
        with torch.no_grad():
            logits[k] = model(**ids).logits[0, -1]
    assert not torch.allclose(logits[1], logits[2])  # different audio through the store
    assert not torch.allclose(bare, logits[1])  # without the store the same prompt has no audio
    # the same prompt with the audio given directly matches the store path
    wave1 = np.random.default_rng(0).normal(0, 0.3, 16000 * 5).astype(np.float32)
    direct = proc(text=[chat_prompt(proc, "When does the piano first start to play?", "", key=1)], audio=[wave1],
                  sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(model(**direct).logits[0, -1], logits[1], atol=1e-4)
