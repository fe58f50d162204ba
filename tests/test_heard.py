"""What the heads heard, as text: decoding activity runs and loudness steps from encoder features, and the prompt."""

from types import SimpleNamespace

import numpy as np
import torch

from must.model import MusTConfig, MusTProcessor
from must.model.heard import activity_runs, heard_events, heard_for, heard_regions, heard_text, region_seconds

FR = 10  # frames per second


def _features(config: MusTConfig, seconds: int = 30) -> torch.Tensor:
    """30 s at 10 Hz: the piano plays throughout; the drums play 5–15 s with a 0.5 s dip at 10 s (bridged) and a
    0.5 s blip at 20 s (too short); the mix is 20 dB louder from 20 s on; spectral flux is constant."""
    n, enc = seconds * FR, config.encoder_dim
    f = torch.zeros(n, config.feature_dim)
    act = enc + 2  # heads: transition, rhythm change, then one activity head per source
    f[:, act + 0] = 1.0
    f[50:150, act + 1] = 0.9
    f[100:105, act + 1] = 0.1
    f[200:205, act + 1] = 0.9
    f[:, -2] = torch.where(torch.arange(n) < 200, -2.0, 0.0)  # log10 mean power
    f[:, -1] = 1.0
    return f


def _config(**kw) -> MusTConfig:
    return MusTConfig(sources=["piano", "drums"], encoder_dim=4, **kw)


def test_activity_runs_bridge_short_gaps_and_drop_short_runs():
    mask = np.zeros(100, bool)
    mask[5:35] = mask[40:60] = True  # 0.5-3.5 s and 4.0-6.0 s: a 0.5 s gap
    mask[80:85] = True  # 0.5 s
    assert activity_runs(mask, FR, bridge=1.0, min_run=1.0) == [(0.5, 6.0)]
    assert activity_runs(mask, FR, bridge=0.4, min_run=1.0) == [(0.5, 3.5), (4.0, 6.0)]
    assert activity_runs(mask, FR, bridge=0.4, min_run=0.4) == [(0.5, 3.5), (4.0, 6.0), (8.0, 8.5)]
    assert activity_runs(np.zeros(10, bool), FR, 1.0, 1.0) == []


def test_heard_events_are_first_entries_last_exits_and_loudness_steps():
    cfg = _config()
    events = heard_events(_features(cfg), cfg)
    got = [(e.time, e.kind, e.source) for e in events]
    # the piano plays to the end, so it never stops; the 20 dB step is found where the means either side differ most
    assert got == [(0.0, "enter", "piano"), (5.0, "enter", "drums"), (15.0, "exit", "drums"), (20.0, "dynamic_change", None)]
    assert events[-1].detail == {"direction": "louder", "db": 20.0}


def test_heard_regions_put_high_intensity_after_the_step_and_low_before():
    cfg = _config()
    # 0.5 s hops: amplitude 0.1 for hops 0-39 and 1.0 for 40-59, flux constant; the 4 s mean over hops i-4 … i+3 is
    # exactly 1.0 from hop 44 on and 0.1 up to hop 36. Both thresholds tighten (the regions may cover 18 % of the
    # 60 hops) until only those plateaus remain; hop i spans i*0.5 … i*0.5 + 0.5, clipped to the active 0.0-29.9 s
    assert heard_regions(_features(cfg), cfg) == {"highest": [(22.0, 29.9)], "lowest": [(0.0, 18.5)]}


def test_heard_regions_read_the_pace_head_when_the_encoder_has_one():
    from must.model.pace import pace_target

    cfg = _config(pace_head=True)
    f = _features(cfg)
    f[:, -2] = -2.0  # constant loudness and flux: only the pace head varies
    f[:, cfg.encoder_dim + cfg.pace_index] = float(pace_target(np.array(1.0)))
    f[100:160, cfg.encoder_dim + cfg.pace_index] = float(pace_target(np.array(8.0)))  # 10-16 s
    # 0.5 s hops 20-31 have pace 8, the rest 1; the 4 s mean over hops i-4 … i+3 with m busy hops is 1 + 7m/8,
    # within 15 % of the range below the top (6.95) for m ≥ 7: hops 23-29, 11.5-15.0 s (3.5 s, the only run, kept);
    # the bottom (m = 0) is hops 0-16 and 36-59, clipped to the active 0.0-29.9 s
    assert heard_regions(f, cfg) == {"highest": [(11.5, 15.0)], "lowest": [(0.0, 8.5), (18.0, 29.9)]}
    # per second, the share inside each: 11.5-15.0 covers half of second 11 and all of 12-14
    shares = region_seconds(f, cfg, 30)
    assert np.allclose(shares[:, 0], [0] * 11 + [0.5, 1, 1, 1] + [0] * 15)
    assert np.allclose(shares[:, 1], [1] * 8 + [0.5] + [0] * 9 + [1] * 11 + [0.9])


