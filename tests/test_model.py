"""MusT-small: tokenizer time tokens, audio injection, generation, audio store, save/load (safetensors)."""

import itertools
import re

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from must.model import MusTConfig, MusTForCausalLM, MusTProcessor, inference
from must.model.modeling import contrast, source_context, time_features, track_signals


def _tiny_config(proc: MusTProcessor, sources: list[str], max_seconds: int = 120, **extra) -> MusTConfig:
    """The tests' tiny MusT config (32-wide, one layer each) for ``proc``'s tokenizer."""
    return MusTConfig(sources=sources, encoder_dim=32, encoder_layers=1, encoder_channels=8, max_seconds=max_seconds,
                      text_config=dict(vocab_size=len(proc.tokenizer), hidden_size=32, intermediate_size=64,
                                       num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                       max_position_embeddings=512),
                      **proc.config_ids(), **extra)


@pytest.fixture(scope="module")
def tiny():
    proc = MusTProcessor.build(["When does the piano first start to play?", "The drums enter and the tempo speeds up."],
                               max_seconds=120)
    cfg = _tiny_config(proc, ["piano", "drums"])
    torch.manual_seed(0)
    return MusTForCausalLM(cfg).eval(), proc


def test_time_tokens_are_single_contiguous_tokens(tiny):
    _, proc = tiny
    tok = proc.tokenizer
    ids = proc.config_ids()
    assert tok.tokenize("at 1:05, the 0:57-1:12.") == ["at", "1:05", ",", "the", "0:57", "-", "1:12", "."]
    assert tok.convert_tokens_to_ids("1:05") - ids["time_token_offset"] == 65
    assert tok.convert_tokens_to_ids("2:00") - ids["time_token_offset"] == 120
    assert proc.decode(tok("0:57 - 1:12")["input_ids"]) in ("0:57 - 1:12", "0:57-1:12")
    assert len(ids["digit_token_ids"]) == 10 and len(set(ids["digit_token_ids"])) == 10


def test_decode_rejoins_underscored_names():
    proc = MusTProcessor.build(["Which instrument comes in first? electric_bass", "the acoustic guitar enters"], max_seconds=60)
    ids = proc.tokenizer("electric_bass", add_special_tokens=False)["input_ids"]
    assert len(ids) == 3  # the word-level tokenizer splits the underscore off
    assert proc.decode(ids) == "electric_bass"
    assert proc.decode(proc.tokenizer("the acoustic guitar enters at 0:12")["input_ids"]) == "the acoustic guitar enters at 0:12"


def test_decode_rejoins_numbers_split_into_digits():
    proc = MusTProcessor.build(["the tempo speeds up from about 103 to 137 BPM at 1:05", "2"], max_seconds=90)
    ids = proc.tokenizer("the tempo speeds up from about 103 to 137 bpm at 1:05 0:07", add_special_tokens=False)["input_ids"]
    assert proc.tokenizer.convert_ids_to_tokens(ids)[6:9] == ["1", "0", "3"]  # the tokenizer writes numbers digit by digit
    assert proc.decode(ids) == "the tempo speeds up from about 103 to 137 bpm at 1:05 0:07"
    assert proc.decode(proc.tokenizer("2", add_special_tokens=False)["input_ids"]) == "2"


def test_encoder_frame_rate_and_time_features(tiny):
    model, _ = tiny
    feats = model.encode_audio(np.zeros(16000 * 12, np.float32))
    # 10 Hz; encoder dim + head probabilities + measured loudness and flux
    assert feats.shape == (120, 32 + model.config.n_heads_out + 2) == (120, model.config.feature_dim)
    t = time_features(torch.tensor([0.0, 30.0]))
    assert t.shape == (2, 16) and not torch.allclose(t[0], t[1])


def test_audio_is_added_only_at_time_tokens(tiny):
    model, proc = tiny
    enc = proc.tokenizer([proc.prompt("When does the piano first start to play?", 5.0)], return_tensors="pt")
    ids = enc["input_ids"][0]
    base = model.model.embed(enc["input_ids"])
    feats = torch.randn(50, model.config.feature_dim)
    with_audio = model.model.embed(enc["input_ids"], [feats])
    changed = (base - with_audio).abs().sum(-1)[0] > 0
    secs = ids - model.config.time_token_offset
    in_span = (secs >= 0) & (secs < 5)
    assert changed.tolist() == in_span.tolist() and int(in_span.sum()) == 5
    proj = model.model.project(feats)
    assert proj.shape == (5, 32)
    pos = int(torch.nonzero(in_span)[2])  # the third time token is second 2
    assert torch.allclose(with_audio[0, pos] - base[0, pos], proj[2])


def test_time_tokens_in_the_question_carry_their_second(tiny):
    model, proc = tiny
    enc = proc.tokenizer([proc.prompt("What changes at 0:02?", 5.0)], return_tensors="pt")
    ids = enc["input_ids"][0]
    feats = torch.randn(50, model.config.feature_dim)
    diff = model.model.embed(enc["input_ids"], [feats]) - model.model.embed(enc["input_ids"])
    second2 = torch.nonzero(ids == model.config.time_token_offset + 2).flatten().tolist()
    assert len(second2) == 2  # in the question and in the audio span
    proj = model.model.project(feats)
    for pos in second2:
        assert torch.allclose(diff[0, pos], proj[2])


def test_pointer_picks_the_second_whose_audio_matches(tiny):
    import copy

    model = copy.deepcopy(tiny[0])
    proc = tiny[1]
    feats = torch.zeros(50, model.config.feature_dim)
    feats[20:30, 0] = 1.0  # only second 2 has encoder dimension 0 on: pooled feature 0 (frame mean) = 1 there
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.model.time_key.weight.zero_()
        model.model.time_key.bias.zero_()
        model.model.time_key.weight[0, 0] = 10.0  # key_s = (10 * pooled_s[0], 0, …)
        model.model.time_key_change.weight.zero_()
        model.model.time_key_change.bias.zero_()
    enc = proc.tokenizer([proc.prompt("When does the piano first start to play?", 5.0)], return_tensors="pt")
    h = model(**enc, audio_features=[feats], output_hidden_states=True).hidden_states[-1][0, -1]
    with torch.no_grad():  # query = e0 at the answer position
        model.time_query.weight.copy_(torch.outer(torch.eye(32)[0], h) / h.dot(h))
    logits = model(**enc, audio_features=[feats]).logits[0, -1]
    off = model.config.time_token_offset
    # pointer logit of second 2 is 10 * 1 / sqrt(32); every other token scores 0
    assert logits[off + 2].item() == pytest.approx(10 / 32**0.5, rel=1e-4)
    assert torch.count_nonzero(logits.abs() > 1e-5).item() == 1
    out = model.generate(**enc, audio_features=[feats], max_new_tokens=2, do_sample=False, output_scores=True,
                         return_dict_in_generate=True)
    assert out.sequences[0, enc["input_ids"].shape[1]].item() == off + 2
    # the second step reuses the prompt's audio (cache): same logits as one full forward over the sequence
    full = model(input_ids=out.sequences[:, :-1], audio_features=[feats]).logits[0, -1]
    assert torch.allclose(out.scores[1][0], full, atol=1e-4)


def test_context_keys_read_each_seconds_token_in_the_audio_span(tiny):
    import copy

    from must.model.modeling import TRACK_SIGNALS

    model, proc = copy.deepcopy(tiny[0]), tiny[1]
    assert torch.count_nonzero(model.model.time_key_context.weight) == 0  # a new model points as before
    enc = proc.tokenizer([proc.prompt("What changes at 0:02?", 5.0)], return_tensors="pt")
    ids = enc["input_ids"][0]
    feats = torch.randn(50, model.config.feature_dim)
    with torch.no_grad():
        model.model.time_key_context.weight.copy_(2 * torch.eye(32))
        hidden = model.model(**enc, audio_features=[feats]).last_hidden_state[0]
        pooled = model.model.pool(feats)
        audio_keys = model.model.time_key(pooled) + model.model.time_key_change(contrast(pooled[:, -TRACK_SIGNALS:]))
        keys = model.model.time_keys(0)
    off = model.config.time_token_offset
    bos = int(torch.nonzero(ids == model.config.audio_bos_token_id)[0])
    for s in range(5):
        pos = int(torch.nonzero(ids == off + s).flatten()[-1])  # 0:02 also occurs in the question, before the span
        assert pos > bos
        assert torch.allclose(keys[s], audio_keys[s] + 2 * hidden[pos], atol=1e-5)
    # generation after the prompt keeps the prompt's context keys: same logits as one full forward
    out = model.generate(**enc, audio_features=[feats], max_new_tokens=2, do_sample=False, output_scores=True,
                         return_dict_in_generate=True)
    full = model(input_ids=out.sequences[:, :-1], audio_features=[feats]).logits[0, -1]
    assert torch.allclose(out.scores[1][0], full, atol=1e-4)


