"""Tiny, randomly initialised checkpoints built locally (no download) for smoke tests of the adapters
and training recipes: a word-level tokenizer trained on given text, and a Qwen2-Audio-style audio-LM."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["SPECIAL_TOKENS", "build_word_tokenizer", "build_tiny_qwen2_audio"]

SPECIAL_TOKENS = ["<pad>", "<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>",
                  "<|audio_eos|>", "<answer>", "</answer>"]
_BASE = "system user assistant you are a helpful the at to of and in is what when does first start play stop music " \
        "change describe answer with letter option time interval intervals format m ss a b c d e f x y z " \
        "0 1 2 3 4 5 6 7 8 9 . , ? ! : ; - – — ( ) [ ] \" ' / → *"


def build_word_tokenizer(texts: Iterable[str], extra_special: list[str] | None = None, max_vocab: int = 8000):
    """A ``PreTrainedTokenizerFast`` (word level, digits and punctuation split) trained on ``texts``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = SPECIAL_TOKENS + [t for t in extra_special or [] if t not in SPECIAL_TOKENS]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(),
                                                 pre_tokenizers.Digits(individual_digits=True)])
    trainer = trainers.WordLevelTrainer(vocab_size=max_vocab, special_tokens=specials, min_frequency=1)
    corpus = [_BASE, *[str(t) for t in texts], *[re.sub(r"\s+", " ", str(t)) for t in texts]]
    tok.train_from_iterator(corpus, trainer)
    from tokenizers import decoders

    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<|im_end|>",
                                   bos_token="<|im_start|>", additional_special_tokens=specials[2:])
    fast.padding_side = "left"
    return fast


def build_tiny_qwen2_audio(path: str | Path, texts: Iterable[str] = (), hidden: int = 32, seed: int = 0) -> Path:
    """Save a tiny random Qwen2-Audio checkpoint (model, tokenizer, processor) at ``path``."""
    import torch
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor, WhisperFeatureExtractor

    path = Path(path)
    tok = build_word_tokenizer(texts)
    fe = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000)
    config = Qwen2AudioConfig(
        audio_config=dict(d_model=hidden, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=2 * hidden,
                          num_mel_bins=128, max_source_positions=1500),
        text_config=dict(model_type="qwen2", vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id),
        audio_token_index=tok.convert_tokens_to_ids("<|AUDIO|>"),
    )
    torch.manual_seed(seed)
    model = Qwen2AudioForConditionalGeneration(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(path)
    Qwen2AudioProcessor(feature_extractor=fe, tokenizer=tok).save_pretrained(path)
    return path
