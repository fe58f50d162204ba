"""Packed training sequences: several questions of a track after one audio prefix, each seeing what it would alone."""

import pytest
import torch

from must.config import ConfigError, from_dict
from must.model import MusTConfig, MusTForCausalLM, MusTProcessor
from stages.config import TrainConfig
from stages.sequences import AudioCollator, PackedTurnsDataset, asked_source, must_dataset, pack_turns, packed_attention

QUESTIONS = ["When does the piano first start to play?", "When do the drums enter?"]


@pytest.fixture(scope="module")
def tiny():
    proc = MusTProcessor.build([*QUESTIONS, "The drums enter and the tempo speeds up. Answer with a time."], max_seconds=60)
    proc.audio_first = True
    cfg = MusTConfig(sources=["piano", "drums"], encoder_dim=16, encoder_layers=1, encoder_channels=4, max_seconds=60,
                     audio_first=True,
                     text_config=dict(vocab_size=len(proc.tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512),
                     **proc.config_ids())
    torch.manual_seed(0)
    model = MusTForCausalLM(cfg).eval()
    with torch.no_grad():  # the pointer and the span keys start at zero; make them matter here
        model.time_query.weight.normal_(std=0.3)
        model.model.time_key_context.weight.normal_(std=0.3)
        model.source_query.weight.normal_(std=0.3)
    return model, proc


def test_audio_first_prompt_tokenises_as_prefix_then_turn(tiny):
    _, proc = tiny
    tok = proc.tokenizer
    prompt = proc.prompt(QUESTIONS[0], 4.0, "Answer with a time.")
    prefix, turn = proc.audio_prefix(4.0), proc.question_turn(QUESTIONS[0], "Answer with a time.")
    assert prompt == prefix + turn
    ids = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert ids(prefix) + ids(turn) == ids(prompt)
    assert prompt.index("<|audio_eos|>") < prompt.index("piano")  # the audio comes before the question
    question_first = MusTProcessor(tok, 60)
    assert question_first.prompt(QUESTIONS[0], 4.0).index("piano") < question_first.prompt(QUESTIONS[0], 4.0).index("<|audio_bos|>")


def test_pack_turns_groups_rows_of_one_prefix_in_order():
    rows = [{"prefix": p, "turn": f"q{i}", "target": f"a{i}", "track_id": t}
            for i, (t, p) in enumerate([("x", "P"), ("y", "Q"), ("x", "P"), ("x", "P"), ("x", "P2"), ("y", "Q")])]
    packs = pack_turns(rows, 2)
    assert [(p["track_id"], p["prefix"], [t[:2] for t in p["turns"]]) for p in packs] == [
        ("x", "P", [("q0", "a0"), ("q2", "a2")]), ("y", "Q", [("q1", "a1"), ("q5", "a5")]),
        ("x", "P", [("q3", "a3")]), ("x", "P2", [("q4", "a4")])]
    assert {t[2] for p in packs for t in p["turns"]} == {(-100, None)}  # rows without "asked": no gate label


def test_packed_attention_hand_checked():
    # prefix 0-1, turn A 2-3, turn B 4, one pad at 5
    mask, pos = packed_attention([[(2, 4), (4, 5)]], 6)
    allowed = (mask[0, 0] == 0).int().tolist()
    assert allowed == [[1, 0, 0, 0, 0, 0],
                       [1, 1, 0, 0, 0, 0],
                       [1, 1, 1, 0, 0, 0],
                       [1, 1, 1, 1, 0, 0],
                       [1, 1, 0, 0, 1, 0],
                       [0, 0, 0, 0, 0, 1]]
    assert pos.tolist() == [[0, 1, 2, 3, 2, 0]]
    assert mask.shape == (1, 1, 6, 6) and float(mask.min()) == torch.finfo(torch.float32).min


def test_packed_sequence_gives_each_turn_the_logits_it_has_alone(tiny):
    model, proc = tiny
    feats = torch.randn(50, model.config.feature_dim)
    items = [{"question": q, "instruction": "Answer with a time.", "duration": 5.0, "heard": None,
              "target": proc.answer(a), "track_id": "t"} for q, a in zip(QUESTIONS, ["0:02", "0:03"])]
    packed = must_dataset(proc, items, turns=2)
    assert isinstance(packed, PackedTurnsDataset) and len(packed) == 1
    collate = AudioCollator(proc.tokenizer.pad_token_id, {"t": feats})
    batch = collate([packed[0]])
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0]
    alone = must_dataset(proc, items, turns=1)
    assert len(alone) == 2
    segments = packed[0]["segments"]
    for (start, end), single in zip(segments, [alone[0], alone[1]]):
        with torch.no_grad():
            ref = model(**{k: v for k, v in collate([single]).items() if k != "labels"}).logits[0]
        n = end - start
        assert packed[0]["input_ids"][start:end] == single["input_ids"][-n:]
        assert packed[0]["labels"][start:end] == single["labels"][-n:]
        assert torch.allclose(logits[start:end], ref[-n:], atol=1e-5)
    # the loss is on the two answers only: time token + end of turn each
    answers = [t for t in packed[0]["labels"] if t != -100]
    assert proc.tokenizer.convert_ids_to_tokens(answers) == ["0:02", "<|im_end|>", "0:03", "<|im_end|>"]