def test_a_checkpoint_saved_without_context_keys_loads_them_as_zero(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    model, proc = tiny
    model.save_pretrained(tmp_path)
    weights = load_file(str(tmp_path / "model.safetensors"))
    del weights["model.time_key_context.weight"]
    save_file(weights, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    loaded = MusTForCausalLM.from_pretrained(tmp_path).eval()
    assert torch.count_nonzero(loaded.model.time_key_context.weight) == 0
    enc = proc.tokenizer([proc.prompt("When does the piano first start to play?", 5.0)], return_tensors="pt")
    feats = torch.randn(50, model.config.feature_dim)
    assert torch.allclose(loaded(**enc, audio_features=[feats]).logits, model(**enc, audio_features=[feats]).logits, atol=1e-5)


def test_generate_and_store_and_round_trip(tiny, tmp_path):
    model, proc = tiny
    feats = model.encode_audio(np.random.default_rng(0).normal(0, 0.1, 16000 * 8).astype(np.float32))
    enc = proc.tokenizer([proc.prompt("When does the piano first start to play?", 8.0)], return_tensors="pt")
    g1 = model.generate(**enc, audio_features=[feats], max_new_tokens=4, do_sample=False)
    assert g1.shape[1] == enc["input_ids"].shape[1] + 4
    # several answers per prompt (sampling, beams) read the prompt's audio in every row
    three = model.generate(**enc, audio_features=[feats], max_new_tokens=1, do_sample=True, num_return_sequences=3,
                           output_logits=True, return_dict_in_generate=True).logits[0]
    heard, silent = (model(**enc, audio_features=[f]).logits[0, -1] for f in (feats, torch.zeros_like(feats)))
    assert not torch.allclose(heard, silent, atol=1e-4)
    assert all(torch.allclose(row, heard, atol=1e-5) for row in three)
    with pytest.raises(ValueError, match="2 rows for a batch of 1"):
        model(**enc, audio_features=[feats, feats])
    model.audio_store[17] = feats
    keyed = proc.tokenizer([proc.prompt("When does the piano first start to play?", 8.0, key=17)], return_tensors="pt")
    other = proc.tokenizer([proc.prompt("When does the piano first start to play?", 8.0, key=18)], return_tensors="pt")
    assert not torch.allclose(model(**keyed).logits[0, -1], model(**other).logits[0, -1])
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is MusTForCausalLM
    assert torch.allclose(loaded(**enc, audio_features=[feats]).logits, model(**enc, audio_features=[feats]).logits, atol=1e-5)
    assert torch.allclose(loaded.encode_audio(np.zeros(16000, np.float32)), model.encode_audio(np.zeros(16000, np.float32)), atol=1e-5)


def test_must_adapter_names_and_checks_its_gto_arguments(tiny, tmp_path):
    from must.models.base import load_model, parse_model_args

    model, proc = tiny
    model.save_pretrained(tmp_path / "final")
    proc.save_pretrained(tmp_path / "final")
    spec = f"must:{tmp_path / 'final'}"
    assert load_model(spec, choices="constrained").gto_scan is True
    off = load_model(spec, **parse_model_args("choices=constrained,gto_scan=false"))
    assert off.gto_scan is False and off.name == f"must:{tmp_path.name}+constrained(gto_scan=false)"
    with pytest.raises(ValueError, match="gto_scan must be true or false"):
        load_model(spec, choices="constrained", gto_scan="off")
    assert load_model(spec, choices="constrained").gto_grounding is True
    ungrounded = load_model(spec, **parse_model_args("choices=constrained,gto_grounding=false"))
    assert ungrounded.gto_grounding is False and ungrounded.name == f"must:{tmp_path.name}+constrained(gto_grounding=false)"
    with pytest.raises(ValueError, match="gto_grounding must be true or false"):
        load_model(spec, choices="constrained", gto_grounding=1)
    assert load_model(spec, choices="constrained").tsg_scan is True
    unscanned = load_model(spec, **parse_model_args("choices=constrained,tsg_scan=false,ltr_grounding=false"))
    assert unscanned.tsg_scan is False
    assert unscanned.name == f"must:{tmp_path.name}+constrained(ltr_grounding=false)(tsg_scan=false)"
    assert load_model(spec, choices="constrained").ltr_grounding is True
    plain = load_model(spec, **parse_model_args("choices=constrained,ltr_grounding=false"))
    assert plain.ltr_grounding is False and plain.name == f"must:{tmp_path.name}+constrained(ltr_grounding=false)"
    assert load_model(spec, choices="constrained").tad_choice is True
    greedy_tad = load_model(spec, **parse_model_args("choices=constrained,tad_choice=false"))
    assert greedy_tad.tad_choice is False and greedy_tad.name == f"must:{tmp_path.name}+constrained(tad_choice=false)"
    assert load_model(spec, choices="constrained").gto_min_gap == 3  # GTO_MIN_GAP
    before = load_model(spec, **parse_model_args("choices=constrained,gto_min_gap=1"))
    assert before.gto_min_gap == 1 and before.name == f"must:{tmp_path.name}+constrained(gto_min_gap=1)"
    for bad in (0, 2.5, "3", True):
        with pytest.raises(ValueError, match="gto_min_gap must be a whole number"):
            load_model(spec, choices="constrained", gto_min_gap=bad)
    assert load_model(spec, choices="constrained").avqa_closed is True
    open_avqa = load_model(spec, **parse_model_args("choices=constrained,avqa_closed=false"))
    assert open_avqa.avqa_closed is False and open_avqa.name == f"must:{tmp_path.name}+constrained(avqa_closed=false)"
    assert load_model(spec, choices="constrained").tsg_weights == (0.5, 3.0)  # TSG_POINTER_WEIGHT, TSG_SCAN_WEIGHT
    fitted = load_model(spec, **parse_model_args("choices=constrained,tsg_pointer_weight=1,tsg_scan_weight=2.5"))
    assert fitted.tsg_weights == (1, 2.5) and fitted.name == f"must:{tmp_path.name}+constrained(tsg_weights=1,2.5)"
    for bad in (-1, "x", True, float("inf")):
        with pytest.raises(ValueError, match="tsg_scan_weight must be a number"):
            load_model(spec, choices="constrained", tsg_scan_weight=bad)


def test_encode_audio_handles_chunk_tails(tiny):
    model, _ = tiny
    for seconds, frames in ((150.02, 1500), (150.5, 1505), (301.0, 3010)):
        assert model.encode_audio(np.zeros(int(16000 * seconds), np.float32)).shape[0] == frames


def test_contrast_marks_starts_and_stops():
    x = torch.tensor([0.0, 0, 0, 1, 1, 1]).unsqueeze(-1)
    # mean of the next two seconds minus mean of the previous two (edges repeated)
    assert contrast(x)[:, 0].tolist() == [0.0, 0.0, 0.5, 1.0, 0.5, 0.0]
    assert contrast(1 - x)[:, 0].tolist() == [0.0, 0.0, -0.5, -1.0, -0.5, 0.0]


def test_source_context_says_what_played_before_and_after_each_second():
    act = torch.tensor([[0.1, 0.0], [0.9, 0.0], [0.2, 0.7], [0.8, 0.0]])
    ctx = source_context(act)
    assert torch.allclose(ctx[:, 0], torch.tensor([0.0, 0.1, 0.9, 0.9]))  # source 0, most it played before
    assert torch.allclose(ctx[:, 1], torch.tensor([0.0, 0.0, 0.0, 0.7]))  # source 1, before
    assert torch.allclose(ctx[:, 2], torch.tensor([0.9, 0.8, 0.8, 0.0]))  # source 0, most it plays after
    assert torch.allclose(ctx[:, 3], torch.tensor([0.7, 0.7, 0.0, 0.0]))  # source 1, after
    # first entry of source 1: the second where it plays and had not before
    assert int(torch.argmax(act[:, 1] - ctx[:, 1])) == 2


def test_source_context_widens_the_pooled_seconds_before_the_track_signals(tiny):
    model, proc = tiny
    cfg = MusTConfig(**{**model.config.to_dict(), "source_context": True})
    torch.manual_seed(0)
    wide = MusTForCausalLM(cfg).eval()
    feats = torch.rand(40, cfg.feature_dim)
    narrow, pooled = model.model.pool(feats), wide.model.pool(feats)
    n, tail = len(cfg.sources), 6  # TRACK_SIGNALS stay last: the time keys read them from the end
    assert pooled.shape == (4, narrow.shape[1] + 2 * n)
    assert torch.equal(pooled[:, -tail:], narrow[:, -tail:])
    assert torch.equal(pooled[:, : narrow.shape[1] - tail], narrow[:, :-tail])
    enc = proc.tokenizer([proc.prompt("When does the piano first start to play?", 4.0)], return_tensors="pt")
    assert torch.isfinite(wide(**enc, audio_features=[feats]).logits).all()


def test_track_signals_are_relative_to_the_track():
    loud = torch.tensor([-1.0, -3.0, -2.0, -4.0])
    flux = torch.tensor([0.2, 0.1, 0.4, 0.0])
    sig = track_signals(torch.stack([loud, flux], -1), smooth=1)
    assert sig[:, 0].tolist() == [0.0, -1.0, -0.5, -1.5]  # log10 power below the track's loudest second, /2
    assert torch.allclose(sig[:, 1], torch.tensor([1.0, 1 / 3, 2 / 3, 0.0]))  # loudness rank
    assert torch.allclose(sig[:, 3], torch.tensor([0.5, 0.25, 1.0, 0.0]))  # flux scaled to [0, 1]
    # intensity proxy: amplitude relative to the loudest second × flux / max flux, then scaled to [0, 1]
    inten = torch.tensor([1.0, 0.1, 10 ** -0.5, 0.01]) * torch.tensor([0.5, 0.25, 1.0, 0.0])
    assert torch.allclose(sig[:, 4], inten / inten.max())
    assert torch.allclose(sig[:, 5], torch.tensor([1.0, 1 / 3, 2 / 3, 0.0]))


def test_track_signals_read_intensity_from_the_pace_head_when_given():
    from must.model.pace import pace_target

    loud = torch.tensor([-1.0, -3.0, -2.0, -4.0])
    flux = torch.tensor([0.2, 0.1, 0.4, 0.0])
    pace = torch.tensor(pace_target(np.array([3.0, 1.0, 0.0, 1.0])), dtype=torch.float32)
    sig = track_signals(torch.stack([loud, flux], -1), smooth=1, pace=pace)
    # amplitude relative to the loudest second × pace / max pace; flux keeps its own column
    inten = torch.tensor([1.0, 0.1, 10 ** -0.5, 10 ** -1.5]) * torch.tensor([1.0, 1 / 3, 0.0, 1 / 3])
    assert torch.allclose(sig[:, 4], inten / inten.max(), atol=1e-6)
    assert torch.allclose(sig[:, 3], torch.tensor([0.5, 0.25, 1.0, 0.0]))


def test_pace_head_is_the_last_head_and_the_model_runs_with_it(tiny):
    model, proc = tiny
    cfg = MusTConfig(**{**model.config.to_dict(), "pace_head": True})
    assert (cfg.n_heads_out, cfg.pace_index, model.config.pace_index) == (8, 7, None)  # 3 + 2 × 2 sources, + pace
    torch.manual_seed(0)
    paced = MusTForCausalLM(cfg).eval()
    assert paced.encoder.heads.out_features == 8 and paced.encode_audio(np.zeros(16000 * 3)).shape == (30, cfg.feature_dim)
    feats = torch.rand(40, cfg.feature_dim)
    assert paced.model.pool(feats).shape[1] == model.model.pool(torch.rand(40, model.config.feature_dim)).shape[1] + 2
    enc = proc.tokenizer([proc.prompt("When does the piano first start to play?", 4.0)], return_tensors="pt")
    assert torch.isfinite(paced(**enc, audio_features=[feats]).logits).all()


def _louder_from_20s(cfg: MusTConfig) -> torch.Tensor:
    """Frame features of 30 s for a model with a pace head: the piano plays throughout at a steady pace, and the mix
    is 20 dB louder from 20 s."""
    feats = torch.zeros(300, cfg.feature_dim)
    feats[:, cfg.encoder_dim + 2] = 1.0
    feats[:, cfg.encoder_dim + cfg.n_heads_out] = torch.where(torch.arange(300) < 200, -2.0, 0.0)
    feats[:, cfg.encoder_dim + cfg.pace_index] = 0.5
    return feats


def test_region_signals_end_the_pooled_seconds_with_the_heard_regions(tiny):
    model, proc = tiny
    cfg = MusTConfig(**{**model.config.to_dict(), "pace_head": True, "region_signals": True})
    torch.manual_seed(0)
    wide = MusTForCausalLM(cfg).eval()
    feats = _louder_from_20s(cfg)
    pooled = wide.model.pool(feats)
    assert wide.model.n_track_signals == 8 and pooled.shape == (30, 2 * 32 + 2 * 8 + 8)
    # the music's moment reads the six track signals without the regions (and three heads), over three seconds × 2
    assert wide.model.music_moment[0].in_features == 6 * (6 + 3)
    # the loud plateau is the highest region (22.0-29.9 s) and the quiet one the lowest (0.0-18.5 s)
    assert pooled[:, -2].tolist() == pytest.approx([0.0] * 22 + [1.0] * 7 + [0.9], abs=1e-6)
    assert pooled[:, -1].tolist() == pytest.approx([1.0] * 18 + [0.5] + [0.0] * 11, abs=1e-6)
    enc = proc.tokenizer([proc.prompt("When is the music at its most intense?", 30.0)], return_tensors="pt")
    assert torch.isfinite(wide(**enc, audio_features=[feats]).logits).all()


def test_order_from_times_picks_the_ordering_the_written_times_imply():
    from must.model.inference import order_from_times

    options = {"A": "(X) → (Y) → (Z)", "B": "(X) → (Z) → (Y)", "C": "(Y) → (X) → (Z)"}
    assert order_from_times("(X) 0:06 (Y) 0:31 (Z) 0:16. Answer: A", options) == "B"
    assert order_from_times("(Y) 1:02 (X) 1:05 (Z) 2:00", options) == "C"
    assert order_from_times("(X) 0:06 (Y) 0:31. Answer: A", options) is None  # (Z) has no time
    assert order_from_times("(X) 0:20 (Y) 0:10 (Z) 0:05", options) is None  # Z, Y, X is not offered
    assert order_from_times("( x ) 0:06 ( y ) 0:31 ( z ) 0:16. answer : a", options) == "B"  # as MusT decodes
    assert order_from_times("( x ) 1:00 ( y ) 1:00 ( z ) 1:00. answer : e", options) is None  # ties order nothing


def test_option_loglik_is_the_mean_token_logprob_of_each_continuation_alone(tiny):
    from must.model.inference import option_loglik

    model, proc = tiny
    feats = model.encode_audio(np.random.default_rng(1).normal(0, 0.1, 16000 * 6).astype(np.float32))
    prompt = proc.prompt("When does the piano first start to play?", 6.0)
    conts = ["The drums enter. Answer: A", "piano. Answer: B"]  # different lengths: the batch is padded
    for closed in (True, False):
        got = option_loglik(model, proc, prompt, feats, conts, closed=closed)
        for c, g in zip(conts, got):
            p = proc.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            t = proc.tokenizer(proc.answer(c) if closed else f" {c}", add_special_tokens=False)["input_ids"]
            assert (t[-1] == proc.tokenizer.convert_tokens_to_ids("<|im_end|>")) == closed
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([p + t]), audio_features=[feats]).logits[0]
            logp = torch.log_softmax(logits, -1)
            want = np.mean([float(logp[len(p) - 1 + i, tok]) for i, tok in enumerate(t)])
            assert abs(g - want) < 1e-4


def test_scored_ltr_answers_with_the_most_likely_option(tiny):
    from must.model.inference import answer_batch, option_loglik

    model, proc = tiny
    feats = model.encode_audio(np.random.default_rng(2).normal(0, 0.1, 16000 * 6).astype(np.float32))
    q = "What happens at 0:03?\nA: The drums enter\nB: The piano enters\nC: The tempo speeds up\nD: No noticeable change"
    item = {"question": q, "duration": 6.0, "task": "LTR"}
    scores = option_loglik(model, proc, proc.prompt(q, 6.0), feats, [f"{t}. Answer: {k}" for k, t in
                                                                    zip("ABCD", ["The drums enter", "The piano enters",
                                                                                 "The tempo speeds up", "No noticeable change"])])
    best = "ABCD"[int(np.argmax(scores))]
    assert answer_batch(model, proc, [item], [feats], 4, choices="scored")[0].endswith(f"Answer: {best}")
    with pytest.raises(ValueError, match="choices"):
        answer_batch(model, proc, [item], [feats], 4, choices="loglik")


def test_constrained_ltr_writes_one_option_and_its_own_letter(tiny):
    from must.answers import option_texts
    from must.model.inference import answer_batch, option_loglik

    model, proc = tiny
    feats = model.encode_audio(np.random.default_rng(3).normal(0, 0.1, 16000 * 6).astype(np.float32))
    q = "What happens at 0:03?\nA: The drums enter\nB: The piano enters\nC: The tempo speeds up\nD: No noticeable change"
    items = [{"question": q, "duration": 6.0, "task": "LTR"}, {"question": "Describe the change at 0:03 in detail.",
                                                                "duration": 6.0, "task": "TAD"}]
    ltr, _ = answer_batch(model, proc, items, [feats, feats], 24, choices="constrained", ltr_calibration=0,
                            ltr_grounding=False)
    # the option whose description alone ("<description>.", letter left out) is most likely per token, written as
    # MusT was trained to answer, with that description's own letter
    texts = option_texts(q)
    scores = option_loglik(model, proc, proc.prompt(q, 6.0), feats, [f"{t}." for t in texts.values()], closed=False)
    assert len(set(np.round(scores, 4))) == 4  # the four options score differently
    best = list(texts)[int(np.argmax(scores))]
    assert ltr == f"{texts[best]}. Answer: {best}"
    # without tad_choice, TAD decodes as under "generate"
    assert answer_batch(model, proc, items, [feats, feats], 24, choices="constrained", ltr_calibration=0,
                        ltr_grounding=False, tad_choice=False)[1] == answer_batch(model, proc, items[1:], [feats], 24)[0]


def test_change_clauses_are_what_a_description_opens_with():
    from must.model.inference import change_clauses

    assert change_clauses(["tuba", "drums"]) == [
        "the tuba enters", "the tuba stops", "the drums enter", "the drums stop", "the tempo speeds up",
        "the tempo slows down", "the music gets noticeably louder", "the music gets noticeably softer"]


def test_forced_prefix_writes_its_ids_then_leaves_the_scores_alone():
    from must.model.inference import ForcedPrefix

    forced = ForcedPrefix({1: [7, 3]}, prompt_length=4)
    for step, want in ((0, 7), (1, 3)):
        scores = torch.zeros(2, 10)
        out = forced(torch.zeros(2, 4 + step, dtype=torch.long), scores)
        assert torch.isinf(out[1]).sum() == 9 and out[1, want] == 0.0
        assert not torch.isinf(out[0]).any()  # a row without a prefix is untouched
    assert not torch.isinf(forced(torch.zeros(2, 6, dtype=torch.long), torch.zeros(2, 10))).any()  # prefix written


def test_constrained_tad_opens_with_the_most_likely_change(tiny, monkeypatch):
    from must.model import inference

    model, proc = tiny  # sources piano, drums
    feats = torch.zeros(60, model.config.feature_dim)
    clauses = inference.change_clauses(["piano", "drums"])
    # per-token scores of the eight openings: "the drums enter" (index 2) most likely, "the piano enters" next
    table = np.array([[-1.5, -3.0, -1.0, -3.0, -2.0, -2.0, -2.5, -2.5]])
    seen = {}

    def fake_loglik(model, processor, prompts, features, continuations, closed=True):
        seen["continuations"], seen["closed"] = continuations, closed
        return table

    monkeypatch.setattr(inference, "options_loglik", fake_loglik)
    item = {"question": "Describe the musical change at 0:03 in detail.", "duration": 6.0, "task": "TAD"}

    def answer() -> str:
        return inference.answer_batch(model, proc, [item], [feats], 8, choices="constrained")[0]

    def opening(clause: str) -> str:
        return proc.decode(proc.tokenizer(f" {clause}", add_special_tokens=False)["input_ids"])

    assert answer().startswith(opening("the drums enter"))
    assert seen == {"continuations": clauses, "closed": False}  # the openings alone, not ended
    # grounding: TSG's answer about each source puts 0.001 (drums entering) or 0.6 (piano entering) within 3 s of 0:03
    # and 0.1 (no change) for the rest: drums -1.0 + 0.25 · log(0.001 / 0.1) = -2.15, piano -1.5 + 0.25 · log(6) =
    # -1.05, so the piano
    mass = {"0": 0.6, "2": 0.001}
    grounded = {str(i): np.eye(12)[3] * mass.get(str(i), 0.1) + np.eye(12)[11] * (1 - mass.get(str(i), 0.1))
                for i in range(4)}
    monkeypatch.setattr(inference, "grounded_time_probs", lambda *a, **k: grounded)
    assert answer().startswith(opening("the piano enters"))


def test_constrained_ltr_subtracts_each_options_score_at_other_moments(tiny, monkeypatch):
    from must.model import inference

    model, proc = tiny
    feats = torch.zeros(60, model.config.feature_dim)
    q = "What happens at 0:03?\nA: The drums enter\nB: The piano enters\nC: The tempo speeds up\nD: No noticeable change"
    # per-token scores of A-D by the second the prompt asks about: "no noticeable change" is likely everywhere
    table = {"0:03": [-1.0, -1.2, -3.0, -0.9], "0:00": [-2.0, -1.0, -3.0, -0.4], "0:05": [-2.0, -1.4, -3.0, -0.6]}
    asked = []

    def fake_loglik(model, processor, prompts, features, continuations, closed=True):
        times = [re.search(r"at (\d:\d\d) ?\?", p).group(1) for p in prompts]
        asked.extend(times)
        return np.array([table[t] for t in times])

    monkeypatch.setattr(inference, "options_loglik", fake_loglik)
    item = {"question": q, "duration": 6.0, "task": "LTR"}

    def answer(weight: float) -> str:
        asked.clear()
        return inference.answer_batch(model, proc, [item], [feats], 2, choices="constrained", ltr_calibration=weight,
                                      ltr_grounding=False)[0]

    assert answer(0) == "No noticeable change. Answer: D" and asked == ["0:03"]
    # a 6 s track: shifts of -20/-10 s land on 0:00, +10/+20 s on 0:05. Weight 0.5: A -1.0 + 0.5 * 2.0 = 0.0,
    # B -1.2 + 0.5 * 1.2 = -0.6, C -3.0 + 1.5 = -1.5, D -0.9 + 0.5 * 0.5 = -0.65
    assert answer(0.5) == "The drums enter. Answer: A" and sorted(asked) == ["0:00", "0:03", "0:05"]
    # grounding (on by default): TSG's answer about the drums puts 0.001 within 3 s of 0:03 (here all of 0:00-0:06),
    # about the piano 0.6: A 0.0 + 0.25 · log(0.001 / 0.1) = -1.15, B -0.6 + 0.25 · log(0.6 / 0.1) = -0.15, C and D
    # (no source) unchanged at -1.5 and -0.65, so B
    at = lambda weights: np.array([weights.get(t, 0.0) for t in range(12)])
    grounded = {"A": at({2: 0.001, 10: 0.999}), "B": at({3: 0.6, 11: 0.4})}
    monkeypatch.setattr(inference, "grounded_time_probs", lambda *a, **k: grounded)
    got = inference.answer_batch(model, proc, [item], [feats], 2, choices="constrained", ltr_calibration=0.5)[0]
    assert got == "The piano enters. Answer: B"


def test_grounding_bonus_by_hand():
    from must.model.inference import grounding_bonus

    q = "What happens in the music at 0:10?\nA: The drums enter\nB: No noticeable change\nC: The piano stops"
    probs = {"A": np.full(30, 1 / 30), "C": np.eye(30)[20]}  # A: 7 of 30 seconds in 0:07-0:13; C: surely at 0:20
    bonus = grounding_bonus(probs, ["A", "B", "C"], q)
    assert np.allclose(bonus, [0.25 * np.log((7 / 30) / 0.1), 0.0, 0.25 * np.log(1e-4 / 0.1)])
    assert np.allclose(grounding_bonus(probs, ["A", "B", "C"], q.replace("0:10", "0:02")),  # the window clips at 0:00
                       [0.25 * np.log((6 / 30) / 0.1), 0.0, 0.25 * np.log(1e-4 / 0.1)])
    assert not grounding_bonus(probs, ["A", "B", "C"], "Which source plays?\nA: x").any()  # no asked time


def test_shifted_questions_move_the_asked_time_inside_the_track():
    from must.model.inference import shifted_questions

    q = "What happens in the music at 0:42?\nA: The drums enter\nB: No noticeable change"
    assert [s.split("?")[0][-4:] for s in shifted_questions(q, 95.5)] == ["0:22", "0:32", "0:52", "1:02"]
    assert shifted_questions(q, 95.5)[0].endswith("?\nA: The drums enter\nB: No noticeable change")
    # clamped to the track: 0:05 - 20 s and 0:05 - 10 s are both 0:00; the last second of a 30.4 s track is 0:29
    assert [s.split("?")[0][-4:] for s in shifted_questions(q.replace("0:42", "0:05"), 30.4)] == ["0:00", "0:15", "0:25"]
    assert [s.split("?")[0][-4:] for s in shifted_questions(q.replace("0:42", "0:25"), 30.4)] == ["0:05", "0:15", "0:29"]
    assert shifted_questions("Which instrument plays first?\nA: piano", 60.0) == []


def test_answers_are_written_without_autograd(tiny, monkeypatch):
    from must.model.inference import answer_batch

    model, proc = tiny
    grad_enabled, generate = [], model.generate

    def spy(*args, **kwargs):
        grad_enabled.append(torch.is_grad_enabled())
        return generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", spy)
    feats = torch.zeros(60, model.config.feature_dim)
    answer_batch(model, proc, [{"question": "When is the music loudest?", "duration": 6.0, "task": "MTR"}], [feats], 2)
    assert grad_enabled == [False]


def test_constrained_writes_tsg_and_mtr_times_by_their_rules(tiny, monkeypatch):
    from must.model.inference import answer_batch

    model, proc = tiny
    feats = model.encode_audio(np.random.default_rng(3).normal(0, 0.1, 16000 * 6).astype(np.float32))
    items = [{"question": "When does the piano first start to play?", "duration": 6.0, "task": "TSG"},
             {"question": "When is the music loudest?", "duration": 6.0, "task": "MTR"}]
    monkeypatch.setattr(inference, "CONSTRAINED_TIME_RULES", {"TSG": lambda probs: 2, "MTR": lambda probs: 4})
    greedy = answer_batch(model, proc, items, [feats, feats], 24)
    tsg, mtr = answer_batch(model, proc, items, [feats, feats], 24, choices="constrained", tsg_scan=False)
    times = lambda text: re.findall(r"\d+:\d\d", text)
    assert times(greedy[0]) and set(times(tsg)) == {"0:02"}  # the tiny model writes times; each is the rule's
    assert times(greedy[1]) and set(times(mtr)) == {"0:04"}  # (this noise writes no "start - end" pair)
    # with the scan (the default), the TSG time is chosen from the pointer weighed by the scan of the asked change
    asked = []

    def scan(model, processor, prompt_of, kind, source, features, seconds):
        asked.append((kind, source, seconds, prompt_of("Q?")))
        return np.array([0.0, 0.0, 0.0, 0.0, 0.0, 50.0, 0.0])  # 0:05 stands out by far

    monkeypatch.setattr(inference, "scanned_change_scores", scan)
    tsg, mtr = answer_batch(model, proc, items, [feats, feats], 24, choices="constrained")
    assert set(times(tsg)) == {"0:05"} and set(times(mtr)) == {"0:04"}
    assert [a[:3] for a in asked] == [("enter", "piano", 6)] and "Q?" in asked[0][3]
    other = [{**items[0], "question": "When is the piano heard first?"}]  # not the benchmark's wording: no scan
    assert set(times(answer_batch(model, proc, other, [feats], 24, choices="constrained")[0])) == {"0:02"}
    assert len(asked) == 1
    # the pointer's power and the scan's weight reach scanned_hit_second
    weighed = []
    monkeypatch.setattr(inference, "scanned_hit_second", lambda probs, scan, pointer_weight, scan_weight:
                        weighed.append((pointer_weight, scan_weight)) or 3)
    tsg, _ = answer_batch(model, proc, items, [feats, feats], 24, choices="constrained", tsg_weights=(1.0, 0.5))
    assert set(times(tsg)) == {"0:03"} and set(weighed) == {(1.0, 0.5)}


def test_avqa_candidates_are_the_named_pair_else_the_vocabulary():
    from bench.metrics.avqa import VOCAB
    from must.model.inference import avqa_candidates

    assert avqa_candidates("Which instrument comes in first, the tuba or the bassoon?") == ["tuba", "bassoon"]
    assert avqa_candidates("Which instrument comes in first, the drums or the electric bass?") == ["drum", "electric_bass"]
    assert avqa_candidates("Which is first, the acoustic guitar or the acoustic guitar?") == VOCAB  # one name twice
    assert avqa_candidates("Which instrument comes in first, the tuba or the synth pad?") == VOCAB  # not a vocabulary word
    assert avqa_candidates("How many instruments (including voices) can be heard in this piece?") == VOCAB


def test_constrained_avqa_answers_the_most_probable_allowed_answer():
    from bench.metrics.avqa import VOCAB
    from must.model.inference import answer_batch

    questions = ["How many instruments (including voices) can be heard in this piece?",
                 "Which instrument comes in first, the tuba or the bassoon?"]
    proc = MusTProcessor.build(questions + [" ".join(VOCAB).replace("_", " ")], max_seconds=30)
    cfg = _tiny_config(proc, ["tuba", "bassoon"], max_seconds=30)
    torch.manual_seed(1)
    model = MusTForCausalLM(cfg).eval()
    feats = model.encode_audio(np.random.default_rng(4).normal(0, 0.1, 16000 * 6).astype(np.float32))
    items = [{"question": q, "duration": 6.0, "task": "AVQA"} for q in questions]

    def total_logprob(question: str, answer: str) -> float:
        p = proc.tokenizer(proc.prompt(question, 6.0), add_special_tokens=False)["input_ids"]
        t = proc.tokenizer(proc.answer(answer), add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([p + t]), audio_features=[feats]).logits[0], -1)
        return sum(float(logp[len(p) - 1 + i, tok]) for i, tok in enumerate(t))

    by_hand = [max(VOCAB, key=lambda a: total_logprob(questions[0], a)),
               max(["tuba", "bassoon"], key=lambda a: total_logprob(questions[1], a))]
    assert answer_batch(model, proc, items, [feats, feats], 8, choices="constrained") == by_hand
    greedy = answer_batch(model, proc, items, [feats, feats], 8)
    assert answer_batch(model, proc, items, [feats, feats], 8, choices="constrained", avqa_closed=False) == greedy
    assert answer_batch(model, proc, items, [feats, feats], 8, choices="scored") == greedy  # constrained only


