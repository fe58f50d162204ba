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


def test_grpo_sampling_never_writes_an_audio_placeholder(tiny, tmp_path):
    """A sampled ``<|AUDIO|>`` in a completion breaks the next forward (more audio tokens than features): with two
    processes it crashed stage 4 of the smoke run. The recipe's generation kwargs suppress the placeholders."""
    from types import SimpleNamespace

    from stages.hf_audio import audio_token_ids
    from stages.stage4_grpo import GRPOStageRecipe

    model, proc = tiny
    placeholders = audio_token_ids(proc)
    assert model.config.audio_token_id in placeholders and len(placeholders) == 3
    recipe = GRPOStageRecipe(SimpleNamespace(model=SimpleNamespace(kind="hf")), tmp_path)
    recipe.processor = proc
    kwargs = recipe._generation_kwargs()
    head = model.get_output_embeddings()
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.zero_()
        biased.bias[model.config.audio_token_id] = 100.0  # a head that prefers the placeholder by far
    ids = proc.tokenizer(["When does the piano first start to play?"], return_tensors="pt")
    model.set_output_embeddings(biased)
    try:
        torch.manual_seed(0)
        free = model.generate(**ids, max_new_tokens=8, do_sample=True, pad_token_id=proc.tokenizer.pad_token_id)
        torch.manual_seed(0)
        kept = model.generate(**ids, max_new_tokens=8, do_sample=True, pad_token_id=proc.tokenizer.pad_token_id, **kwargs)
    finally:
        model.set_output_embeddings(head)
    new = ids["input_ids"].shape[1]
    assert free[0, new:].tolist() == [model.config.audio_token_id] * 8  # the biased head writes only placeholders ...
    assert not set(kept[0, new:].tolist()) & set(placeholders)  # ... and the recipe's sampling never writes one
    assert GRPOStageRecipe(SimpleNamespace(model=SimpleNamespace(kind="must")), tmp_path)._generation_kwargs() is None
