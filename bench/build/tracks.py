"""Per-track build work (run in worker processes): audio → annotation → JAMS → question drafts.

Each finished track leaves ``tracks/<track_id>.json`` (annotation summary, drafts, timings); a build
that is killed and rerun skips tracks whose record exists.
"""

from __future__ import annotations

import json
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from bench.annotate.estimate import annotate_audio
from bench.annotate.jams_io import read_foreign_jams, read_jams, write_jams
from bench.annotate.rhythm import RhythmConfig
from bench.annotate.truth import annotate_render
from bench.build.config import BuildConfig
from bench.build.real import RealTrack
from bench.synth.compose import compose
from bench.synth.render import render_stems
from bench.tasks.base import generate_drafts
from must.audio import AudioError, load_audio, write_audio

__all__ = ["track_seed", "synth_track_id", "build_synth_track", "build_real_track", "record_path", "read_record",
           "write_record", "redraft_track"]


def track_seed(cfg: BuildConfig, key: int | str) -> int:
    """The seed of one track, derived from the build seed and the track's index or id."""
    k = key if isinstance(key, int) else zlib.crc32(key.encode())
    return int(np.random.SeedSequence([cfg.seed, k]).generate_state(1)[0])


def synth_track_id(cfg: BuildConfig, index: int) -> str:
    """``<config name>-<index>``."""
    return f"{cfg.name}-{index:05d}"


def record_path(out: Path, track_id: str) -> Path:
    """Where a finished track's record lives."""
    return out / "tracks" / f"{track_id}.json"


def read_record(out: Path, track_id: str) -> dict[str, Any] | None:
    """A finished track's record, or ``None`` if absent or unreadable (then the track is rebuilt)."""
    p = record_path(out, track_id)
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _finish(out: Path, cfg: BuildConfig, ann, seed: int, audio_rel: str, timing: dict[str, float]) -> dict[str, Any]:
    t = time.perf_counter()
    write_jams(ann, out / "jams" / f"{ann.track_id}.jams")
    drafts = generate_drafts(ann, seed, cfg.tasks)
    timing["tasks"] = time.perf_counter() - t
    record = {"track_id": ann.track_id, "seed": seed, "audio": audio_rel, "duration": ann.duration,
              "sources": [s.name for s in ann.sources], "provenance": ann.provenance,
              "drafts": [d.to_dict() for d in drafts], "timing": timing}
    write_record(out, record)
    return record


def write_record(out: Path, record: dict[str, Any]) -> None:
    """Write a track's record atomically (a kill leaves the old record or the new one, never half of one)."""
    p = record_path(out, record["track_id"])
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".part")
    tmp.write_text(json.dumps(record))
    tmp.replace(p)


def redraft_track(out: Path, cfg: BuildConfig, record: dict[str, Any], synthetic: bool) -> dict[str, Any]:
    """Draft a built track's questions again from its JAMS under ``cfg.tasks`` (no audio is read or rendered) and
    rewrite its record; the draft seed is the one the build used."""
    t = time.perf_counter()
    track_id = record["track_id"]
    seed = record.get("seed")
    if seed is None:  # records written before the seed was kept
        seed = track_seed(cfg, int(track_id.rsplit("-", 1)[-1]) if synthetic else track_id)
    ann = read_jams(out / "jams" / f"{track_id}.jams")
    drafts = generate_drafts(ann, seed, cfg.tasks)
    record = {**record, "seed": seed, "drafts": [d.to_dict() for d in drafts],
              "timing": {**record.get("timing", {}), "tasks": time.perf_counter() - t}}
    write_record(out, record)
    return record


def build_synth_track(index: int, cfg: BuildConfig, out: Path) -> dict[str, Any]:
    """Compose, render, annotate and draft questions for synthetic track ``index``."""
    track_id = synth_track_id(cfg, index)
    seed = track_seed(cfg, index)
    t0 = time.perf_counter()
    piece = compose(seed, cfg.compose)
    mix, stems = render_stems(piece, cfg.sample_rate, cfg.soundfont)
    audio_rel = f"audio/{track_id}.{cfg.audio_format}"
    write_audio(out / audio_rel, mix, cfg.sample_rate)
    if cfg.keep_stems:
        for name, y in stems.items():
            write_audio(out / "stems" / track_id / f"{name.replace(' ', '_')}.{cfg.audio_format}", y, cfg.sample_rate)
    t1 = time.perf_counter()
    rhythm = RhythmConfig.named(cfg.rhythm)
    if cfg.truth == "exact":
        ann = annotate_render(track_id, piece, mix, stems, cfg.sample_rate, rhythm)
    else:
        ann = annotate_audio(track_id, mix, cfg.sample_rate, stems=stems, rhythm=rhythm)
    t2 = time.perf_counter()
    timing = {"render": t1 - t0, "annotate": t2 - t1, "audio_seconds": len(mix) / cfg.sample_rate}
    return _finish(out, cfg, ann, seed, audio_rel, timing)


def _load_stem(path: Path, sr: int, n: int) -> np.ndarray:
    y, _ = load_audio(path, sr)
    return np.pad(y, (0, max(0, n - len(y))))[:n]


def build_real_track(track: RealTrack, cfg: BuildConfig, out: Path) -> dict[str, Any]:
    """Read, annotate (keeping annotations that exist) and draft questions for one real track."""
    t0 = time.perf_counter()
    y, sr = load_audio(track.mix, cfg.sample_rate, max_seconds=cfg.max_seconds)
    if float(np.max(np.abs(y))) < 1e-4:
        raise AudioError(f"{track.mix}: audio is silent (peak below -80 dBFS); nothing to annotate")
    stems = {name: _load_stem(p, sr, len(y)) for name, p in track.stems.items()}
    audio_rel = f"audio/{track.track_id}.{cfg.audio_format}"
    write_audio(out / audio_rel, y, sr)
    t1 = time.perf_counter()
    own = None
    known: dict = {}
    if track.jams is not None:
        try:
            own = read_jams(track.jams) if "must_bench" in track.jams.read_text()[:200_000] else None
        except Exception:
            own = None
        if own is None:
            known = read_foreign_jams(track.jams)
    if own is not None:
        ann = own
        ann.track_id = track.track_id
        ann.provenance = {**ann.provenance, "source": "jams"}
    else:
        ann = annotate_audio(track.track_id, y, sr, stems or None, cfg.separator, RhythmConfig.named(cfg.rhythm), known)
    t2 = time.perf_counter()
    timing = {"render": t1 - t0, "annotate": t2 - t1, "audio_seconds": len(y) / sr}
    return _finish(out, cfg, ann, track_seed(cfg, track.track_id), audio_rel, timing)