def test_tsg_change_reads_the_benchmark_wording():
    from must.model.inference import tsg_change

    sources = ["tuba", "synth pad", "drums"]
    assert tsg_change("When does the tuba first start to play?", sources) == ("enter", "tuba")
    assert tsg_change("At what time does the synth pad play for the last time?", sources) == ("exit", "synth pad")
    assert tsg_change("When can the drums first be heard? ", sources) == ("enter", "drums")
    assert tsg_change("When does the piano first start to play?", sources) is None  # not one of the sources
    assert tsg_change("When is the tuba heard first?", sources) is None


def test_scanned_change_scores_ask_ltr_about_the_change_at_every_second(tiny, monkeypatch):
    model, proc = tiny
    asked = []

    def fake(model, processor, prompts, features, continuations, closed=True):
        assert continuations == ["The tuba stops."] and not closed
        for p in prompts:
            m = re.search(r"at 0:0(\d)\?\n\nA: The tuba stops\nB: The tuba enters\nC: No noticeable change$", p)
            asked.append(int(m.group(1)))
        return np.array([[{0: -3.0, 1: -1.0, 2: -2.0, 3: -2.0}[int(re.search(r"0:0(\d)", p).group(1))]] for p in prompts])

    monkeypatch.setattr(inference, "options_loglik", fake)
    got = inference.scanned_change_scores(model, proc, lambda q: q, "exit", "tuba", None, seconds=3, batch_seconds=3)
    assert asked == [0, 1, 2, 3]  # in batches of three seconds, then one
    assert np.allclose(got, [-1.0, 1.0, 0.0, 0.0])  # scores -3, -1, -2, -2 less their mean, -2


