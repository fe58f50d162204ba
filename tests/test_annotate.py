"""Annotation: Amuse rhythm on click tracks, stem activity, intensity regions, truth, JAMS round trip."""

import json

import numpy as np
import pytest

from bench.annotate.intensity import intensity_curve, intensity_regions, onset_density, windowed_rms
from bench.annotate.jams_io import read_jams, write_jams
from bench.annotate.rhythm import RhythmConfig, amuse_rhythm
from bench.annotate.sources import HPSSBandSeparator, segment_sources, stem_activity
from bench.annotate.transitions import dynamic_change_events, group_moments, tempo_change_events
from bench.annotate.truth import annotate_render, note_activity
from bench.synth.compose import ComposeConfig, compose
from bench.synth.render import render_stems
from must.annotation import Event

SR = 22050


def clicks(bpms_and_seconds, sr=SR):
    """A click track: (bpm, seconds) pieces."""
    out = []
    for bpm, secs in bpms_and_seconds:
        y = np.zeros(int(secs * sr), dtype=np.float32)
        for t in np.arange(0, secs, 60 / bpm):
            i = int(t * sr)
            y[i : i + 200] += np.hanning(400)[200:] * np.sin(2 * np.pi * 1000 * np.arange(200) / sr)
        out.append(y)
    return np.concatenate(out)


def test_amuse_paper_variant_flags_the_tempo_change():
    y = clicks([(100, 18), (150, 18)])
    r = amuse_rhythm(y, SR, RhythmConfig.named("paper"))
    assert r.starts == [0.0, 6.0, 12.0, 18.0, 24.0, 30.0]
    assert r.tempos[:3] == pytest.approx([100] * 3, rel=0.05)
    assert r.tempos[3:] == pytest.approx([150] * 3, rel=0.05)
    assert r.changes == [False, False, False, True, False, False]
    assert r.change_times() == [18.0]


def test_amuse_code_variant_segments_and_span():
    y = clicks([(120, 70)])
    r = amuse_rhythm(y, SR, RhythmConfig.named("code"))
    assert (r.segment_seconds, r.threshold, r.sample_rate) == (3.0, 0.3, 32000)
    assert len(r.starts) == 20 and r.starts[-1] == 57.0  # 3 s segments over the first 60 s only
    assert not any(r.changes)


def test_unknown_variant():
    with pytest.raises(ValueError, match="unknown Amuse rhythm variant"):
        RhythmConfig.named("nope")


def test_stem_activity_by_hand():
    t = np.arange(10 * SR) / SR
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    tone[: 2 * SR] = 0  # silent 0-2 s
    tone[6 * SR :] = 0  # silent from 6 s
    spans = stem_activity({"a": tone}, SR)["a"]
    assert len(spans) == 1
    assert spans[0][0] == pytest.approx(2.0, abs=0.15) and spans[0][1] == pytest.approx(6.0, abs=0.15)
    seg = segment_sources({"a": spans}, [0.0, 3.0, 6.0], 3.0, 10.0)
    assert [names for _, _, names in seg] == [["a"], ["a"], []]  # 0-3: active 1 s of 3 = 0.33 ≥ 0.3


def test_intensity_regions_by_hand():
    times = np.arange(0, 100, 0.5)
    curve = np.full(len(times), 0.5)
    curve[(times >= 40) & (times < 50)] = 1.0  # the peak: 40-50 s
    curve[(times >= 10) & (times < 20)] = 0.1  # the trough: 10-20 s
    assert intensity_regions(times, curve, (0, 100), "highest") == [(39.75, 49.75)]
    assert intensity_regions(times, curve, (0, 100), "lowest") == [(9.75, 19.75)]
    with pytest.raises(ValueError):
        intensity_regions(times, curve, (0, 100), "middle")


def test_intensity_regions_never_cover_most_of_the_piece():
    times = np.arange(0, 100, 0.5)
    curve = np.linspace(0, 1, len(times))  # no plateau: the threshold tightens until ≤ 18 %
    (start, end), = intensity_regions(times, curve, (0, 100), "highest")
    assert end == pytest.approx(99.75) and (end - start) <= 18.5


def test_curve_components():
    sr = 1000
    y = np.concatenate([np.zeros(2000), np.ones(2000)]).astype(np.float32)
    rms = windowed_rms(y, sr, np.array([1.0, 3.0]), window=1.0)
    assert rms.tolist() == [0.0, 1.0]
    assert onset_density(np.array([0.1, 0.2, 5.0]), np.array([0.5, 5.0]), window=2.0).tolist() == [1.0, 0.5]
    c = intensity_curve(np.array([1.0, 2.0]), np.array([2.0, 2.0]), np.array([100.0, 50.0]), smooth=0.5)
    assert c.tolist() == [0.5, 0.5]