def test_heard_text_phrases_events_as_options_and_regions_as_intervals():
    cfg = _config()
    parts = heard_text(_features(cfg), cfg).split(" ; ")
    assert parts[:4] == ["0:00 the piano enters", "0:05 the drums enter", "0:15 the drums stop", "0:20 the music gets louder"]
    assert parts[4].startswith("highest intensity 0:2") and parts[5].startswith("lowest intensity 0:")


def test_heard_for_follows_the_config_and_the_prompt_carries_it():
    feats = _features(_config())
    assert heard_for(SimpleNamespace(config=_config()), feats) is None
    assert heard_for(SimpleNamespace(config=_config(heard_events=True)), None) is None
    heard = heard_for(SimpleNamespace(config=_config(heard_events=True)), feats)
    assert heard.startswith("0:00 the piano enters ;")
    proc = MusTProcessor.build(["When does the piano first start to play?"], max_seconds=60)
    prompt = proc.prompt("When?", 3.0, heard=heard)
    assert "<|audio_eos|> heard : 0:00 the piano enters ;" in prompt and prompt.endswith("<|im_start|> assistant")
    assert proc.prompt("When?", 3.0) == proc.prompt("When?", 3.0, heard=None)
    assert proc.tokenizer.unk_token_id not in proc.tokenizer("heard : ;")["input_ids"]


def test_heard_events_flag_round_trips_through_the_config(tmp_path):
    _config(heard_events=True).save_pretrained(tmp_path)
    assert MusTConfig.from_pretrained(tmp_path).heard_events is True
    assert MusTConfig().heard_events is False


def test_heard_readout_answers_each_task_from_the_events():
    from must.annotation import Event
    from must.models.heard_model import answer_from_heard

    events = [Event(0.0, "enter", "piano"), Event(5.0, "enter", "drums"), Event(15.0, "exit", "drums"),
              Event(20.0, "dynamic_change", None, {"direction": "louder", "db": 20.0})]
    regions = {"highest": [(21.0, 30.0)], "lowest": [(2.0, 8.0)]}
    assert answer_from_heard("TSG", "When does the drums first start to play?", "onset", events, regions) == "0:05"
    assert answer_from_heard("TSG", "When does the drums finally stop playing?", "offset", events, regions) == "0:15"
    assert answer_from_heard("TSG", "When does the tuba first start to play?", "onset", events, regions) == ""
    assert answer_from_heard("MTR", "When is(are) the most intense part(s) of this piece?", None, events, regions) == "0:21-0:30"
    ltr = ("Which option best describes what changes at {t}?\n\nA: The drums enter and the music gets louder\n"
           "B: The drums stop\nC: The piano stops\nD: No noticeable change")
    assert answer_from_heard("LTR", ltr.format(t="0:16"), None, events, regions) == "B"  # 1 s from the exit
    assert answer_from_heard("LTR", ltr.format(t="0:20"), None, events, regions) == "A"  # one of its two clauses
    assert answer_from_heard("LTR", ltr.format(t="0:10"), None, events, regions) == "D"  # nothing heard near 0:10
    gto = ("The following musical changes occur in this piece:\n(X) The music gets louder\n(Y) The drums enter\n"
           "(Z) The drums stop\n\nWhich of the following options represents the correct chronological order?\n"
           "A: (X) → (Y) → (Z)\nB: (X) → (Z) → (Y)\nC: (Y) → (X) → (Z)\nD: (Y) → (Z) → (X)\nE: (Z) → (X) → (Y)\n"
           "F: (Z) → (Y) → (X)")
    assert answer_from_heard("GTO", gto, None, events, regions) == "D"  # drums enter 0:05, stop 0:15, louder 0:20