def test_scanned_hit_second_weighs_the_pointer_by_the_scan():
    from must.model.inference import scanned_hit_second

    probs = torch.zeros(30)
    probs[[5, 20]] = torch.tensor([0.6, 0.4])
    scan = np.zeros(25)
    assert scanned_hit_second(probs, scan) == 5  # no evidence from the scan: the pointer's choice
    scan[20] = 1.0
    # a = 0.5, λ = 1: weights 0.6^0.5 = 0.775 at 0:05 against 0.4^0.5 · e = 1.719 at 0:20
    assert scanned_hit_second(probs, scan, pointer_weight=0.5, scan_weight=1.0) == 20
    # a = 1, λ = 0.3: 0.6 against 0.4 · e^0.3 = 0.540
    assert scanned_hit_second(probs, scan, pointer_weight=1.0, scan_weight=0.3) == 5
    # seconds past the scan (25-29) get its lowest score, -1: 0.55 · e^-1 = 0.202 at 0:27 against 0.45 · e^-0.5 =
    # 0.273 at 0:20 (a score of 0 there would have made 0:27 win, 0.55)
    low = np.full(25, -1.0)
    low[20] = -0.5
    late = torch.zeros(30)
    late[[20, 27]] = torch.tensor([0.45, 0.55])
    assert scanned_hit_second(late, low, pointer_weight=1.0, scan_weight=1.0) == 20


def test_constrained_gto_takes_the_letter_its_written_times_imply(tiny, monkeypatch):
    from must.model.inference import answer_batch

    model, proc = tiny
    feats = model.encode_audio(np.zeros(16000 * 20, np.float32))
    said = "( x ) 0:15 ( y ) 0:03 ( z ) 0:09. answer : a"
    monkeypatch.setattr(proc, "decode", lambda ids: said)  # what a trained model writes; the tiny one writes noise
    q = ("The following musical changes occur in this piece:\n(X) The drums enter\n(Y) The piano enters\n(Z) The tempo "
         "speeds up\n\nWhich of the following options represents the correct chronological order?\nA: (X) → (Y) → (Z)\n"
         "B: (X) → (Z) → (Y)\nC: (Y) → (X) → (Z)\nD: (Y) → (Z) → (X)\nE: (Z) → (X) → (Y)\nF: (Z) → (Y) → (X)")
    item = [{"question": q, "duration": 20.0, "task": "GTO"}]
    monkeypatch.setattr(inference, "scanned_time_probs", lambda *a, **k: {})  # no scan: the pointer's alone
    # without the model's time distributions (none read back), the written times decide
    monkeypatch.setattr(inference, "written_time_probs", lambda *a: {})
    got = answer_batch(model, proc, item, [feats], 4, choices="constrained")[0]
    assert got == said.split(" answer :")[0] + " Answer: D"  # (Y) 0:03 → (Z) 0:09 → (X) 0:15
    assert answer_batch(model, proc, item, [feats], 4)[0] == said  # generate keeps the written letter
    # with them, the most probable ordering: X surely at 0:15, Y at 0:03 (0.4) or 0:18 (0.6), Z surely at 0:09:
    # P(Z < X < Y) = 0.6 beats P(Y < Z < X) = 0.4, though the written times say Y, Z, X
    sure = lambda s: np.eye(21)[s]
    probs = {"X": sure(15), "Y": 0.4 * sure(3) + 0.6 * sure(18), "Z": sure(9)}
    monkeypatch.setattr(inference, "written_time_probs", lambda *a: probs)
    assert answer_batch(model, proc, item, [feats], 4, choices="constrained")[0].endswith("Answer: E")  # (Z) → (X) → (Y)
    assert answer_batch(model, proc, item, [feats], 4, choices="scored")[0].endswith("Answer: D")  # scored: written
    # the scan's distributions multiply the pointer's (to the power GTO_POINTER_WEIGHT): a scan sure of Y at 0:03
    # leaves Y's pointer 0.4 at 0:03 and nothing at 0:18, so (Y) → (Z) → (X); gto_scan=False ignores the scan
    monkeypatch.setattr(inference, "scanned_time_probs", lambda *a, **k: {"Y": sure(3)})
    assert answer_batch(model, proc, item, [feats], 4, choices="constrained")[0].endswith("Answer: D")
    assert answer_batch(model, proc, item, [feats], 4, choices="constrained", gto_scan=False)[0].endswith("Answer: E")
    # changes within GTO_MIN_GAP (3 s) of each other are not separate moments: Y at 0:16 (0.6) cannot follow X at 0:15
    # (a gap of 1 s) and Y at 0:03 (0.4) leads, so (Y) → (Z) → (X) where independent times alone would say E
    monkeypatch.setattr(inference, "scanned_time_probs", lambda *a, **k: {})
    probs["Y"] = 0.4 * sure(3) + 0.6 * sure(16)
    assert answer_batch(model, proc, item, [feats], 4, choices="constrained")[0].endswith("Answer: D")
    assert answer_batch(model, proc, item, [feats], 4, choices="constrained", gto_min_gap=1)[0].endswith("Answer: E")
    monkeypatch.setattr(inference, "GTO_MIN_GAP", 1)  # the default is read when answering
    assert answer_batch(model, proc, item, [feats], 4, choices="constrained")[0].endswith("Answer: E")
    # TSG's answer about a listed entry multiplies in (to the power GTO_GROUNDING_WEIGHT = 0.25): 0.9 for Y at 0:03
    # and 0.1 at 0:18 weigh the pointer's 0.4 / 0.6 to 0.4 · 0.9^0.25 = 0.39 against 0.6 · 0.1^0.25 = 0.34, so Y
    # leads, (Y) → (Z) → (X); gto_grounding=False leaves the pointer's (Z) → (X) → (Y)
    probs["Y"] = 0.4 * sure(3) + 0.6 * sure(18)
    monkeypatch.setattr(inference, "GTO_MIN_GAP", 3)
    monkeypatch.setattr(inference, "grounded_time_probs", lambda *a, **k: {"Y": 0.9 * sure(3) + 0.1 * sure(18)})
    assert answer_batch(model, proc, item, [feats], 4, choices="constrained")[0].endswith("Answer: D")
    assert answer_batch(model, proc, item, [feats], 4, choices="constrained", gto_grounding=False)[0].endswith("Answer: E")


def test_source_change_reads_the_benchmark_wording():
    from must.model.inference import source_change

    sources = ["bass", "electric_bass", "drums", "piano"]
    assert source_change("The tempo speeds up and the drums enter", sources) == ("enter", "drums")
    assert source_change("The piano stops.", sources) == ("exit", "piano")
    assert source_change("The electric bass enters", sources) == ("enter", "electric_bass")  # not "the bass"
    assert source_change("The bass enters", sources) == ("enter", "bass")
    assert source_change("The music gets louder", sources) is None
    assert source_change("The tuba enters", sources) is None  # a source the model does not know