def test_packing_needs_audio_first_prompts(caplog):
    with pytest.raises(ConfigError, match="audio_first"):
        from_dict(TrainConfig, {"stage3": {"pack_turns": 4}})
    cfg = from_dict(TrainConfig, {"model": {"audio_first": True}, "stage2": {"pack_turns": 2}, "stage3": {"pack_turns": 6}})
    assert (cfg.stage2.pack_turns, cfg.stage3.pack_turns) == (2, 6)
    # the default config also serves an hf audio-LM, which keeps its chat template: said, not refused
    assert from_dict(TrainConfig, {"model": {"kind": "hf", "path": "x"}, "stage3": {"pack_turns": 6}}).stage3.pack_turns == 6
    assert "one question per sequence" in caplog.text


def _packed_batch(model, proc) -> dict:
    """A one-row collated batch: both QUESTIONS packed after one 5 s prefix, random audio features."""
    items = [{"question": q, "instruction": "", "duration": 5.0, "heard": None, "target": proc.answer("0:01"), "track_id": "t"}
             for q in QUESTIONS]
    return AudioCollator(proc.tokenizer.pad_token_id, {"t": torch.randn(50, model.config.feature_dim)})(
        [must_dataset(proc, items, turns=2)[0]])


def test_packed_batch_runs_in_bfloat16(tiny):
    """Audio features, time features and the float32 packed mask meet bf16 activations (a GPU run's dtype)."""
    import copy

    model, proc = tiny
    half = copy.deepcopy(model).to(torch.bfloat16)
    batch = _packed_batch(model, proc)
    with torch.no_grad():
        out = half(**batch)
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.loss)


def test_packed_batch_runs_under_bf16_autocast(tiny):
    """float32 weights with bf16 matmuls (torch.autocast, e.g. DeepSpeed's torch_autocast): projected audio
    comes out in bf16 and must still land in the float32 embeddings."""
    model, proc = tiny
    batch = _packed_batch(model, proc)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**batch)
    with torch.no_grad():
        ref = model(**batch)
    assert torch.isfinite(out.loss) and abs(float(out.loss) - float(ref.loss)) < 0.1 * float(ref.loss)


def test_asked_source_names_the_one_source_a_question_asks_about():
    sources = ["piano", "acoustic_guitar", "drums"]
    assert asked_source("When does the acoustic guitar first come in?", sources) == 1
    assert asked_source("At what time does the piano play for the last time?", sources) == 0
    assert asked_source("During which time span(s) is the music at its most intense?", sources) == 3  # none
    assert asked_source("Is the piano louder than the drums?", sources) == -100  # several: no label
    assert asked_source("Is there a pianola?", sources) == 3  # whole words only