def test_transitions_helpers():
    assert [(e.time, e.detail) for e in tempo_change_events([(0.0, 100.0), (10.0, 103.0), (20.0, 150.0)])] == [
        (20.0, {"from": 103.0, "to": 150.0})]
    moments = group_moments([Event(10.0, "enter", "a"), Event(10.5, "tempo_change", None, {"from": 1, "to": 2}),
                             Event(30.0, "exit", "a")])
    assert [len(m) for m in moments] == [2, 1]
    times = np.arange(0, 60, 0.5)
    db = np.where(times < 30, -30.0, -18.0)
    ev = dynamic_change_events(times, db)
    assert len(ev) == 1 and ev[0].time == 30.0 and ev[0].detail["direction"] == "louder" and ev[0].detail["db"] == 12.0


def test_render_truth_matches_the_score():
    p = compose(5, ComposeConfig(min_seconds=30, max_seconds=45))
    mix, stems = render_stems(p)
    ann = annotate_render("t", p, mix, stems, SR)
    for part in p.parts:
        assert ann.entry(part.voice.name) == pytest.approx(part.notes[0][0], abs=1e-3)
        assert ann.activity[part.voice.name] == note_activity(part.notes)
    tempo_events = [e for e in ann.transitions if e.kind == "tempo_change"]
    boundaries = [(b.start, a.bpm, b.bpm) for a, b in zip(p.sections, p.sections[1:]) if abs(a.bpm - b.bpm) / a.bpm >= 0.1]
    assert [(round(e.time, 3), e.detail["from"], e.detail["to"]) for e in tempo_events] == [
        (round(t, 3), round(a, 1), round(b, 1)) for t, a, b in boundaries]
    dyn = [e.time for e in ann.transitions if e.kind == "dynamic_change"]
    assert dyn == [round(b.start, 3) for a, b in zip(p.sections, p.sections[1:]) if abs(a.level - b.level) >= 2]
    assert ann.regions["highest"] and ann.regions["lowest"]


def test_jams_round_trip(tmp_path):
    p = compose(2, ComposeConfig(min_seconds=30, max_seconds=40))
    mix, stems = render_stems(p)
    ann = annotate_render("trk", p, mix, stems, SR)
    write_jams(ann, tmp_path / "a.jams")
    back = read_jams(tmp_path / "a.jams")
    assert back.to_dict() == ann.to_dict()
    # in order too: the sources' order decides what a TAD reference says "keeps playing"
    assert json.dumps(back.to_dict()) == json.dumps(ann.to_dict())
    assert list(back.activity) == [s.name for s in ann.sources] != sorted(back.activity, key=lambda n: back.entry(n))


def test_hpss_separator_splits_percussion_from_tone():
    t = np.arange(4 * SR) / SR
    tone = 0.3 * np.sin(2 * np.pi * 880 * t)
    noise_bursts = np.zeros_like(t)
    for k in range(8):
        i = int(k * 0.5 * SR)
        noise_bursts[i : i + 400] = np.random.default_rng(k).normal(0, 0.5, 400)
    parts = HPSSBandSeparator().separate((tone + noise_bursts).astype(np.float32), SR)
    energy = {k: float(np.mean(v ** 2)) for k, v in parts.items()}
    assert energy["other"] > energy["bass"]  # an 880 Hz tone is not bass
    corr_tone = np.corrcoef(parts["other"], tone)[0, 1]
    assert corr_tone > 0.9


def test_tempo_at_and_tempo_curve_give_the_last_tempo_started():
    from must.annotation import TrackAnnotation

    ann = TrackAnnotation("t", 60.0, [])
    ann.tempo = [(5.0, 100), (20.0, 140.5)]
    assert [ann.tempo_at(t) for t in (0.0, 5.0, 19.9, 20.0, 59.0)] == [None, 100.0, 100.0, 140.5, 140.5]
    curve = ann.tempo_curve(np.array([0.0, 5.0, 19.9, 20.0]))
    assert np.isnan(curve[0]) and curve[1:].tolist() == [100.0, 100.0, 140.5]
    assert ann.tempo_curve([0.0, 30.0], default=120.0).tolist() == [120.0, 140.5]