@pytest.mark.parametrize("audio_first", [False, True])  # rows run whole / after the shared audio prefix
def test_grounded_time_probs_read_tsg_answers_at_their_first_token(tiny, audio_first):
    from bench.tasks.phrasing import NO_CHANGE
    from must.answers import labelled_changes
    from must.model.inference import grounded_time_probs

    model, proc = tiny[0], MusTProcessor(tiny[1].tokenizer, 120, audio_first=audio_first)
    feats = model.encode_audio(np.random.default_rng(5).normal(0, 0.1, 16000 * 8).astype(np.float32))
    q = ("Listen to the music. The following changes happen in it:\n(X) The piano stops\n(Y) The tempo slows down\n"
         "(Z) The drums enter\n\nWhich of the following options represents the correct chronological order?\n"
         "A: (X) → (Y) → (Z)")
    prompt_of = lambda question: proc.prompt(question, 8.0, "Answer with a time.")
    got = grounded_time_probs(model, proc, prompt_of, labelled_changes(q), feats, 8)
    assert sorted(got) == ["X", "Z"]  # the tempo change is the music's, not a source's
    # each is the next-token distribution over 0:00-0:08 after TSG's question alone (the two prompts differ in
    # length, so the batch pads one on the right, and each row is read at its own last token)
    lo = model.config.time_token_offset
    asked = {"X": "When does the piano finally stop playing?", "Z": "When does the drums first start to play?"}
    lengths = {len(proc.tokenizer(prompt_of(question), add_special_tokens=False)["input_ids"]) for question in asked.values()}
    assert len(lengths) == 2  # so one row is padded
    for label, question in asked.items():
        ids = proc.tokenizer(prompt_of(question), add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            alone = model(input_ids=ids, attention_mask=torch.ones_like(ids), audio_features=[feats]).logits[0, -1]
        assert got[label].shape == (9,) and abs(got[label].sum() - 1) < 1e-5
        assert np.allclose(got[label], torch.softmax(alone[lo : lo + 9].float(), -1).numpy(), atol=1e-5)
    assert grounded_time_probs(model, proc, prompt_of, {"A": "The music gets louder", "B": NO_CHANGE}, feats, 8) == {}


def test_ordering_probability_of_three_independent_times():
    from must.model.inference import ordering_probability, order_from_time_probs

    sure = lambda s: np.eye(3)[s]
    assert ordering_probability(sure(0), np.array([0, 0.5, 0.5]), sure(2)) == 0.5  # t2 must be 1
    uniform = np.full(3, 1 / 3)
    assert abs(ordering_probability(uniform, uniform, uniform) - 1 / 27) < 1e-12  # (0, 1, 2) only
    # the six orderings of the same three distributions share P(all distinct) = 1 - P(any tie)
    a, b, c = np.array([0.5, 0.3, 0.2]), np.array([0.1, 0.1, 0.8]), np.array([0.2, 0.6, 0.2])
    total = sum(ordering_probability(*o) for o in itertools.permutations([a, b, c]))
    distinct = sum(a[i] * b[j] * c[k] for i, j, k in itertools.product(range(3), repeat=3) if len({i, j, k}) == 3)
    assert abs(total - distinct) < 1e-12
    options = {"A": "(X) → (Y) → (Z)", "B": "(Z) → (Y) → (X)"}
    assert order_from_time_probs({"X": sure(2), "Y": sure(1), "Z": sure(0)}, options) == "B"
    assert order_from_time_probs({"X": sure(2), "Y": sure(1)}, options) is None  # (Z) was not timed


def test_ordering_probability_with_a_minimum_gap_between_the_changes():
    from must.model.inference import ordering_probability, order_from_time_probs

    at = lambda weights: np.array([weights.get(s, 0.0) for s in range(12)])
    # t2 is 1 or 5 (even odds) between t1 = 0 and t3 = 9: only 5 is 3 s from both
    assert ordering_probability(at({0: 1}), at({1: 0.5, 5: 0.5}), at({9: 1}), min_gap=3) == 0.5
    assert ordering_probability(at({0: 1}), at({1: 0.5, 5: 0.5}), at({9: 1})) == 1.0  # the default: t1 < t2 < t3
    assert ordering_probability(at({0: 1}), at({5: 1}), at({9: 1}), min_gap=5) == 0.0  # 9 - 5 < 5
    with pytest.raises(ValueError, match="min_gap"):
        ordering_probability(at({0: 1}), at({5: 1}), at({9: 1}), min_gap=0)
    # X at 0:02 (0.6) or 0:08 (0.4), Y surely at 0:03, Z at 0:11: X → Y → Z is likelier if changes may be 1 s apart,
    # Y → X → Z if they are separate moments at least 3 s apart
    probs = {"X": at({2: 0.6, 8: 0.4}), "Y": at({3: 1}), "Z": at({11: 1})}
    options = {"A": "(X) → (Y) → (Z)", "C": "(Y) → (X) → (Z)"}
    assert order_from_time_probs(probs, options) == "A"
    assert order_from_time_probs(probs, options, min_gap=3) == "C"


def test_options_loglik_reads_the_shared_audio_prefix_once_with_the_same_scores(tiny):
    from must.model.inference import options_loglik, shared_audio_prefix

    model, proc = tiny
    first = MusTProcessor(proc.tokenizer, 120, audio_first=True)
    feats = model.encode_audio(np.random.default_rng(6).normal(0, 0.1, 16000 * 6).astype(np.float32))
    questions = [f"What happens in the music at 0:0{t}?\nA: The drums enter\nB: No noticeable change" for t in (1, 4)]
    conts = ["The drums enter.", "No noticeable change."]
    tok, eos = proc.tokenizer, model.config.audio_eos_token_id
    for p in (first, proc):  # audio first (a prefix shared up to <|audio_eos|>), and the question first (none)
        prompts = [p.prompt(q, 6.0) for q in questions]
        ids = tok(prompts, add_special_tokens=False)["input_ids"]
        start = shared_audio_prefix(ids, eos)
        assert start == (ids[0].index(eos) + 1 if p is first else 0)
        got = options_loglik(model, p, prompts, feats, conts, closed=False)
        for i, prompt_ids in enumerate(ids):  # each whole row on its own, as before the prefix was shared
            for j, c in enumerate(conts):
                cont = tok(f" {c}", add_special_tokens=False)["input_ids"]
                row = torch.tensor([prompt_ids + cont])
                with torch.no_grad():
                    logp = torch.log_softmax(model(input_ids=row, audio_features=[feats]).logits[0, :-1].float(), -1)
                want = logp[len(prompt_ids) - 1 :].gather(-1, row[0, len(prompt_ids) :, None])[:, 0].mean()
                assert abs(got[i, j] - float(want)) < 1e-4

    class Wrapped:  # a model inside another (as peft wraps one): the rows are run whole, prefix included
        def __init__(self, inner):
            self.inner, self.config, self.device = inner, inner.config, inner.device

        def __call__(self, **kwargs):
            assert "past_key_values" not in kwargs and "cache" not in kwargs
            return self.inner(**kwargs)

    prompts = [first.prompt(q, 6.0) for q in questions]
    assert np.allclose(options_loglik(Wrapped(model), first, prompts, feats, conts, closed=False),
                       options_loglik(model, first, prompts, feats, conts, closed=False), atol=1e-4)
    assert shared_audio_prefix([[1, 2, 9, 3], [1, 2, 9]], 9) == 0  # a row with nothing after the audio
    assert shared_audio_prefix([[1, 2, 9, 3], [1, 4, 9, 3]], 9) == 0 and shared_audio_prefix([[1, 9, 3]], None) == 0
    assert shared_audio_prefix([[1, 2, 9, 3], [1, 2, 9, 5, 6]], 9) == 3


def test_options_loglik_scores_each_prompt_as_option_loglik_does(tiny):
    from must.model.inference import option_loglik, options_loglik

    model, proc = tiny
    feats = model.encode_audio(np.random.default_rng(5).normal(0, 0.1, 16000 * 6).astype(np.float32))
    prompts = [proc.prompt(f"What happens in the music at 0:0{t}?", 6.0) for t in (1, 4)]
    conts = ["The drums enter.", "No noticeable change."]
    got = options_loglik(model, proc, prompts, feats, conts, closed=False)
    assert got.shape == (2, 2)
    for row, p in zip(got, prompts):
        assert np.allclose(row, option_loglik(model, proc, p, feats, conts, closed=False), atol=1e-4)
    assert not np.allclose(got[0], got[1])  # the asked second changes the scores


def test_scanned_time_probs_ask_ltr_questions_at_every_second(tiny, monkeypatch):
    model, proc = tiny
    q = ("These three transitions can be heard in the audio:\n(X) The drums enter\n(Y) The music gets louder\n"
         "(Z) The tempo slows down\n\nWhich of the following options represents the correct chronological order?\n"
         "A: (X) → (Y) → (Z)\nB: (X) → (Z) → (Y)")
    # per-token scores of X, Y, Z, "no noticeable change" by the asked second (a 3 s track: 0:00 to 0:03)
    table = {0: [-1.0, -2.0, -3.0, -0.5], 1: [-2.0, -2.0, -3.0, -0.5], 2: [-3.0, -1.0, -3.0, -0.5], 3: [-3.0, -3.0, -3.0, -0.5]}
    asked = []

    def fake(model, processor, prompts, features, continuations, closed=True):
        assert continuations == ["The drums enter.", "The music gets louder.", "The tempo slows down.", "No noticeable change."]
        assert not closed
        times = [int(re.search(r"at 0:0(\d)\?\n\nA: The drums enter\nB: The music gets louder\nC: The tempo slows down\n"
                               r"D: No noticeable change$", p).group(1)) for p in prompts]
        asked.extend(times)
        return np.array([table[t] for t in times])

    monkeypatch.setattr(inference, "options_loglik", fake)
    got = inference.scanned_time_probs(model, proc, lambda question: question, q, None, seconds=3, sharpness=2.0,
                                       batch_seconds=3)
    assert asked == [0, 1, 2, 3]  # in batches of three seconds, then one
    # X: scores -1, -2, -3, -3 (mean -2.25), times 2 → softmax of (2.5, 0.5, -1.5, -1.5); Z is the same everywhere
    x = np.exp([2.5, 0.5, -1.5, -1.5])
    assert np.allclose(got["X"], x / x.sum())
    assert np.allclose(got["Z"], np.full(4, 0.25))
    assert int(np.argmax(got["Y"])) == 2
    assert inference.scanned_time_probs(model, proc, str, "What happens at 0:03?\nA: x", None, seconds=3) == {}


def test_combine_time_probs_multiplies_the_weighted_distributions():
    from must.model.inference import combine_time_probs

    scan = {"X": np.array([0.5, 0.5, 0.0]), "Y": np.array([0.2, 0.8])}
    pointer = {"X": np.array([0.1, 0.4, 0.5, 0.0]), "Z": np.array([1.0, 0.0])}
    got = combine_time_probs(scan, pointer, 0.5)
    x = np.array([0.5 * 0.1 ** 0.5, 0.5 * 0.4 ** 0.5, 0.0])  # over the three seconds both cover
    assert np.allclose(got["X"], x / x.sum(), atol=1e-5)
    assert np.array_equal(got["Y"], scan["Y"]) and np.array_equal(got["Z"], pointer["Z"])  # one of them only
    assert np.allclose(combine_time_probs(scan, pointer, 0.0)["X"], scan["X"])


def test_written_time_probs_read_the_distribution_each_time_was_chosen_from(tiny):
    from must.model.inference import written_time_probs

    model, proc = tiny
    tok, off = proc.tokenizer, model.config.time_token_offset
    feats = model.encode_audio(np.random.default_rng(4).normal(0, 0.1, 16000 * 6).astype(np.float32))
    prompt = proc.prompt("Order the changes.", 6.0)
    x, y, z, lp, rp, end = tok.convert_tokens_to_ids(["x", "y", "z", "(", ")", "<|im_end|>"])
    answer = [lp, x, rp, off + 5, lp, y, rp, off + 1, lp, z, rp, off + 3, end, tok.pad_token_id]
    got = written_time_probs(model, proc, prompt, feats, torch.tensor(answer), seconds=6)
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([p + answer[:12]]), audio_features=[feats]).logits[0]
    for label, i in (("X", 3), ("Y", 7), ("Z", 11)):  # the logits at the token before each written time
        want = torch.softmax(logits[len(p) + i - 1, off : off + 7], -1).numpy()
        assert got[label].shape == (7,) and np.allclose(got[label], want, atol=1e-5)
    assert written_time_probs(model, proc, prompt, feats, torch.tensor([lp, x, rp, end]), seconds=6) == {}


def test_distinct_times_forbid_a_written_time_and_its_neighbours():
    from must.model.inference import DistinctTimes

    proc = DistinctTimes({0}, MusTConfig(time_token_offset=10, max_seconds=20), prompt_length=2)
    ids = torch.tensor([[1, 2, 3, 10 + 5, 4, 10 + 0], [1, 2, 10 + 5, 10 + 6, 4, 4]])
    out = proc(ids, torch.zeros(2, 40))
    # row 0 wrote 0:05 and 0:00: seconds 4-6 and 0-1 are out, the rest of the time line is free
    assert torch.isinf(out[0, [10, 11, 14, 15, 16]]).all()
    assert (out[0, [12, 13, 17, 30]] == 0).all() and (out[0, :10] == 0).all()
    assert (out[1] == 0).all()  # a row that is not GTO


def test_distinct_sources_forbid_naming_a_written_source_again():
    from must.model.inference import DistinctSources

    # names: "tuba" = (5,), "synth pad" = (7, 8); the prompt is the first 2 ids of each row
    proc = DistinctSources({0, 1}, [(5,), (7, 8), ()], prompt_length=2)
    ids = torch.tensor([[5, 7, 3, 5, 4, 7], [1, 2, 7, 8, 3, 3], [5, 7, 8, 5, 4, 4]])
    out = proc(ids, torch.zeros(3, 12))
    assert torch.isinf(out[0, 5]) and (out[0, [7, 8]] == 0).all()  # tuba written; synth alone is not "synth pad"
    assert torch.isinf(out[1, 7]) and (out[1, [5, 8]] == 0).all()  # synth pad written: its first token is out
    assert (out[2] == 0).all()  # a row that is not TAD
    assert (DistinctSources({0}, [(5,)], prompt_length=6)(ids, torch.zeros(3, 12)) == 0).all()  # nothing written yet


def test_hit_window_second_bets_on_the_window_with_the_most_probability():
    from must.model.inference import hit_window_second

    probs = torch.zeros(40)
    probs[10] = 0.4  # the single most probable second
    probs[30:34] = torch.tensor([0.1, 0.2, 0.2, 0.1])  # 0.6 within any 7-second window centred on 0:30-0:33
    # windows centred on 30..33 all hold 0.6 (a tie): the most probable second among those centres, 0:31
    assert hit_window_second(probs) == 31
    assert hit_window_second(probs, window=0) == 10  # Hit@0 is the mode
    peak = torch.zeros(40)
    peak[[20, 21, 25]] = torch.tensor([0.9, 0.06, 0.04])  # windows 22 and 23 reach 1.0, 20 reaches 0.96
    assert hit_window_second(peak) == 22  # 0.04 more than 0:20's window, beyond the tie margin
    assert hit_window_second(peak, tie=0.05) == 20  # within it: the peak itself


def test_median_second_splits_the_probability_in_half():
    from must.model.inference import median_second

    probs = torch.zeros(30)
    probs[[5, 10, 20]] = torch.tensor([0.3, 0.3, 0.4])
    assert median_second(probs) == 10  # P(<= 0:05) = 0.3, P(<= 0:10) = 0.6
    assert median_second(torch.tensor([0.0, 0.5, 0.5])) == 1
    assert median_second(torch.tensor([0.0, 0.0, 1.0])) == 2


def test_time_choice_rewrites_only_a_time_the_model_was_about_to_write():
    from must.model.inference import TimeChoice, median_second

    cfg = MusTConfig(time_token_offset=10, max_seconds=20)
    scores = torch.full((3, 40), -9.0)
    scores[:, 10 + 4], scores[:, 10 + 8], scores[:, 10 + 9] = 2.0, 1.9, 1.9  # seconds 4 (mode), 8, 9
    scores[1, 3] = 5.0  # row 1's next token is not a time
    out = TimeChoice({0: median_second, 1: median_second}, cfg)(torch.zeros(3, 1, dtype=torch.long), scores.clone())
    assert int(out[0].argmax()) == 10 + 8 and torch.isinf(out[0]).sum() == 39  # median of ~(0.36, 0.32, 0.32)
    assert torch.equal(out[1], scores[1]) and torch.equal(out[2], scores[2])  # not a time; a row without a rule
    scores[0, 10 + 8] = float("-inf")  # a second another processor forbade is never written
    out = TimeChoice({0: lambda probs: 8}, cfg)(torch.zeros(3, 1, dtype=torch.long), scores.clone())
    assert torch.equal(out[0], scores[0])


def test_interval_end_is_written_after_its_start():
    from must.model.inference import IntervalEndAfterStart

    proc = IntervalEndAfterStart(time_token_offset=10, max_seconds=20, dash_token_id=5, prompt_length=3)
    ids = torch.tensor([[1, 2, 3, 10 + 7, 5],  # wrote "0:07 -": the next token is a time, 0:08 to 0:20 (ids 18-30)
                        [1, 2, 3, 10 + 7, 4],  # no dash: unconstrained
                        [1, 2, 5, 10 + 7, 5],
                        [1, 2, 3, 10 + 20, 5]])  # "0:20 -" at the last second: no end exists, so no time either
    out = proc(ids, torch.zeros(4, 40))
    allowed = torch.isfinite(out)
    assert allowed[0].nonzero().flatten().tolist() == list(range(18, 31))  # no word ("1:51 - end 2:12"), no early end
    assert allowed[1].all()
    assert allowed[2].nonzero().flatten().tolist() == list(range(18, 31))
    assert not allowed[3, 10:31].any() and allowed[3, :10].all() and allowed[3, 31:].all()
    assert (proc(ids[:, :4], torch.zeros(4, 40)) == 0).all()  # fewer than two generated tokens


@pytest.mark.parametrize("option", ["source_context", "tempo_signals"])
def test_stage_two_widens_a_checkpoint_saved_without_a_projector_option(tiny, tmp_path, caplog, option):
    from stages.common import load_stage_model
    from stages.config import TrainConfig

    model, proc = tiny
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    cfg = TrainConfig()
    setattr(cfg.model, option, True)
    wide, _ = load_stage_model(cfg, tmp_path, first_projector_stage=True)
    extra = 2 * len(model.config.sources) if option == "source_context" else 3  # 3 tempo-change signals
    assert getattr(wide.config, option) is True
    assert wide.model.projector[0].weight.shape[1] == model.model.projector[0].weight.shape[1] + extra
    assert wide.model.time_key.weight.shape[1] == model.model.time_key.weight.shape[1] + extra
    for name in ("encoder.heads.weight", "language_model.layers.0.self_attn.q_proj.weight", "projector.2.weight"):
        assert torch.equal(wide.model.get_parameter(name), model.model.get_parameter(name)), name
    # later stages keep what the checkpoint was trained with
    kept, _ = load_stage_model(cfg, tmp_path)
    assert getattr(kept.config, option) is False and f"{{'{option}': True}} ignored" in caplog.text


