"""Training data built from annotations: frame targets, captions, task balance."""

import itertools
import json

import numpy as np
import pytest

from must.annotation import Event, Rhythm, Source, TrackAnnotation
from stages.data import caption, event_caption, frame_targets, source_prevalence
from stages.stage1_encoder import EncoderObjective, activity_pos_weights
from stages.stage3_sft import balanced


def ann():
    a = TrackAnnotation("t", 10.0, [Source("piano"), Source("drums", "drums")],
                        activity={"piano": [(0.0, 10.0)], "drums": [(4.0, 8.0)]}, tempo=[(0.0, 100.0)],
                        regions={"highest": [(5.0, 7.0)]})
    a.transitions = [Event(4.0, "enter", "drums"), Event(8.0, "exit", "drums")]
    a.rhythm = Rhythm("paper", 6.0, 0.25, 22050, 100.0, [0.0, 6.0], [100.0, 140.0], [False, True])
    a.segment_sources = [(0.0, 6.0, ["piano"]), (6.0, 10.0, ["drums", "piano"])]
    return a


def test_frame_targets_by_hand():
    t = frame_targets(ann(), 100, 10, ["piano", "drums", "violin"], sigma=0.3)
    assert t["transition"][40] == 1.0 and t["transition"][80] == 1.0
    assert abs(t["transition"][43] - np.exp(-(0.3 ** 2) / (2 * 0.3 ** 2))) < 1e-6  # 0.3 s away
    assert t["activity"][:, 0].sum() == 100 and t["activity"][:, 1].sum() == 40 and t["activity"][:, 2].sum() == 0
    assert t["rhythm"][:60].sum() == 0 and t["rhythm"][60:].sum() == 40
    assert t["amuse"][59].tolist() == [1, 0, 0] and t["amuse"][60].tolist() == [1, 1, 0]
    assert np.allclose(t["tempo"], 0.5)  # 100 BPM / 200


def test_source_prevalence_counts_overlapping_spans_once():
    a = ann()
    a.activity["drums"] = [(4.0, 8.0), (6.0, 9.0), (1.0, 2.0)]  # union 1-2 and 4-9: 6 s of 10
    b = TrackAnnotation("u", 30.0, [Source("violin")], activity={"violin": [(0.0, 15.0)]})
    p = source_prevalence([a, b], ["piano", "drums", "violin", "flute"])
    assert np.allclose(p, [10 / 40, 6 / 40, 15 / 40, 0.0])


def test_auto_activity_pos_weight_is_sqrt_absent_over_present_clipped():
    w = activity_pos_weights("auto", np.array([0.2, 0.5, 0.9, 0.001, 0.0]))
    assert np.allclose(w, [2.0, 1.0, 1.0, 10.0, 1.0])  # sqrt(0.8/0.2); 1; clipped up to 1; clipped to 10; unheard
    assert activity_pos_weights(3, np.array([0.2])) == 3.0