def test_packed_turns_carry_each_questions_source_label(tiny):
    _, proc = tiny
    items = [{"question": q, "instruction": "", "duration": 5.0, "heard": None, "target": proc.answer(a), "track_id": "t"}
             for q, a in zip(QUESTIONS, ["0:02", "0:03"])]
    item = must_dataset(proc, items, turns=2, sources=["piano", "drums"])[0]
    (s0, e0), (s1, e1) = item["segments"]
    assert item["asked_source"] == [-100] * s0 + [0] * (e0 - s0) + [1] * (e1 - s1)
    batch = AudioCollator(proc.tokenizer.pad_token_id, {"t": torch.zeros(50, 1)})([item])
    assert batch["asked_source"][0].tolist() == item["asked_source"]
    unlabelled = AudioCollator(proc.tokenizer.pad_token_id, {"t": torch.zeros(50, 1)})([must_dataset(proc, items, turns=2)[0]])
    assert "asked_source" not in unlabelled


def test_answer_source_labels_follow_gto_markers():
    from stages.sequences import answer_source_labels

    sources = ["piano", "tuba", "drums"]
    question = ("These three transitions can be heard in the audio:\n(X) The tuba enters\n(Y) The music gets louder\n"
                "(Z) The drums enter and the piano enters\n\nWhich of the following options represents the correct "
                "chronological order?\nA: (X) → (Y) → (Z)")
    tokens = ["(", "x", ")", "0:06", "(", "y", ")", "0:31", "(", "z", ")", "0:16", ".", "answer", ":", "a"]
    # before any marker: the question's own label (it names several sources: none); then X: tuba, Y: none (3), Z: several
    assert answer_source_labels(question, tokens, sources) == [-100, -100, 1, 1, 1, 1, 3, 3, 3, 3] + [-100] * 6
    assert answer_source_labels("When does the piano enter?", ["0:42", "<|im_end|>"], sources) == [0, 0]


def test_packed_plan_hand_checked():
    from must.model.packed_attention import packed_plan

    # the case of test_packed_attention_hand_checked: prefix 0-1, turn A 2-3, turn B 4, one pad at 5
    plan = packed_plan([[(2, 4), (4, 5)]], 6)
    assert plan.prefix == 2 and len(plan.blocks) == 1  # two short turns: one SDPA call is cheaper than two
    block = plan.blocks[0]  # turns shortest first: B, then A
    assert block.rows.tolist() == [0, 0]
    assert block.queries.tolist() == [[4, 4], [2, 3]]  # turn B's one query, repeated to the block's width
    assert block.keys.tolist() == [[0, 1, 4, 4], [0, 1, 2, 3]]
    assert block.mask[:, 0].int().tolist() == [[[1, 1, 1, 0], [1, 1, 1, 0]], [[1, 1, 1, 0], [1, 1, 1, 1]]]
    # outputs: prefix rows 0-1, block rows 2-5 (turn B's query and its repeat, turn A's two), then the values
    # (6 + position): the pad at 5 takes its own value
    assert plan.gather.tolist() == [0, 1, 4, 5, 2, 11]


def test_length_groups_pays_padding_against_calls():
    from must.model.packed_attention import length_groups

    # one group: 4 x 100 x 100 + 1,000 = 41,000; short and long apart: 2 x 12^2 + 2 x 100^2 + 2,000 = 22,288, less
    # than splitting further ({10}, {12}, {98, 100}: 23,244; {10, 12}, {98}, {100}: 22,892)
    assert length_groups([10, 100, 12, 98], width=0, call_cost=1000) == [[0, 2], [3, 1]]
    assert length_groups([10, 100, 12, 98], width=0, call_cost=10**6) == [[0, 2, 3, 1]]


def test_packed_plan_refuses_rows_without_turns_and_spans_outside():
    from must.model.packed_attention import packed_plan

    with pytest.raises(ValueError, match="at least one turn"):
        packed_plan([[(2, 4)], []], 6)
    with pytest.raises(ValueError, match="outside 0..6"):
        packed_plan([[(2, 7)]], 6)


class _Attention(torch.nn.Module):
    num_key_value_groups, is_causal = 2, True