def test_grpo_scores_completions_with_the_pointer(tiny):
    """TRL's fused LM head multiplies hidden states by ``lm_head`` alone; stage 4 puts MusT's own logits back."""
    import copy

    from trl.trainer.utils import add_fused_lm_head

    from stages.stage4_grpo import score_with_full_logits

    model = copy.deepcopy(tiny[0])
    proc = tiny[1]
    torch.nn.init.normal_(model.time_query.weight, std=0.5)  # a pointer that matters
    feats = torch.randn(60, model.config.feature_dim)
    model.audio_store[5] = feats
    enc = proc.tokenizer([proc.prompt("When does the piano first start to play?", 6.0, key=5) + proc.answer("0:03")],
                         return_tensors="pt")
    ids = enc["input_ids"]
    labels = ids.clone()
    labels[:, :-3] = -100  # score the answer: 0:03, end of turn
    want = torch.log_softmax(model(**enc).logits[:, :-1].float() / 0.7, -1).gather(-1, ids[:, 1:, None])[..., 0]
    add_fused_lm_head(model, temperature=0.7, outputs=("log_probs", "entropy"))
    trl_only = model(**enc, labels=labels, fused_lm_head=True).log_probs
    score_with_full_logits(model, temperature=0.7)
    got = model(**enc, labels=labels, fused_lm_head=True)
    answer = labels[:, 1:] != -100
    assert torch.allclose(got.log_probs[answer], want[answer], atol=1e-5)
    assert (got.log_probs[~answer] == 0).all() and (got.entropy[answer] > 0).all()
    assert not torch.allclose(trl_only[answer], want[answer], atol=1e-3)  # the time token without its pointer term
    plain = torch.log_softmax(model(**enc).logits[:, :-1].float() / 0.7, -1).gather(-1, ids[:, 1:, None])[..., 0]
    assert torch.allclose(plain, want, atol=1e-5)  # calls without fused_lm_head (generation) are the model's own


def test_grpo_samples_interval_ends_after_their_start(tiny):
    """Stage 4 samples under the answer constraints: after a sampled "0:30 -" no end at or before 0:30."""
    import copy

    from transformers import LogitsProcessor

    from stages.stage4_grpo import sample_in_answer_form

    model, proc = copy.deepcopy(tiny[0]), tiny[1]
    tok, off = proc.tokenizer, model.config.time_token_offset
    dash = tok.convert_tokens_to_ids("-")
    assert dash != tok.unk_token_id

    class Script(LogitsProcessor):  # writes "0:30 -", then leaves only time tokens to sample from
        def __init__(self, n):
            self.n = n

        def __call__(self, input_ids, scores):
            step, keep = input_ids.shape[1] - self.n, torch.zeros_like(scores, dtype=torch.bool)
            if step == 0:
                keep[:, off + 30] = True
            elif step == 1:
                keep[:, dash] = True
            else:
                keep[:, off : off + model.config.max_seconds + 1] = True
            return scores.masked_fill(~keep, float("-inf"))

    enc = tok([proc.prompt("When is the music at its most intense?", 120.0)], return_tensors="pt")
    n = enc["input_ids"].shape[1]
    torch.manual_seed(0)

    def ends():
        out = model.generate(**enc, audio_features=[torch.zeros(1200, model.config.feature_dim)], do_sample=True,
                             max_new_tokens=3, num_return_sequences=64, logits_processor=[Script(n)])
        assert (out[:, n] == off + 30).all() and (out[:, n + 1] == dash).all()
        return out[:, n + 2] - off

    assert (ends() <= 30).any()  # unconstrained: a quarter of the seconds end the interval before it starts
    sample_in_answer_form(model, tok)
    assert (ends() > 30).all()


def test_per_source_lays_out_each_sources_own_columns():
    # heads: transition, rhythm, activity (piano, drums), Amuse sources (piano, drums), tempo
    act_piano, act_drums = [0.0, 0, 1, 1, 1, 1], [0.0, 0, 0, 0, 1, 1]
    probs = torch.zeros(6, 7)
    probs[:, 2], probs[:, 3], probs[:, 5] = torch.tensor(act_piano), torch.tensor(act_drums), 0.5
    f = __import__("must.model.modeling", fromlist=["per_source"]).per_source(probs, 2)
    assert f.shape == (6, 2, 6)
    assert f[:, 0, 0].tolist() == act_piano and f[:, 1, 0].tolist() == act_drums
    assert f[:, 1, 2].tolist() == [0.5] * 6  # drums' Amuse column
    assert f[:, 0, 1].tolist() == [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]  # contrast(width 2) peaks where the piano enters
    assert f[:, 0, 4].tolist() == [0.0, 0, 0, 1, 1, 1]  # played before
    assert f[:, 1, 5].tolist() == [1.0, 1, 1, 1, 1, 0]  # plays after


def test_source_pointer_reads_the_gated_sources_columns(tiny):
    """With the LM's own time logits and the plain pointer off, a gate on the piano points at the piano's entry
    (second 2) and a gate on the drums at theirs (second 4): the keys read only the gated source's columns."""
    import copy

    model, proc = copy.deepcopy(tiny[0]), tiny[1]
    assert torch.count_nonzero(model.source_query.weight) == 0  # a new model points as before
    cfg = model.config
    enc_dim, n = cfg.encoder_dim, len(cfg.sources)
    feats = torch.zeros(60, cfg.feature_dim)  # 6 s at 10 Hz
    feats[20:, enc_dim + 2] = 1.0  # piano from 2 s
    feats[40:, enc_dim + 3] = 1.0  # drums from 4 s
    enc = proc.tokenizer([proc.prompt("When does the piano first start to play?", 6.0)], return_tensors="pt")
    off = cfg.time_token_offset
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.time_query.weight.zero_()
        key = model.model.source_key
        for layer in (key[0], key[2]):
            layer.weight.zero_(), layer.bias.zero_()
        key[0].weight[0, 0], key[0].weight[0, 4] = 1.0, -1.0  # relu-like read of "plays now, not before"
        key[2].weight[0, 0] = 10.0
        model.source_query.weight.zero_()
        model.source_query.weight[0] = 1.0  # query (Σ h) on dimension 0
        picks = []
        for source in range(n + 1):
            model.source_gate.weight.zero_()
            model.source_gate.bias.fill_(-30.0)
            model.source_gate.bias[source] = 30.0
            out = model(**enc, audio_features=[feats])
            h = model.model(**enc, audio_features=[feats]).last_hidden_state[0, -1]
            logits = out.logits[0, -1, off : off + 6] * torch.sign(h.sum())
            picks.append(logits)
    assert int(picks[0].argmax()) == 2 and int(picks[1].argmax()) == 4
    assert torch.allclose(picks[2], torch.zeros(6), atol=1e-6)  # gate on "none": no source term


def test_source_gate_loss_is_cross_entropy_at_answer_positions(tiny):
    import copy

    model, proc = copy.deepcopy(tiny[0]), tiny[1]
    ids = proc.tokenizer([proc.prompt("When does the piano first start to play?", 5.0) + proc.answer("0:02")],
                         return_tensors="pt")["input_ids"]
    labels = torch.full_like(ids, -100)
    labels[0, -2:] = ids[0, -2:]  # the answer: time token, end of turn
    asked = torch.full_like(ids, -100)
    asked[0, -3:] = 0  # the turn asks about the piano (the prompt's last token is already labelled: no effect)
    feats = torch.randn(50, model.config.feature_dim)
    with torch.no_grad():
        plain = model(input_ids=ids, labels=labels, audio_features=[feats])
        gated = model(input_ids=ids, labels=labels, audio_features=[feats], asked_source=asked)
        gate = model.source_gate(model.model(input_ids=ids, audio_features=[feats]).last_hidden_state[0, -3:-2])
    # position -3 predicts the time token 0:02 and its gate should say "piano" (class 0); position -2 predicts the
    # end of the turn, which writes no time, so the gate is not taught there
    expected = torch.nn.functional.cross_entropy(gate, torch.tensor([0]))
    assert torch.allclose(gated.loss - plain.loss, expected, atol=1e-5)


def _with_moments(tiny):
    """A copy of the tiny model with source moments switched on (zero-initialised weights: no effect yet)."""
    import copy

    model, proc = copy.deepcopy(tiny[0]), tiny[1]
    for key, value in proc.moment_ids(model.config.sources).items():
        setattr(model.config, key, value)
    return model, MusTProcessor(proc.tokenizer, 120, audio_first=True)


def test_moment_ids_name_each_source_by_its_last_word(tiny):
    tok = tiny[1].tokenizer
    ids = tiny[1].moment_ids(["piano", "drums", "electric_bass"])
    assert ids["source_token_ids"] == [tok.convert_tokens_to_ids("piano"), tok.convert_tokens_to_ids("drums"), -1]
    assert ids["turn_token_ids"] == [tok.convert_tokens_to_ids("<|im_start|>"), tok.convert_tokens_to_ids("<|im_end|>")]


def test_asked_seconds_hold_the_turns_own_time(tiny):
    """Two packed turns after one audio prefix: the first names 0:03, so its question and answer are about second
    3; the answer's <|im_end|> ends the turn; the second turn names no time until its answer writes 0:04."""
    from must.model.modeling import asked_seconds

    model, proc = _with_moments(tiny)
    tok = proc.tokenizer
    text = (proc.audio_prefix(6.0) + proc.question_turn("The piano enters at 0:03 ?") + proc.answer("the piano enters")
            + proc.question_turn("When does the drums enter ?") + proc.answer("0:04"))
    ids = tok(text, return_tensors="pt")["input_ids"][0]
    span = model.model._span_positions(ids)
    at = asked_seconds(ids, model.config, (int(span[0][0]), int(span[0][-1]) + 1))
    toks = tok.convert_ids_to_tokens(ids.tolist())
    q1 = toks.index("0:03", toks.index("<|audio_eos|>"))
    ends = [i for i, t in enumerate(toks) if t == "<|im_end|>"]  # system, question 1, answer 1, question 2, answer 2
    assert (at[:q1] == -1).all()  # the audio span's time tokens are not asked about
    assert (at[q1 : ends[2]] == 3).all()  # question 1 from its time on, and its answer
    a2 = len(toks) - 2  # answer 2's time token, before its <|im_end|>
    assert (at[ends[2] : a2] == -1).all() and at[a2] == 4  # the turn ends at the answer's <|im_end|>
    # a generation step carries its prompt's value on, and a new time replaces it
    assert asked_seconds(ids[ends[1] + 3 : ends[2]], model.config, initial=3).tolist() == [3, 3, 3]  # the piano enters
    assert asked_seconds(ids[a2 : a2 + 1], model.config, initial=3).tolist() == [4]


def test_music_words_carry_the_loudness_change_at_the_asked_second(tiny):
    """Loudness rises at 2 s and falls at 4 s. With a hand-set music-moment network reading the current second's
    loudness change (+1 at 0:02, -1 at 0:04 in track_signals' units), the word "tempo" gains GELU(±1) in every
    dimension after a time is named, and nothing before it or in a turn that names no time."""
    import copy

    from must.model.modeling import TRACK_SIGNALS, MUSIC_HEADS

    model, proc = copy.deepcopy(tiny[0]), MusTProcessor(tiny[1].tokenizer, 120, audio_first=True)
    for key, value in proc.music_ids().items():
        setattr(model.config, key, value)
    cfg, tok = model.config, proc.tokenizer
    tempo = tok.convert_tokens_to_ids("tempo")
    assert tempo in cfg.music_token_ids and tok.convert_tokens_to_ids("piano") not in cfg.music_token_ids
    feats = torch.zeros(60, cfg.feature_dim)
    loud = cfg.encoder_dim + cfg.n_heads_out  # measured loudness (log10 power)
    feats[:, loud] = -3.0
    feats[20:40, loud] = -1.0
    width = 2 * (TRACK_SIGNALS + len(MUSIC_HEADS))
    with torch.no_grad():
        layer = model.model.music_moment[0]
        layer.weight.zero_(), layer.bias.zero_()
        layer.weight[0, width + 2] = 1.0  # the middle second's loudness change (track_signals column 2)
        model.model.music_embed.weight.zero_()
        model.model.music_embed.weight[:, 0] = 1.0
        gelu = torch.nn.functional.gelu(torch.tensor([1.0, -1.0]))
        for asked, want in (("0:02", gelu[0]), ("0:04", gelu[1])):
            text = proc.prompt(f"Does the tempo change at {asked} ?", 6.0) + proc.answer("the tempo")
            ids = tok([text], return_tensors="pt")["input_ids"]
            diff = model.model.embed(ids, [feats]) - model.model.embed(ids, [torch.zeros_like(feats)])
            at = [i for i, t in enumerate(ids[0].tolist()) if t == tempo]
            assert len(at) == 2  # in the question before its time, and in the answer after it
            assert torch.allclose(diff[0, at[0]], torch.zeros(diff.shape[-1]), atol=1e-6)
            assert torch.allclose(diff[0, at[1]], torch.full((diff.shape[-1],), float(want)), atol=1e-5)
        ids = tok([proc.prompt("When does the tempo change ?", 6.0) + proc.answer("the tempo")], return_tensors="pt")["input_ids"]
        diff = model.model.embed(ids, [feats]) - model.model.embed(ids, [torch.zeros_like(feats)])
        music = ids[0] == tempo
        assert torch.allclose(diff[0, music], torch.zeros_like(diff[0, music]), atol=1e-6)


def test_source_moments_start_as_no_change(tiny):
    model, proc = _with_moments(tiny)
    base = MusTForCausalLM(tiny[0].config)
    base.load_state_dict(tiny[0].state_dict())
    base.eval()
    enc = proc.tokenizer([proc.prompt("The piano enters at 0:03 ?", 6.0) + " the piano"], return_tensors="pt")
    feats = torch.randn(60, model.config.feature_dim)
    with torch.no_grad():
        assert torch.allclose(model(**enc, audio_features=[feats]).logits, base(**enc, audio_features=[feats]).logits, atol=1e-6)


