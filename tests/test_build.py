"""Building a benchmark end to end: outputs, columns, determinism, resume, real audio."""

import json
import shutil

import datasets
import pandas as pd
import pytest

from bench.annotate.jams_io import read_jams
from bench.build.config import BuildConfig
from bench.build.pipeline import build
from bench.build.real import discover
from bench.io import load_bench
from must.config import ConfigError, load_config
from must.schema import MUSTBENCH_COLUMNS
from tests.conftest import ROOT


def test_outputs_and_columns(tiny_bench):
    files = sorted((tiny_bench / "parquet").glob("*.parquet"))
    assert [f.stem for f in files] == ["test", "train", "val"]
    df = pd.concat([pd.read_parquet(f) for f in files])
    assert list(df.columns[: len(MUSTBENCH_COLUMNS)]) == MUSTBENCH_COLUMNS
    assert {"TSG", "LTR", "TAD", "GTO", "MTR", "AVQA"} <= set(df.task)
    assert df.id.is_unique
    assert (df.groupby("track_id").split.nunique() == 1).all()
    assert len(list((tiny_bench / "jams").glob("*.jams"))) == 6
    assert all((tiny_bench / a).exists() for a in df.audio)
    q = datasets.load_from_disk(str(tiny_bench / "hf" / "questions"))
    t = datasets.load_from_disk(str(tiny_bench / "hf" / "tracks"))
    assert sum(len(v) for v in q.values()) == len(df)
    assert isinstance(t["test"].features["audio"], datasets.Audio)
    summary = json.loads((tiny_bench / "summary.json").read_text())
    assert summary["items"] == len(df) and summary["tracks"] == 6 and not summary["failures"]
    assert (tiny_bench / "summary.md").read_text().startswith("# Benchmark `tiny`")


def test_answers_agree_with_jams(tiny_bench):
    from must.timecode import parse_time

    bench = load_bench(tiny_bench, "all")
    for row in bench[bench.task == "TSG"].itertuples():
        ann = read_jams(tiny_bench / "jams" / f"{row.track_id}.jams")
        src = json.loads(row.events)[0]["source"]
        truth = ann.entry(src) if row.qa_type == "onset" else ann.exit(src)
        assert abs(parse_time(row.answer) - truth) <= 0.5