@pytest.mark.parametrize("call_cost", [0.0, 1e9])  # a block per turn length, and one block for all turns
def test_packed_turns_attention_equals_the_masked_square(call_cost):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from must.model.packed_attention import packed_plan, packed_turns_attention

    torch.manual_seed(0)
    segments, length = [[(3, 7), (7, 9), (9, 14)], [(5, 8), (8, 16)]], 18  # prefixes 3 and 5; padding after 14 and 16
    q = torch.randn(2, 4, length, 8, requires_grad=True)
    k, v = (torch.randn(2, 2, length, 8, requires_grad=True) for _ in range(2))  # 2 key-value heads for 4 query heads
    mask, _ = packed_attention(segments, length)
    ref, _ = sdpa_attention_forward(_Attention(), q, k, v, mask, scaling=0.3)
    plan = packed_plan(segments, length, call_cost=call_cost)
    assert len(plan.blocks) == (5 if call_cost == 0.0 else 1)  # turn lengths 4, 2, 5, 3, 8: free calls, no padding
    out, _ = packed_turns_attention(_Attention(), q, k, v, None, scaling=0.3, packed_plan=plan)
    assert out.shape == ref.shape == (2, length, 4, 8)
    assert torch.allclose(out, ref, atol=1e-5)
    weights = torch.randn_like(ref)
    grads = [torch.autograd.grad((x * weights).sum(), (q, k, v)) for x in (ref, out)]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(*grads))


def test_must_trains_packed_batches_through_the_packed_attention(tiny, monkeypatch, tmp_path):
    """MusT's LM attends with ``must_packed``; a packed batch's loss and gradients are those of the masked square
    (the collator's ``packed_segments`` dropped), and an implementation asked for explicitly is kept."""
    import copy

    import must.model.modeling as modeling
    from must.model.packed_attention import packed_plan

    plans = []
    monkeypatch.setattr(modeling, "packed_plan", lambda *a, **k: plans.append(a) or packed_plan(*a, **k))

    model, proc = tiny
    assert model.model.language_model.config._attn_implementation == "must_packed"
    trained = copy.deepcopy(model).train()
    items = [{"question": q, "instruction": "", "duration": 5.0, "heard": None, "target": proc.answer(a), "track_id": t}
             for t in ("t", "u") for q, a in zip(QUESTIONS, ["0:02", "0:03"])]
    items = items[:3]  # row "u" has one turn only: rows differ in turns and length
    feats = {"t": torch.randn(50, model.config.feature_dim), "u": torch.randn(30, model.config.feature_dim)}
    dataset = must_dataset(proc, items, turns=2)
    batch = AudioCollator(proc.tokenizer.pad_token_id, feats)([dataset[0], dataset[1]])
    spans = [[list(span) for span in dataset[i]["segments"]] for i in (0, 1)]
    assert batch["packed_segments"].tolist() == [spans[0], spans[1] + [[-1, -1]]]
    grads = []
    for inputs in (batch, {k: v for k, v in batch.items() if k != "packed_segments"}):
        trained.zero_grad()
        loss = trained(**inputs).loss
        loss.backward()
        grads.append((loss.item(), [p.grad.clone() for p in trained.parameters() if p.grad is not None]))
    assert len(plans) == 1  # the packed batch was planned, the other one not
    no_turns = dict(batch, packed_segments=batch["packed_segments"].clone())
    no_turns["packed_segments"][1] = -1  # a row without turns: the masked square, no plan
    with torch.no_grad():
        assert abs(trained(**no_turns).loss.item() - grads[1][0]) < 1e-5  # the square's loss
    assert len(plans) == 1
    (packed_loss, packed_grads), (square_loss, square_grads) = grads
    assert abs(packed_loss - square_loss) < 1e-5 and len(packed_grads) == len(square_grads) > 0
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(packed_grads, square_grads))
    trained.save_pretrained(tmp_path)
    eager = MusTForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").train()
    assert eager.model.language_model.config._attn_implementation == "eager"
    assert MusTForCausalLM.from_pretrained(tmp_path).model.language_model.config._attn_implementation == "must_packed"
    with torch.no_grad():  # eager attention reads the mask and passes the plan by
        assert abs(eager(**batch).loss.item() - square_loss) < 1e-5