def test_source_name_logit_reads_what_each_source_does_at_the_asked_second(tiny):
    """Piano enters at 2 s, drums at 4 s. With the LM head zeroed and a hand-set moment network reading "this
    source's activity rises here", asking about 0:02 favours the word piano and about 0:04 the word drums; the
    piano's name in the question carries its moment (moment_embed), and not in a turn that names no time."""
    from must.model.modeling import PER_SOURCE

    model, proc = _with_moments(tiny)
    cfg = model.config
    feats = torch.zeros(60, cfg.feature_dim)
    feats[20:, cfg.encoder_dim + 2] = 1.0  # piano from 2 s
    feats[40:, cfg.encoder_dim + 3] = 1.0  # drums from 4 s
    piano, drums = cfg.source_token_ids
    with torch.no_grad():
        model.lm_head.weight.zero_()
        layer = model.model.source_moment[0]
        layer.weight.zero_(), layer.bias.zero_()
        layer.weight[0, PER_SOURCE + 1] = 10.0  # the activity's change, at the second itself (middle of three)
        model.moment_query.weight.zero_()
        model.moment_query.weight[0] = 1.0  # query (Σ h) on dimension 0
        picks = []
        for asked in ("0:02", "0:04"):
            enc = proc.tokenizer([proc.prompt(f"What changes at {asked} ?", 6.0)], return_tensors="pt")
            logits = model(**enc, audio_features=[feats]).logits[0, -1]
            h = model.model(**enc, audio_features=[feats]).last_hidden_state[0, -1]
            picks.append((logits[[piano, drums]] * torch.sign(h.sum())).tolist())
        model.model.moment_embed.weight.fill_(1.0)
        timed = proc.tokenizer([proc.prompt("The piano enters at 0:02 ?", 6.0)], return_tensors="pt")["input_ids"]
        untimed = proc.tokenizer([proc.prompt("When does the piano enter ?", 6.0)], return_tensors="pt")["input_ids"]
        emb_timed = model.model.embed(timed, [feats]) - model.model.get_input_embeddings()(timed)
        emb_untimed = model.model.embed(untimed, [feats]) - model.model.get_input_embeddings()(untimed)
    assert picks[0][0] > picks[0][1] and picks[1][1] > picks[1][0]
    # "The piano enters at 0:02": the name comes before the time, so it carries nothing; a name after it would
    names = (timed[0] == piano).nonzero()[:, 0]
    assert torch.allclose(emb_timed[0, names], torch.zeros(len(names), emb_timed.shape[-1]))
    after = proc.tokenizer([proc.prompt("At 0:02 does the piano enter ?", 6.0)], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        emb_after = model.model.embed(after, [feats]) - model.model.get_input_embeddings()(after)
    name = int((after[0] == piano).nonzero()[-1, 0])
    assert emb_after[0, name].abs().sum() > 0
    assert torch.allclose(emb_untimed[0, (untimed[0] == piano)], torch.zeros(1, emb_untimed.shape[-1]))


def test_zero_touch_gives_every_trainable_parameter_a_zero_gradient(tiny):
    model, _ = tiny
    model.zero_grad(set_to_none=True)
    touched = model.zero_touch()
    assert touched.item() == 0.0
    touched.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and not g.any() for g in grads)
    model.zero_grad(set_to_none=True)


def test_greedy_baseline_is_the_policys_greedy_answer_generated_once_per_step(tiny):
    """Relative rewards' ``baseline`` column: the policy's greedy completion of each prompt, decoded as TRL decodes
    samples, generated once per step however many rewards and samples ask for it, and again at the next step."""
    import copy
    from types import SimpleNamespace

    from transformers import GenerationConfig

    from stages.stage4_grpo import PolicyBaseline

    model, proc = copy.deepcopy(tiny[0]), tiny[1]
    tok = proc.tokenizer
    torch.manual_seed(1)
    model.audio_store.update({0: torch.randn(300, model.config.feature_dim), 1: torch.randn(400, model.config.feature_dim)})
    questions = ["When is the music at its most intense?", "When does the piano first start to play?"]
    prompts = [proc.prompt(q, 30.0 + 10 * k, key=k) for k, q in enumerate(questions)]
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    sampling = GenerationConfig(max_new_tokens=6, do_sample=True, temperature=1.0, top_k=0, eos_token_id=[eos],
                                pad_token_id=tok.pad_token_id)
    model.train()
    trainer = SimpleNamespace(model=model, processing_class=tok, generation_config=sampling, eos_token_ids=[eos],
                              accelerator=SimpleNamespace(device="cpu"))
    with torch.no_grad():
        want = []
        for p in prompts:
            enc = tok([p], return_tensors="pt")
            out = model.eval().generate(**enc, max_new_tokens=6, do_sample=False, eos_token_id=eos)[0, enc["input_ids"].shape[1]:]
            want.append(tok.decode(out, skip_special_tokens=True))
    model.train()
    calls = []
    original = model.generate
    model.generate = lambda *a, **k: calls.append(k["generation_config"].do_sample) or original(*a, **k)
    baseline = PolicyBaseline()
    baseline.trainer = trainer
    seen = []
    wrapped = baseline.wrap(lambda completions, **cols: seen.append(cols["baseline"]) or [0.0] * len(completions))
    state = SimpleNamespace(global_step=3)
    wrapped(["a"] * 4, prompts=[prompts[0]] * 2 + [prompts[1]] * 2, trainer_state=state, task=["MTR"] * 4)
    wrapped(["b"] * 4, prompts=[prompts[0]] * 2 + [prompts[1]] * 2, trainer_state=state, task=["MTR"] * 4)
    assert want[0] != want[1]  # so answers given to the wrong prompt would show
    assert seen[0] == seen[1] == [want[0]] * 2 + [want[1]] * 2 and calls == [False, False]
    assert model.training  # the trainer's mode is restored
    state.global_step = 4
    wrapped(["c"] * 2, prompts=[prompts[1]] * 2, trainer_state=state, task=["MTR"] * 2)
    assert seen[2] == [want[1]] * 2 and len(calls) == 3


def test_baseline_is_generated_only_for_rows_of_the_tasks_its_rewards_score():
    """Stage 4's default rewards read the baseline only on MTR (interval IoU over the greedy answer): a step of TSG
    and MTR rows generates the two MTR prompts' baselines, TSG rows get ``None`` and a TSG-only step generates
    nothing; the relative IoU scores MTR rows against their baseline and leaves TSG rows out."""
    from types import SimpleNamespace

    from rewards import baseline_tasks, build_reward_funcs, load_reward_config, reads_baseline
    from stages.stage4_grpo import PolicyBaseline

    cfg = load_reward_config("rewards/over-greedy-mtr.yaml")
    assert baseline_tasks(cfg) == {"MTR"}
    funcs, _ = build_reward_funcs(cfg)
    iou = next(f for f, s in zip(funcs, cfg.rewards) if reads_baseline(s))
    baseline = PolicyBaseline(tasks=baseline_tasks(cfg))
    generated = []
    baseline._generate = lambda prompts, tasks: generated.append(list(zip(prompts, tasks))) or ["0:00-0:10"] * len(prompts)
    seen = []
    wrapped = baseline.wrap(lambda completions, **cols: seen.append(cols["baseline"]) or iou(completions, **cols))
    rows = dict(prompts=["t1", "t1", "m1", "m1", "m2", "m2"], task=["TSG"] * 2 + ["MTR"] * 4,
                answer=["0:05"] * 2 + ["0:00-0:20"] * 4, duration=[30.0] * 6)
    got = wrapped(["0:05", "0:06", "0:00-0:20", "0:00-0:05", "0:00-0:20", "0:00-0:10"],
                  trainer_state=SimpleNamespace(global_step=0), **rows)
    assert generated == [[("m1", "MTR"), ("m2", "MTR")]]
    assert seen[0] == [None, None] + ["0:00-0:10"] * 4
    assert got == [None, None, pytest.approx(0.5), 0.0, pytest.approx(0.5), 0.0]  # IoU 1 or .25 over the baseline's .5
    wrapped(["0:05", "0:06"], prompts=["t2", "t2"], task=["TSG"] * 2, answer=["0:05"] * 2, duration=[30.0] * 2,
            trainer_state=SimpleNamespace(global_step=1))
    assert len(generated) == 1 and seen[1] == [None, None]


def test_constrained_baseline_writes_tsg_and_mtr_times_as_choices_constrained_does(tiny):
    """``stage4.baseline: constrained``: the baseline's first time is chosen by the task's ``choices=constrained`` rule.
    Over seconds with probability .30 at 10, .18 at 20 and 23, .34 at 60: greedy writes 1:00 (the most probable),
    MTR the median 0:23 (cumulative .30, .48, .66), TSG 0:20 (the ±3 s windows centred on 20–23 hold .36, more
    than any other; 20 and 23 tie on probability and the first wins); LTR has no rule."""
    import copy
    from types import SimpleNamespace

    from transformers import GenerationConfig

    from stages.stage4_grpo import BASELINE_TIME_RULES, PolicyBaseline

    model, tok = copy.deepcopy(tiny[0]), tiny[1].tokenizer
    lo, eos = model.config.time_token_offset, tok.convert_tokens_to_ids("<|im_end|>")
    probs = torch.full((model.config.max_seconds + 1,), 1e-9)
    probs[[10, 20, 23, 60]] = torch.tensor([0.30, 0.18, 0.18, 0.34])
    scores = torch.full((1, len(tok)), -1e9)
    scores[0, lo : lo + len(probs)] = probs.log()
    written = []

    def generate(input_ids=None, generation_config=None, logits_processor=None, **kwargs):
        assert generation_config.do_sample is False
        chosen = logits_processor[0](input_ids, scores.clone()) if logits_processor else scores
        written.append(int(chosen.argmax()) - lo)
        return torch.cat([input_ids, torch.tensor([[lo + written[-1], eos]])], 1)

    model.generate = generate
    trainer = SimpleNamespace(model=model, processing_class=tok, eos_token_ids=[eos], accelerator=SimpleNamespace(device="cpu"),
                              generation_config=GenerationConfig(do_sample=True, temperature=1.0, eos_token_id=[eos]))
    baseline = PolicyBaseline(BASELINE_TIME_RULES["constrained"])
    baseline.trainer = trainer
    answers = baseline.answers(["When?", "Where is it loudest?", "Which change?"], 0, ["TSG", "MTR", "LTR"])
    assert written == [20, 23, 60]
    assert [a.split()[0] for a in answers] == ["0:20", "0:23", "1:00"]
    plain = PolicyBaseline(BASELINE_TIME_RULES["greedy"])
    plain.trainer = trainer
    plain.answers(["When?", "Where is it loudest?"], 0, ["TSG", "MTR"])
    assert written[3:] == [60, 60]


def test_music_words_read_the_music_moment_into_their_logits(tiny):
    """Loudness rises at 2 s and falls at 4 s; a hand-set music-moment network reads the current second's loudness
    change into moment dimension 0 (GELU(+1) at 0:02, GELU(-1) at 0:04). With the query of "speeds" set to v and of
    "tempo" to -v on that dimension, after a time is named the logit of "speeds" gains (v · h) · GELU(±1), "tempo"
    the opposite, every other word nothing — and nothing changes before the time is named."""
    import copy

    from must.model.modeling import MOMENT_DIM, MUSIC_HEADS, TRACK_SIGNALS
    from must.model.processing import MUSIC_READ_WORDS

    model, proc = copy.deepcopy(tiny[0]), MusTProcessor(tiny[1].tokenizer, 120, audio_first=True)
    tok = proc.tokenizer
    ids = proc.music_word_ids()
    speeds, tempo = tok.convert_tokens_to_ids("speeds"), tok.convert_tokens_to_ids("tempo")
    assert ids["music_word_ids"][MUSIC_READ_WORDS.index("speeds")] == speeds
    assert ids["music_word_ids"][MUSIC_READ_WORDS.index("louder")] == -1  # not in the tiny tokenizer's text
    for key, value in ids.items():
        setattr(model.config, key, value)
    cfg = model.config
    feats = torch.zeros(60, cfg.feature_dim)
    loud = cfg.encoder_dim + cfg.n_heads_out
    feats[:, loud] = -3.0
    feats[20:40, loud] = -1.0
    width = 2 * (TRACK_SIGNALS + len(MUSIC_HEADS))
    v = torch.linspace(-1.0, 1.0, cfg.text_config.hidden_size)
    with torch.no_grad():
        layer = model.model.music_moment[0]
        layer.weight.zero_(), layer.bias.zero_()
        layer.weight[0, width + 2] = 1.0  # the middle second's loudness change
        gelu = torch.nn.functional.gelu(torch.tensor([1.0, -1.0]))
        for asked, g in (("0:02", gelu[0]), ("0:04", gelu[1])):
            text = proc.prompt(f"Does the tempo change at {asked} ?", 6.0) + proc.answer("the tempo speeds up")
            batch = tok([text], return_tensors="pt")["input_ids"]
            model.music_word_query.weight.zero_()
            hidden = model.model(input_ids=batch, audio_features=[feats]).last_hidden_state[0]
            before = model(input_ids=batch, audio_features=[feats])
            model.music_word_query.weight[MUSIC_READ_WORDS.index("speeds") * MOMENT_DIM] = v
            model.music_word_query.weight[MUSIC_READ_WORDS.index("tempo") * MOMENT_DIM] = -v
            after = model(input_ids=batch, audio_features=[feats])
            diff = (after.logits - before.logits)[0]
            toks = batch[0].tolist()
            named = toks.index(tok.convert_tokens_to_ids(asked), toks.index(cfg.audio_eos_token_id))  # the question's
            assert tok.convert_ids_to_tokens(toks[-1]) == "<|im_end|>"  # the answer's, which ends the turn
            want = (hidden[named:-1] @ v) * g
            assert torch.allclose(diff[:named], torch.zeros_like(diff[:named]), atol=1e-6)
            assert torch.allclose(diff[-1], torch.zeros_like(diff[-1]), atol=1e-6)
            assert torch.allclose(diff[named:-1, speeds], want, atol=1e-4)
            assert torch.allclose(diff[named:-1, tempo], -want, atol=1e-4)
            others = torch.ones(diff.shape[-1], dtype=torch.bool)
            others[[speeds, tempo]] = False
            assert torch.allclose(diff[:, others], torch.zeros_like(diff[:, others]), atol=1e-6)
            assert want.abs().max() > 1e-3  # the check is not vacuous