def test_per_source_pos_weight_scales_only_the_missed_positives_of_that_source():
    import torch

    class ZeroEncoder(torch.nn.Module):  # every head logit is 0 (p = 0.5)
        def forward(self, mel, offset):
            return None, torch.zeros(mel.shape[0], 3, 7)  # transition, rhythm, 2 activity, 2 Amuse, tempo

    batch = dict(mel=torch.zeros(1, 3), offset=torch.zeros(1), transition=torch.zeros(1, 3),
                 activity=torch.tensor([[[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]]), rhythm=torch.zeros(1, 3),
                 amuse=torch.zeros(1, 3, 2), tempo=-torch.ones(1, 3), mask=torch.ones(1, 3))
    plain = EncoderObjective(ZeroEncoder(), 2, 0.0, 1.0)(**batch)["loss"]
    weighted = EncoderObjective(ZeroEncoder(), 2, 0.0, [1.0, 4.0])(**batch)["loss"]
    # frame 0: mean over sources of (1 + 4) log 2 instead of (1 + 1) log 2; averaged over 3 frames: +0.5 log 2
    assert abs(float(weighted - plain) - 0.5 * np.log(2)) < 1e-6


def test_frame_targets_tempo_follows_changes_and_is_unknown_before_the_first():
    a = ann()
    a.tempo = [(2.0, 100.0), (5.0, 150.0)]
    tempo = frame_targets(a, 100, 10, ["piano"], sigma=0.3)["tempo"]
    assert (tempo[:20] == -1).all() and np.allclose(tempo[20:50], 0.5) and np.allclose(tempo[50:], 0.75)


def test_frame_targets_pace_is_onsets_per_second_times_tempo_on_a_log_scale():
    a = ann()
    a.onsets = {"piano": [i * 0.5 for i in range(20)], "drums": [4.0, 5.0, 6.0, 7.0]}
    t = frame_targets(a, 100, 10, ["piano", "drums"], sigma=0.3, with_pace=True)
    # at 2.0 s the window [1.0, 3.0) holds piano onsets 1.0, 1.5, 2.0, 2.5: 2 per second, × 100 / 120 BPM
    assert abs(t["pace"][20] - np.log1p(2 * 100 / 120) / np.log1p(40)) < 1e-6
    # at 5.0 s: piano 4.0 … 5.5 (4) and drums 4.0, 5.0 (2): 3 per second
    assert abs(t["pace"][50] - np.log1p(3 * 100 / 120) / np.log1p(40)) < 1e-6
    assert "pace" not in frame_targets(a, 100, 10, ["piano"], sigma=0.3)
    a.onsets = {}  # a track without annotated onsets: the pace is unknown, not zero
    assert (frame_targets(a, 100, 10, ["piano"], sigma=0.3, with_pace=True)["pace"] == -1).all()


def test_pace_target_and_rate_invert_each_other_and_clip():
    import torch

    from must.model.pace import pace_rate, pace_target

    x = np.array([0.0, 1.0, 3.2, 24.0, 40.0])
    assert np.allclose(pace_rate(pace_target(x)), x)
    assert pace_target(np.array([100.0, -1.0])).tolist() == [1.0, 0.0]
    assert torch.allclose(pace_rate(torch.tensor(pace_target(x), dtype=torch.float64)), torch.tensor(x, dtype=torch.float64))


def test_pace_loss_is_added_over_frames_whose_pace_is_known():
    import torch

    class ZeroEncoder(torch.nn.Module):  # every head logit is 0 (p = 0.5): BCE is log 2 whatever the soft target
        def forward(self, mel, offset):
            return None, torch.zeros(mel.shape[0], 3, 8)  # transition, rhythm, 2 activity, 2 Amuse, tempo, pace

    batch = dict(mel=torch.zeros(1, 3), offset=torch.zeros(1), transition=torch.zeros(1, 3),
                 activity=torch.zeros(1, 3, 2), rhythm=torch.zeros(1, 3), amuse=torch.zeros(1, 3, 2),
                 tempo=-torch.ones(1, 3), mask=torch.ones(1, 3))
    objective = EncoderObjective(ZeroEncoder(), 2, 0.0, 1.0)
    plain = objective(**batch)["loss"]
    with_pace = objective(**batch, pace=torch.tensor([[0.3, -1.0, 0.9]]))["loss"]
    assert abs(float(with_pace - plain) - np.log(2)) < 1e-6


def test_caption_mentions_spans_transitions_and_regions():
    c = caption(ann())
    assert c.startswith("[0:00-0:04] piano, 100 bpm. [0:04] the drums enter.")
    assert "[0:04-0:08] piano and drums, 100 bpm." in c and "[0:08] the drums stop." in c
    assert c.endswith("[0:05-0:07] highest intensity.")


def test_event_caption_writes_each_change_before_its_time_in_a_seeded_order():
    parts = {"the drums enter at 0:04", "the drums stop at 0:08", "highest intensity 0:05-0:07"}
    c = event_caption(ann(), np.random.default_rng(0))
    assert c.endswith(" .") and set(c[:-2].split(" ; ")) == parts
    orders = {event_caption(ann(), np.random.default_rng(seed)) for seed in range(20)}
    assert len(orders) > 1 and orders <= {" ; ".join(p) + " ." for p in itertools.permutations(parts)}
    empty = TrackAnnotation("e", 5.0, [Source("piano")], activity={"piano": [(0.0, 5.0)]})
    assert event_caption(empty, np.random.default_rng(0)) == "no noticeable change ."


def test_balanced_oversamples_each_task_to_the_largest():
    ex = [{"task": "TSG", "i": i} for i in range(6)] + [{"task": "MTR", "i": i} for i in range(2)]
    out = balanced(ex, seed=0)
    assert sum(e["task"] == "TSG" for e in out) == 6 and sum(e["task"] == "MTR" for e in out) == 6
    assert {e["i"] for e in out if e["task"] == "TSG"} == set(range(6))


def test_gto_reasoned_answer_writes_each_label_time_then_the_letter():
    from must.answers import parse_choice
    from stages.data import reasoned_answer

    # chronological moments at 25.0 (two events), 50.1 and 74.8; answer F = (Z) → (Y) → (X)
    events = json.dumps([{"time": 25.0, "kind": "enter", "source": "piano"}, {"time": 25.02, "kind": "enter", "source": "bass"},
                         {"time": 50.078, "kind": "enter", "source": "drums"}, {"time": 74.761, "kind": "enter", "source": "flute"}])
    text = reasoned_answer("GTO", "F", events)
    assert text == "(X) 1:15 (Y) 0:50 (Z) 0:25. Answer: F"
    assert parse_choice(text.lower(), 6).value == "F"
    ltr = "What happens in the music at 0:42?\n\nA: The violin enters\nB: No noticeable change\nC: The drums enter"
    assert reasoned_answer("LTR", "C", events, ltr) == "The drums enter. Answer: C"
    assert parse_choice(reasoned_answer("LTR", "C", events, ltr).lower(), 4, ltr).value == "C"
    assert reasoned_answer("LTR", "B", events) == "B"  # no options to name
    assert reasoned_answer("GTO", "A", "[]") == "A"


def test_activity_pos_weight_config_takes_a_number_or_auto():
    import pytest

    from must.config import ConfigError, load_config
    from stages.config import TrainConfig
    from tests.conftest import ROOT

    smoke = ROOT / "configs" / "stages" / "smoke.yaml"
    assert load_config(TrainConfig, smoke, ["stage1.activity_pos_weight=auto"]).stage1.activity_pos_weight == "auto"
    assert load_config(TrainConfig, smoke, ["stage1.activity_pos_weight=2.5"]).stage1.activity_pos_weight == 2.5
    with pytest.raises(ConfigError, match="activity_pos_weight: a number or 'auto'"):
        load_config(TrainConfig, smoke, ["stage1.activity_pos_weight=sometimes"])


def test_stage4_module_pass_config_is_checked_before_launch(caplog):
    import pytest

    from must.config import ConfigError, load_config
    from stages.config import TrainConfig
    from tests.conftest import ROOT

    smoke = ROOT / "configs" / "stages" / "smoke.yaml"
    mp = load_config(TrainConfig, smoke, ["stage4.module_pass.max_steps=5", "stage4.module_pass.tasks=[MTR,TSG]"]).stage4.module_pass
    assert (mp.max_steps, mp.learning_rate, mp.tasks, mp.modules) == (5, 0.01, ["MTR", "TSG"], ["region_query"])
    with pytest.raises(ConfigError, match="name at least one module"):
        load_config(TrainConfig, smoke, ["stage4.module_pass.max_steps=5", "stage4.module_pass.modules=[]"])
    hf = load_config(TrainConfig, smoke, ["model.kind=hf", "model.path=x"])  # the smoke config serves both kinds
    assert hf.stage4.module_pass.max_steps > 0
    with caplog.at_level("WARNING", logger="stages.config"):
        load_config(TrainConfig, smoke, ["model.kind=hf", "model.path=x"])
    assert "model.kind hf runs stage 4 without it" in caplog.text
    with pytest.raises(ConfigError, match="train_adapters false"):
        load_config(TrainConfig, smoke, ["stage4.train_adapters=false"])


def test_wave_samples_memory_maps_the_cache_and_crops_match_the_whole_wave(tmp_path):
    import functools
    from types import SimpleNamespace

    import soundfile as sf

    from stages.data import TrainData

    y = (0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    sf.write(tmp_path / "t.wav", y, 16000, subtype="FLOAT")
    data = SimpleNamespace(cache=tmp_path / "cache")
    data.wave_samples = functools.partial(TrainData.wave_samples, data)
    first = TrainData.wave(data, "t", str(tmp_path / "t.wav"))  # decodes, caches as float16, returns full precision
    assert first.dtype == np.float32 and np.allclose(first, y, atol=1e-6)
    cached = TrainData.wave_samples(data, "t", str(tmp_path / "t.wav"))
    assert isinstance(cached, np.memmap) and cached.dtype == np.float16 and len(cached) == 16000
    whole = TrainData.wave(data, "t", str(tmp_path / "t.wav"))
    assert np.array_equal(np.asarray(cached[100:260], dtype=np.float32), whole[100:260])
    assert np.array_equal(whole, y.astype(np.float16).astype(np.float32))
    # another rate is another cache entry, not the 16 kHz samples read at the wrong rate
    half = TrainData.wave(data, "t", str(tmp_path / "t.wav"), sr=8000)
    assert len(half) == 8000 and len(TrainData.wave(data, "t", str(tmp_path / "t.wav"))) == 16000


def test_balanced_weights_scale_each_task_count_and_default_to_the_unweighted_draw():
    ex = [{"task": "TSG", "i": i} for i in range(6)] + [{"task": "MTR", "i": i} for i in range(2)]
    out = balanced(ex, seed=0, weights={"TSG": 2.0, "MTR": 0.5})
    assert sum(e["task"] == "TSG" for e in out) == 12 and sum(e["task"] == "MTR" for e in out) == 3  # 0.5 × 6, 2 + 1 drawn
    out = balanced(ex, seed=0, weights={"TSG": 0.5})
    assert sum(e["task"] == "TSG" for e in out) == 3 and len({e["i"] for e in out if e["task"] == "TSG"}) == 3
    assert balanced(ex, seed=0, weights={"TSG": 1.0}) == balanced(ex, seed=0)


def _one_track_data(cache, wave: np.ndarray, annotation):
    """A stand-in for ``TrainData`` with one 10 s train track ``t``: its ``wave``, its ``annotation`` (a callable of
    the track id) and ``TrainData``'s own log-mel cache under ``cache``."""
    import functools
    from types import SimpleNamespace

    import pandas as pd

    from stages.data import TrainData

    data = SimpleNamespace(cache=cache, tracks=lambda split: pd.DataFrame([{"track_id": "t", "audio": "t.wav", "duration": 10.0}]),
                           annotation=annotation, wave=lambda track_id, audio: wave)
    data.log_mel = functools.partial(TrainData.log_mel, data)
    return data


def test_encoder_crops_read_the_cached_log_mel_as_the_encoder_would_transform_the_crop(tmp_path):
    import torch

    from must.model import MusTConfig
    from must.model.modeling import LOG_MEL_FLOOR, MusicEncoder
    from stages.data import SOURCES
    from stages.stage1_encoder import EncoderCrops

    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(160000) * np.sin(np.arange(160000) / 3000.0)).astype(np.float32)  # 10 s
    data = _one_track_data(tmp_path, wave, lambda track_id: ann())
    encoder = MusicEncoder(MusTConfig(sources=SOURCES))
    crops = EncoderCrops(data, encoder, crop_seconds=4.0, sigma=0.3, repeats=4, seed=0)
    for i in range(4):
        item = crops[i]
        start = float(item["offset"])
        assert item["mel"].shape == (64, 201) and item["activity"].shape == (40, len(SOURCES))
        a = int(round(start * 16000))
        direct = encoder.log_mel(torch.from_numpy(wave[a : a + 64000])[None])[0]
        # away from the crop's edges (where the STFT pads instead of seeing the neighbouring audio), the same
        # values up to the cache's float16
        assert torch.allclose(item["mel"][:, 2:-2], direct[:, 2:-2], atol=2e-3)
        assert item["activity"][:, 0].sum() == 40  # the piano plays throughout
    assert (tmp_path / "mel" / "64x320at16000" / "t.npy").exists()
    # a crop running past the end is padded with the log-mel of silence, and its frames past the end are masked
    item = EncoderCrops(data, encoder, crop_seconds=12.0, sigma=0.3, repeats=1, seed=0)[0]
    assert float(item["offset"]) == 0.0 and item["mel"].shape == (64, 601)
    assert torch.all(item["mel"][:, 501:] == LOG_MEL_FLOOR) and torch.all(item["mel"][:, :501] > LOG_MEL_FLOOR)
    assert item["mask"].sum() == 100


def test_encoder_crops_read_each_tracks_mel_and_targets_once_and_crop_as_before(tmp_path):
    import torch

    from must.model import MusTConfig
    from must.model.modeling import MusicEncoder
    from stages.data import SOURCES
    from stages.stage1_encoder import EncoderCrops

    wave = (0.1 * np.random.default_rng(1).standard_normal(160000)).astype(np.float32)  # 10 s
    reads = []
    data = _one_track_data(tmp_path, wave, lambda track_id: reads.append(track_id) or ann())
    encoder = MusicEncoder(MusTConfig(sources=SOURCES))
    crops = EncoderCrops(data, encoder, crop_seconds=4.0, sigma=0.3, repeats=5, seed=0)
    items = [crops[i] for i in range(5)]
    assert reads == ["t"]  # the targets of the whole track, once
    # the first crop computed and cached the log-mel (an array); the second opened the cache, kept from then on
    assert isinstance(crops._mels["t"], np.memmap)
    for i, item in enumerate(items):  # a new dataset per crop: nothing kept, every crop read as before
        again = EncoderCrops(data, encoder, crop_seconds=4.0, sigma=0.3, repeats=5, seed=0)[i]
        assert item.keys() == again.keys() and all(torch.equal(item[k], again[k]) for k in item)
    assert len({float(item["offset"]) for item in items}) > 1


def test_grpo_prompts_come_from_train_or_val():
    import pytest

    from must.config import ConfigError, load_config
    from stages.config import TrainConfig
    from tests.conftest import ROOT

    smoke = ROOT / "configs" / "stages" / "smoke.yaml"
    assert load_config(TrainConfig, smoke, []).stage4.split == "train"
    assert load_config(TrainConfig, smoke, ["stage4.split=val"]).stage4.split == "val"
    with pytest.raises(ConfigError, match="stage4.split: 'train' or 'val'"):
        load_config(TrainConfig, smoke, ["stage4.split=test"])
    assert load_config(TrainConfig, smoke, []).stage4.baseline == "greedy"
    assert load_config(TrainConfig, smoke, ["stage4.baseline=constrained"]).stage4.baseline == "constrained"
    with pytest.raises(ConfigError, match="stage4.baseline: 'greedy' or 'constrained'"):
        load_config(TrainConfig, smoke, ["stage4.baseline=median"])


def test_grpo_lora_dropout_and_checkpointing_in_the_stage4_config():
    from must.config import load_config
    from stages.common import lora_config
    from stages.config import TrainConfig
    from tests.conftest import ROOT

    smoke = ROOT / "configs" / "stages" / "smoke.yaml"
    st = load_config(TrainConfig, smoke, ["stage4.lora_dropout=0.0"]).stage4
    assert st.lora_dropout == 0.0 and load_config(TrainConfig, smoke, []).stage4.lora_dropout == 0.05
    assert lora_config("must", st.lora_r, st.lora_alpha, st.lora_dropout).lora_dropout == 0.0
    assert st.gradient_checkpointing is False  # TRL's default is True; MusT-small does not need it


def test_resume_point_skips_a_checkpoint_killed_while_saving(tmp_path):
    from stages.common import resume_point

    assert resume_point(tmp_path) is None
    ck = tmp_path / "checkpoints"
    for step, state in ((2, '{"global_step": 2}'), (4, None), (6, '{"global_st')):  # 4: no state yet; 6: truncated
        (ck / f"checkpoint-{step}").mkdir(parents=True)
        (ck / f"checkpoint-{step}" / "model.safetensors").write_bytes(b"x")
        if state is not None:
            (ck / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    (ck / "checkpoint-10").write_text("not a folder")
    assert resume_point(tmp_path) == str(ck / "checkpoint-2")
    assert sorted(x.name for x in ck.iterdir()) == ["checkpoint-10", "checkpoint-2"]  # the incomplete ones are removed
    (ck / "checkpoint-12").mkdir()
    (ck / "checkpoint-12" / "trainer_state.json").write_text('{"global_step": 12}')
    assert resume_point(tmp_path) == str(ck / "checkpoint-12")  # by step number, not name order


def test_stage3_teaches_tad_the_fullest_description_unless_told_to_use_the_reference():
    from types import SimpleNamespace

    from must.config import ConfigError, load_config
    from stages.config import SFTStage, TrainConfig
    from stages.data import TrainData
    from stages.stage3_sft import sft_target
    from tests.conftest import ROOT

    row = {"track_id": "t", "task": "TAD", "answer": "Here the drums come in.",
           "events": json.dumps([{"time": 4.0, "kind": "enter", "source": "drums"}])}
    data = SimpleNamespace(annotation=lambda track_id: ann())
    full = TrainData._full_description(data, row)
    assert full == "The drums enter, adding a steady beat, while the piano keeps playing."
    assert TrainData._full_description(data, {**row, "events": "[]"}) == "Here the drums come in."  # nothing to describe
    example = {"task": "TAD", "answer": row["answer"], "reasoned": row["answer"], "full": full}
    assert sft_target(example, SFTStage()) == full
    assert sft_target(example, SFTStage(tad_target="reference")) == "Here the drums come in."
    ltr = {"task": "LTR", "answer": "C", "reasoned": "The drums enter. Answer: C", "full": "C"}
    assert sft_target(ltr, SFTStage()) == "The drums enter. Answer: C"
    assert sft_target(ltr, SFTStage(reasoning=False)) == "C"
    with pytest.raises(ConfigError, match="stage3.tad_target: 'full' or 'reference'"):
        load_config(TrainConfig, ROOT / "configs" / "stages" / "smoke.yaml", ["stage3.tad_target=longest"])


def test_stage1_validation_reads_every_val_track_unless_told_how_many():
    from types import SimpleNamespace

    import pandas as pd
    import torch

    from must.model import MusTConfig
    from stages.data import SOURCES
    from stages.stage1_encoder import frame_f1

    config = MusTConfig(sources=SOURCES)
    # 25 val tracks of 10 s: drums in every one, piano only in the last, as the first 20 of a split can miss a source
    anns = []
    for i in range(25):
        a = TrackAnnotation(f"t{i}", 10.0, [Source("drums", "drums")], activity={"drums": [(2.0, 6.0)]})
        if i == 24:
            a.activity["piano"] = [(0.0, 5.0)]
        anns.append(a)

    def encode_audio(y):
        """Heads that hear exactly what the annotation says (frames at 10 Hz, activity from column 2)."""
        a = anns[int(y[0])]
        out = torch.zeros(100, config.encoder_dim + config.n_heads_out)
        for s, spans in a.activity.items():
            for start, end in spans:
                out[int(start * 10) : int(end * 10), config.encoder_dim + 2 + SOURCES.index(s)] = 1.0
        return out

    data = SimpleNamespace(tracks=lambda split: pd.DataFrame([{"track_id": f"t{i}", "audio": "", "duration": 10.0}
                                                              for i in range(25)]),
                           annotation=lambda tid: anns[int(tid[1:])], wave=lambda tid, audio: np.full(4, int(tid[1:])))
    model = SimpleNamespace(model=SimpleNamespace(encoder=SimpleNamespace(config=config)), encode_audio=encode_audio)
    every = frame_f1(model, data)
    assert every["val_activity_f1"] == 1.0 and every["val_recall/piano"] == 1.0 and every["val_recall/drums"] == 1.0
    first = frame_f1(model, data, n_tracks=20)
    assert "val_recall/piano" not in first and first["val_recall/drums"] == 1.0


def test_autocast_config_takes_null_auto_or_a_dtype():
    from must.config import ConfigError, load_config
    from stages.config import TrainConfig
    from tests.conftest import ROOT

    smoke = ROOT / "configs" / "stages" / "smoke.yaml"
    assert load_config(TrainConfig, smoke, ["stage1.autocast=bfloat16"]).stage1.autocast == "bfloat16"
    assert load_config(TrainConfig, smoke, ["stage3.autocast=auto"]).stage3.autocast == "auto"
    with pytest.raises(ConfigError, match="stage2.autocast: null, 'auto', 'bfloat16' or 'float16', got 'fp8'"):
        load_config(TrainConfig, smoke, ["stage2.autocast=fp8"])


def test_autocast_auto_is_bfloat16_only_where_the_device_computes_it_natively(monkeypatch):
    import torch

    from stages.common import autocast_dtype

    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512": True, "avx512_bf16": False, "amx_bf16": False})
    assert autocast_dtype("auto", cpu) is None  # emulated bfloat16 is slower than float32
    assert autocast_dtype("bfloat16", cpu) is torch.bfloat16  # asked for by name: as asked
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512": True, "avx512_bf16": True})
    assert autocast_dtype("auto", cpu) is torch.bfloat16
    assert autocast_dtype(None, cpu) is None and autocast_dtype("float16", cpu) is torch.float16
    assert autocast_dtype("auto", torch.device("mps")) is None


def test_stage_trainer_autocasts_the_loss_pass_and_keeps_float32_weights(tmp_path):
    import torch
    from transformers import TrainingArguments

    from stages.common import StageTrainer

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.seen = torch.nn.Linear(4, 1), []

        def forward(self, x, y):
            out = self.lin(x)
            self.seen.append(out.dtype)
            return {"loss": torch.nn.functional.mse_loss(out.float().squeeze(-1), y)}

    data = [{"x": torch.full((4,), float(i)), "y": torch.tensor(1.0)} for i in range(4)]
    for setting, dtype in ((None, torch.float32), ("bfloat16", torch.bfloat16)):
        model = Probe()
        before = model.lin.weight.detach().clone()
        args = TrainingArguments(output_dir=str(tmp_path / str(setting)), max_steps=2, per_device_train_batch_size=2,
                                 learning_rate=0.1, use_cpu=True, report_to=[], save_strategy="no",
                                 remove_unused_columns=False, disable_tqdm=True)
        StageTrainer(model=model, args=args, train_dataset=data, autocast=setting).train()
        assert model.seen == [dtype, dtype], setting
        assert model.lin.weight.dtype == torch.float32 and not torch.equal(model.lin.weight, before)


def test_encoder_objective_under_bf16_autocast_keeps_its_loss_in_float32():
    import torch

    from must.model.configuration import MusTConfig
    from must.model.modeling import MusicEncoder

    torch.manual_seed(0)
    cfg = MusTConfig(sources=["piano", "drums"], encoder_dim=32, encoder_layers=1, encoder_heads=2, encoder_channels=8,
                     pace_head=True)
    objective = EncoderObjective(MusicEncoder(cfg), 2, 0.5, 1.0, 10.0)
    frames = 10
    batch = dict(mel=torch.randn(2, cfg.n_mels, 101), offset=torch.tensor([0.0, 30.0]),
                 transition=torch.rand(2, frames), activity=(torch.rand(2, frames, 2) > 0.5).float(),
                 rhythm=torch.rand(2, frames), amuse=(torch.rand(2, frames, 2) > 0.5).float(),
                 tempo=torch.rand(2, frames), mask=torch.ones(2, frames), pace=torch.rand(2, frames))
    with torch.no_grad():
        plain = objective(**batch)["loss"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = objective(**batch)["loss"]
    assert mixed.dtype == torch.float32
    assert float(mixed) != float(plain)  # the encoder did run in bfloat16
    assert abs(float(mixed - plain)) < 0.02 * float(plain)


def test_features_encode_each_track_once_per_thread_as_one_thread_would(tiny_bench, tmp_path):
    """Stage 2's feature cache encodes tracks on a thread each (one intra-op thread apiece): the cached features are
    the model's ``encode_audio`` of each track's audio to the bit, a second call reads them back without encoding,
    and torch's thread count is restored."""
    import torch

    from must.model import MusTConfig, MusTForCausalLM
    from stages.data import TrainData

    torch.manual_seed(0)
    model = MusTForCausalLM(MusTConfig(encoder_dim=16, encoder_layers=1, encoder_channels=4, sources=["piano"],
                                       text_config=dict(vocab_size=64, hidden_size=16, intermediate_size=32,
                                                        num_hidden_layers=1, num_attention_heads=2))).eval()
    data = TrainData(str(tiny_bench), tmp_path)
    tracks = data.tracks("train")
    for r in tracks.to_dict("records"):
        data.wave(r["track_id"], r["audio"])  # cached, as stage 1 leaves them
    threads = torch.get_num_threads()
    got = data.features(model, "t", tracks)
    assert torch.get_num_threads() == threads and len(got) == len(tracks) >= 2
    for r in tracks.to_dict("records"):
        assert torch.equal(got[r["track_id"]], model.encode_audio(data.wave(r["track_id"], r["audio"])))
    calls = []
    model.encode_audio = lambda w: calls.append(w)
    again = data.features(model, "t", tracks)
    assert not calls and all(torch.equal(again[k], got[k]) for k in got)