def test_rebuild_is_identical_and_resumes(tiny_bench, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(tiny_bench, out)
    # simulate a kill: two tracks unfinished, outputs gone
    for rec in sorted((out / "tracks").glob("*.json"))[:2]:
        rec.unlink()
    shutil.rmtree(out / "parquet")
    cfg = load_config(BuildConfig, ROOT / "configs" / "bench" / "small.yaml",
                      ["name=tiny", "tracks=6", "workers=1", "compose.min_seconds=40", "compose.max_seconds=60",
                       "splits={train: 0.34, val: 0.16, test: 0.5}"])
    build(cfg, out, progress=False)
    for split in ("train", "val", "test"):
        a = pd.read_parquet(tiny_bench / "parquet" / f"{split}.parquet")
        b = pd.read_parquet(out / "parquet" / f"{split}.parquet")
        pd.testing.assert_frame_equal(a, b)


def test_different_config_in_same_dir_is_refused(tiny_bench):
    cfg = BuildConfig(name="other", tracks=1)
    with pytest.raises(ValueError, match="different config"):
        build(cfg, tiny_bench, progress=False)


def test_config_errors_are_loud(tmp_path):
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(BuildConfig, ROOT / "configs" / "bench" / "small.yaml", ["trakcs=3"])
    with pytest.raises(ConfigError, match="compose: unknown key"):
        load_config(BuildConfig, ROOT / "configs" / "bench" / "small.yaml", ["compose.max_secs=3"])
    with pytest.raises(ConfigError, match="expected int"):
        load_config(BuildConfig, ROOT / "configs" / "bench" / "small.yaml", ["tracks=many"])


def test_missing_soundfont_is_one_error_before_any_track(tmp_path):
    out = tmp_path / "bench"
    cfg = BuildConfig(name="nofont", tracks=3, soundfont=str(tmp_path / "FluidR3_GM.sf2"))
    with pytest.raises(FileNotFoundError, match="soundfont not found: .*FluidR3_GM.sf2 .*fluid-soundfont-gm"):
        build(cfg, out, progress=False)
    # nothing was attempted: no track directory and no failures recorded
    assert not (out / "tracks").exists() and not (out / "failures.json").exists()


def _write_real_folder(root, tiny_bench):
    """Real-audio layouts made from rendered files: plain + stems folder, Slakh-like, and one bad file."""
    import numpy as np
    import soundfile as sf

    from bench.synth.compose import ComposeConfig, compose
    from bench.synth.render import render_stems

    root.mkdir()
    p = compose(11, ComposeConfig(min_seconds=30, max_seconds=40))
    mix, stems = render_stems(p)
    sf.write(root / "song.wav", mix, 22050)
    (root / "song").mkdir()
    for name, y in stems.items():
        sf.write(root / "song" / f"{name}.wav", y, 22050)
    slakh = root / "Track00001"
    (slakh / "stems").mkdir(parents=True)
    sf.write(slakh / "mix.flac", mix, 22050)
    meta = {"stems": {}}
    for k, (name, y) in enumerate(stems.items()):
        sf.write(slakh / "stems" / f"S{k:02d}.flac", y, 22050)
        meta["stems"][f"S{k:02d}"] = {"inst_class": name}
    import yaml

    (slakh / "metadata.yaml").write_text(yaml.safe_dump(meta))
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    sf.write(root / "silence.wav", np.zeros(22050 * 5, dtype=np.float32), 22050)


def test_real_audio_folder(tmp_path, tiny_bench):
    src = tmp_path / "real"
    _write_real_folder(src, tiny_bench)
    found = {t.track_id: t for t in discover(src)}
    assert set(found) == {"song", "Track00001", "broken", "silence"}
    assert set(found["Track00001"].stems) == set(found["song"].stems)
    cfg = BuildConfig(name="real", workers=1, splits={"train": 0.0, "val": 0.0, "test": 1.0})
    summary = build(cfg, tmp_path / "out", src, progress=False)
    assert set(summary["failures"]) == {"broken", "silence"}
    assert "unreadable" in summary["failures"]["broken"] and "silent" in summary["failures"]["silence"]
    bench = load_bench(tmp_path / "out")
    assert set(bench.track_id) == {"song", "Track00001"}
    ann = read_jams(tmp_path / "out" / "jams" / "song.jams")
    assert ann.provenance["segment_sources"] == "stems"
    assert {s.name for s in ann.sources} <= set(found["song"].stems)
    # a redraft of real audio drafts each track with its id's seed, as the build did; failures stay listed
    from bench.build.pipeline import redraft

    before = pd.read_parquet(tmp_path / "out" / "parquet" / "test.parquet")
    for rec in (tmp_path / "out" / "tracks").glob("*.json"):  # as written before the seed was kept
        rec.write_text(json.dumps({k: v for k, v in json.loads(rec.read_text()).items() if k != "seed"}))
    again = redraft(cfg, tmp_path / "out", progress=False)
    pd.testing.assert_frame_equal(before, pd.read_parquet(tmp_path / "out" / "parquet" / "test.parquet"))
    assert set(again["failures"]) == {"broken", "silence"}


def test_row_events_reads_json_text_lists_and_arrays_and_missing_as_empty():
    import numpy as np

    from must.schema import row_events

    one = {"time": 4.0, "kind": "enter", "source": "drums"}
    assert row_events('[{"time": 4.0, "kind": "enter", "source": "drums"}]') == [one]
    assert row_events([one]) == [one] and row_events(np.array([one], dtype=object)) == [one]
    assert row_events(None) == row_events(float("nan")) == row_events("") == row_events("  ") == row_events([]) == []


def _tiny_cfg(*more: str) -> BuildConfig:
    return load_config(BuildConfig, ROOT / "configs" / "bench" / "small.yaml",
                       ["name=tiny", "tracks=6", "workers=1", "compose.min_seconds=40", "compose.max_seconds=60",
                        "splits={train: 0.34, val: 0.16, test: 0.5}", *more])


def test_redraft_reproduces_the_build_and_a_new_task_config_changes_only_the_questions(tiny_bench, tmp_path, monkeypatch):
    import bench.build.tracks as tracks
    from bench.build.pipeline import redraft

    def no_audio_work(*a, **k):
        raise AssertionError("a redraft must not render or annotate audio")

    monkeypatch.setattr(tracks, "render_stems", no_audio_work)
    monkeypatch.setattr(tracks, "annotate_render", no_audio_work)
    out = tmp_path / "copy"
    shutil.copytree(tiny_bench, out)
    first = sorted((out / "tracks").glob("*.json"))[0]
    legacy = json.loads(first.read_text())
    del legacy["seed"]  # records written before the seed was kept: derived from the track's index
    first.write_text(json.dumps(legacy))
    audio = {p: p.stat().st_mtime_ns for p in (out / "audio").iterdir()}

    redraft(_tiny_cfg(), out, progress=False)
    for split in ("train", "val", "test"):
        pd.testing.assert_frame_equal(pd.read_parquet(tiny_bench / "parquet" / f"{split}.parquet"),
                                      pd.read_parquet(out / "parquet" / f"{split}.parquet"))

    fewer = "tasks.per_track={TSG: 1, LTR: 0, TAD: 0, GTO: 0, MTR: 1, AVQA: 0}"
    summary = redraft(_tiny_cfg(fewer), out, progress=False)
    df = pd.concat([load_bench(out, split) for split in ("train", "val", "test")])
    assert set(df.task) == {"TSG", "MTR"} and df.groupby("track_id").size().max() <= 2
    assert summary["items"] == len(df) and {p: p.stat().st_mtime_ns for p in (out / "audio").iterdir()} == audio
    with pytest.raises(ValueError, match="different config"):  # the folder now holds the redrafted build
        build(_tiny_cfg(), out, progress=False)
    (out / "redraft.partial").touch()  # as a redraft killed halfway leaves it
    with pytest.raises(ValueError, match="redraft was interrupted"):
        build(_tiny_cfg(fewer), out, progress=False)
    redraft(_tiny_cfg(fewer), out, progress=False)
    assert not (out / "redraft.partial").exists()
    with pytest.raises(ValueError, match="compose"):
        redraft(_tiny_cfg(fewer, "compose.max_seconds=50"), out, progress=False)
    (out / "failures.json").unlink()  # as a build killed before its outputs leaves it
    with pytest.raises(ValueError, match="did not finish"):
        redraft(_tiny_cfg(), out, progress=False)
    with pytest.raises(FileNotFoundError, match="build it first"):
        redraft(_tiny_cfg(), tmp_path / "nothing", progress=False)