def test_music_word_ids_must_match_the_music_words(tiny):
    import copy

    model = copy.deepcopy(tiny[0])
    model.config.music_word_ids = [5, 6]
    proc = MusTProcessor(tiny[1].tokenizer, 120, audio_first=True)
    batch = proc.tokenizer([proc.prompt("What changes at 0:02 ?", 6.0)], return_tensors="pt")["input_ids"]
    with pytest.raises(ValueError, match="music words"):
        model(input_ids=batch, audio_features=[torch.zeros(60, model.config.feature_dim)])


def test_region_features_step_up_at_a_regions_first_second_and_down_at_its_end():
    from must.model.modeling import REGION_FEATURES, region_features

    share = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    f = region_features(share)
    assert f.shape == (7, REGION_FEATURES)
    assert f[:, :2].tolist() == share.tolist()
    assert f[:, 2].tolist() == [0.0, 0.0, 1.0, 0.0, 0.0, -1.0, 0.0]  # highest: up at 2, down at 5 (its end, 0:05)
    assert f[:, 3].tolist() == [0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0]  # lowest ends at 2
    # over two seconds: at 2, mean(1, 1) - mean(0, 0); at 1 and 3, half of it
    assert f[:, 4].tolist() == [0.0, 0.5, 1.0, 0.5, -0.5, -1.0, -0.5]


def _region_model(texts: list[str]):
    """A tiny MusT with a pace head whose tokenizer knows ``texts``, the region pointer switched on."""
    proc = MusTProcessor.build(texts, max_seconds=120)
    proc = MusTProcessor(proc.tokenizer, 120, audio_first=True)
    cfg = _tiny_config(proc, ["piano", "drums"], pace_head=True, **proc.region_word_ids())
    torch.manual_seed(0)
    return MusTForCausalLM(cfg).eval(), proc


REGION_TEXTS = ["When is the music at its most intense ?", "When does the piano enter ?", "the calmest part"]


def test_region_turn_marks_the_turns_that_name_intensity():
    """Two packed turns after one audio prefix: the first asks about intensity, so from "intense" on, its question
    and answer read the regions; its answer's <|im_end|> ends that; the second turn (the piano) does not."""
    from must.model.modeling import region_turn

    model, proc = _region_model(REGION_TEXTS)
    tok = proc.tokenizer
    assert model.config.region_word_ids == [tok.convert_tokens_to_ids(w) for w in ("intense", "calmest")]  # no "intensity"
    text = (proc.audio_prefix(6.0) + proc.question_turn(REGION_TEXTS[0]) + proc.answer("0:02-0:04")
            + proc.question_turn(REGION_TEXTS[1]) + proc.answer("0:03"))
    ids = tok(text, return_tensors="pt")["input_ids"][0]
    toks = tok.convert_ids_to_tokens(ids.tolist())
    word = toks.index("intense")
    ends = [i for i, t in enumerate(toks) if t == "<|im_end|>"]  # system, question 1, answer 1, question 2, answer 2
    turn = region_turn(ids, model.config)
    assert not turn[:word].any() and turn[word : ends[2]].all() and not turn[ends[2] :].any()
    # generation steps carry their prompt's value on until the answer ends the turn
    assert region_turn(ids[ends[1] + 3 : ends[2] + 1], model.config, initial=True).tolist() == [True, True, True, False]
    assert not region_turn(ids[ends[3] + 3 :], model.config, initial=False).any()


def test_region_pointer_adds_the_heard_regions_to_the_time_logits_of_intensity_turns_only():
    """30 s with the mix 20 dB louder from 20 s: the heads hear the highest region at 22.0-29.9 s (as in
    test_region_signals_end_the_pooled_seconds_with_the_heard_regions). With the region query's row for the highest
    region's one-second step set to v, the time logit of second s gains (v · h) × step(s) — +1 at 0:22, -0.1 at 0:29
    (the share falls to 0.9), 0 elsewhere — at each position of the intensity turn from "intense" on, nothing
    before it, and nothing at all in a prompt about the piano."""
    from must.model.modeling import region_turn

    model, proc = _region_model(REGION_TEXTS)
    cfg, tok = model.config, proc.tokenizer
    feats = _louder_from_20s(cfg)
    v = torch.linspace(-1.0, 1.0, cfg.text_config.hidden_size)
    step = torch.zeros(30)
    step[22], step[29] = 1.0, -0.1
    off = cfg.time_token_offset
    for question, asks in ((REGION_TEXTS[0], True), (REGION_TEXTS[1], False)):
        ids = tok([proc.prompt(question, 30.0) + proc.answer("0:22-0:29")], return_tensors="pt")["input_ids"]
        with torch.no_grad():
            model.region_query.weight.zero_()
            hidden = model.model(input_ids=ids, audio_features=[feats]).last_hidden_state[0]
            before = model(input_ids=ids, audio_features=[feats]).logits[0]
            model.region_query.weight[2] = v
            after = model(input_ids=ids, audio_features=[feats]).logits[0]
        diff = after - before
        turn = region_turn(ids[0], cfg)
        assert bool(turn.any()) == asks
        want = turn.float().unsqueeze(-1) * (hidden @ v).unsqueeze(-1) * step
        assert torch.allclose(diff[:, off : off + 30], want, atol=1e-4)
        assert torch.allclose(diff[:, off + 30 :], torch.zeros_like(diff[:, off + 30 :]))
        assert torch.allclose(diff[:, :off], torch.zeros_like(diff[:, :off]))
        assert not asks or want.abs().max() > 1e-3  # the check is not vacuous


def test_region_pointer_is_carried_through_generation():
    """Greedy generation with a large region query on the highest region's step writes 0:22 first in the intensity
    turn, and every later step continues the prompt's turn; the same model asked about the piano does neither."""
    model, proc = _region_model(REGION_TEXTS)
    cfg, tok = model.config, proc.tokenizer
    feats = _louder_from_20s(cfg)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # every logit 0 but the pointer's
    written = {}
    for question in REGION_TEXTS[:2]:
        enc = tok([proc.prompt(question, 30.0)], return_tensors="pt")
        n = enc["input_ids"].shape[1]
        with torch.no_grad():
            model.region_query.weight.zero_()
            h = model.model(**enc, audio_features=[feats]).last_hidden_state[0, -1]
            model.region_query.weight[2] = 50.0 * h / h.norm() ** 2  # (v · h) = 50 at the prompt's last position
            out = model.generate(**enc, audio_features=[feats], max_new_tokens=3, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        written[question] = (tok.convert_ids_to_tokens(out[0, n:].tolist())[0], model.model.region_turns[0].tolist())
    assert written[REGION_TEXTS[0]] == ("0:22", [True])  # the last step saw only its new token, and still reads
    assert written[REGION_TEXTS[1]][0] != "0:22" and written[REGION_TEXTS[1]][1] == [False]


def _grpo_batch(proc, prompts: list[str], completions: list[str]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Rows as TRL builds them: each prompt left-padded to the longest, its completion right-padded after it;
    ``(input_ids, attention_mask, prompt width)``."""
    tok, pad = proc.tokenizer, proc.tokenizer.pad_token_id
    ps = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    cs = [tok(c, add_special_tokens=False)["input_ids"] for c in completions]
    wp, wc = max(map(len, ps)), max(map(len, cs))
    ids = torch.tensor([[pad] * (wp - len(p)) + p + c + [pad] * (wc - len(c)) for p, c in zip(ps, cs)])
    mask = torch.tensor([[0] * (wp - len(p)) + [1] * (len(p) + len(c)) + [0] * (wc - len(c)) for p, c in zip(ps, cs)])
    return ids, mask, wp


def _shared_prompt_model():
    """A region-pointer MusT whose pointers matter, two tracks in its audio store, a batch of six GRPO rows: the
    intensity prompt three times, the piano prompt twice (shorter: left-padded), the intensity prompt of the other
    track once."""
    model, proc = _region_model(REGION_TEXTS)
    torch.manual_seed(1)
    for w in (model.time_query.weight, model.region_query.weight, model.source_query.weight):
        torch.nn.init.normal_(w, std=0.5)
    model.audio_store[1] = _louder_from_20s(model.config)
    model.audio_store[2] = torch.randn(300, model.config.feature_dim)
    intense, piano = (proc.prompt(REGION_TEXTS[0], 30.0, key=1), proc.prompt("When does the piano enter ?", 30.0, key=1))
    other = proc.prompt(REGION_TEXTS[0], 30.0, key=2)
    prompts = [intense, piano, intense, other, piano, intense]
    completions = [" 0:22-0:29 <|im_end|>", " 0:03 <|im_end|>", " 0:20-0:25 <|im_end|>", " 0:01-0:29 <|im_end|>",
                   " 0:12 <|im_end|>", " 0:22 <|im_end|>"]
    return model, proc, _grpo_batch(proc, prompts, completions)


def test_grpo_scores_each_distinct_prompt_once_with_the_scores_and_gradients_of_whole_rows():
    """Stage 4's scoring runs the three distinct prompts once and the six completions from copies of their caches:
    every completion token's log-probability and entropy, the loss and every gradient equal those of whole rows."""
    import copy

    from stages.stage4_grpo import score_with_full_logits

    model, proc, (ids, mask, width) = _shared_prompt_model()
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :width] = -100
    scored = labels[:, 1:] != -100
    whole = copy.deepcopy(model)
    logits = whole(input_ids=ids, attention_mask=mask).logits[:, :-1].float() / 0.7
    logp = torch.log_softmax(logits, -1)
    want = logp.gather(-1, ids[:, 1:, None])[..., 0]
    want_entropy = -(logp.exp() * logp).sum(-1)
    (-want[scored].sum() / scored.sum()).backward()

    score_with_full_logits(model, temperature=0.7)
    seen = []
    model.model.register_forward_pre_hook(lambda m, a, kw: seen.append(tuple(kw["input_ids"].shape)), with_kwargs=True)
    got = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
    assert seen == [(3, width), (6, ids.shape[1] - width)]  # three prompts once, then the completions
    assert torch.allclose(got.log_probs[scored], want[scored], atol=1e-5)
    assert torch.allclose(got.entropy[scored], want_entropy[scored], atol=1e-5)
    assert (got.log_probs[~scored] == 0).all() and torch.equal(got.label_mask, scored)
    got.loss.backward()
    grads = dict(whole.named_parameters())
    checked = 0
    for name, p in model.named_parameters():
        if grads[name].grad is None:
            assert p.grad is None or not p.grad.any(), name
            continue
        assert torch.allclose(p.grad, grads[name].grad, atol=1e-5, rtol=1e-4), name
        checked += grads[name].grad.abs().sum() > 0
    assert checked > 10  # the LM's weights, the pointers' queries, the region query


def test_grpo_samples_each_distinct_prompt_once_as_whole_rows_would():
    """Stage 4's sampling runs the distinct prompts once (all but their last token, which generate's first step
    reads) and generates from copies of their caches: the same greedy and seeded samples, the same scores."""
    import copy

    from stages.stage4_grpo import sample_prompts_once

    model, proc, (ids, mask, width) = _shared_prompt_model()
    ids, mask = ids[:, :width], mask[:, :width]
    shared = copy.deepcopy(model)
    sample_prompts_once(shared)
    seen = []
    shared.model.register_forward_pre_hook(lambda m, a, kw: seen.append(tuple(kw["input_ids"].shape)), with_kwargs=True)
    for sample in (False, True):
        runs = []
        for m in (model, shared):
            torch.manual_seed(0)
            runs.append(m.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=sample,
                                   pad_token_id=proc.tokenizer.pad_token_id, output_scores=True,
                                   return_dict_in_generate=True))
        assert torch.equal(runs[0].sequences, runs[1].sequences)
        for a, b in zip(runs[0].scores, runs[1].scores):
            assert torch.allclose(a, b, atol=1e-4)
    assert seen[0] == (3, width - 1) and seen[1] == (6, 1)  # three prompts once, then every row's last prompt token


def test_must_policy_installs_each_wrapper_once_however_often_it_is_applied(monkeypatch):
    """The adapters' pass wraps the model the module pass already wrapped (merged, the same object): its samples still
    get one answer-form constraint and one prompt pass per batch, and its scores are those of the first wrapping."""
    import stages.stage4_grpo as s4

    model, proc, (ids, mask, width) = _shared_prompt_model()
    ids, mask = ids[:, :width], mask[:, :width]
    calls = {"form": 0, "prompts": 0}
    form, once = s4.answer_form_processors, s4.run_prompts_once
    monkeypatch.setattr(s4, "answer_form_processors", lambda *a: calls.__setitem__("form", calls["form"] + 1) or form(*a))
    monkeypatch.setattr(s4, "run_prompts_once", lambda *a, **k: calls.__setitem__("prompts", calls["prompts"] + 1) or once(*a, **k))
    s4.must_policy(model, 0.7, proc.tokenizer)
    labels = torch.cat([torch.full_like(ids[:, :-1], -100), ids[:, -1:]], 1)
    first = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True).log_probs
    s4.must_policy(model, 0.7, proc.tokenizer)
    again = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True).log_probs
    assert torch.allclose(first, again) and calls["prompts"] == 2
    model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=2, do_sample=False,
                   pad_token_id=proc.tokenizer.pad_token_id)
    assert calls == {"form": 1, "prompts": 3}
