"""How well MusT's measured tempo signals (:mod:`must.model.tempo`) locate a benchmark's tempo changes, with no
training: per track, the ``k`` highest peaks of tempogram novelty (``k`` = the track's annotated tempo changes,
peaks at least 5 s apart) — how many changes have a peak within 3 s, and for those, how often the onset-rate
change and the metrical tempo change at the peak say the right direction; and at the annotated second itself (as an
LTR question asks), how often the tempo change is read there (non-zero) and, when it is, says the right direction.

``python -m benchmarks.tempo_signals --bench runs/standard/bench [--split test] [--tracks 60] --out DIR``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

__all__ = ["peaks", "run"]


def peaks(novelty: np.ndarray, k: int, apart: int = 5) -> list[int]:
    """The ``k`` highest seconds of ``novelty``, each at least ``apart`` s from a higher one already taken."""
    picked: list[int] = []
    for s in np.argsort(-novelty, kind="stable"):
        if all(abs(int(s) - p) >= apart for p in picked):
            picked.append(int(s))
        if len(picked) == k:
            break
    return picked


def run(bench: str, split: str = "test", tracks: int = 60, tolerance: float = 3.0) -> dict:
    """Located fraction and direction accuracy over the first ``tracks`` tracks of ``split`` with tempo changes."""
    from bench.annotate.jams_io import read_jams
    from must.audio import load_audio
    from must.model.configuration import MusTConfig
    from must.model.modeling import MusicEncoder
    from must.model.tempo import tempo_frames, tempo_track_signals

    cfg = MusTConfig()
    enc = MusicEncoder(cfg)
    ids = sorted(pd.read_parquet(Path(bench) / "parquet" / f"{split}.parquet").track_id.unique())
    found, rate_ok, tempo_ok, at_time, n_tracks = [], [], [], [], 0
    for tid in ids:
        changes = [e for e in read_jams(Path(bench) / "jams" / f"{tid}.jams").transitions if e.kind == "tempo_change"]
        if not changes:
            continue
        n_tracks += 1
        y, _ = load_audio(str(Path(bench) / "audio" / f"{tid}.flac"), cfg.sample_rate)
        with torch.no_grad():
            frames = tempo_frames(enc.log_mel(torch.as_tensor(y, dtype=torch.float32)[None])[0],
                                  cfg.sample_rate / cfg.mel_hop, cfg.mel_frames_per_frame)
        sec = len(frames) // cfg.frame_rate
        per_second = frames[: sec * cfg.frame_rate].view(sec, cfg.frame_rate, -1).mean(1)
        sig = tempo_track_signals(per_second).numpy()
        picks = peaks(sig[:, 0], len(changes))
        for e in changes:
            faster = e.detail["to"] > e.detail["from"]
            at_time.append((sig[min(int(round(e.time)), len(sig) - 1), 2], faster))
            near = [p for p in picks if abs(p + 0.5 - e.time) <= tolerance]
            found.append(bool(near))
            if near:
                rate_ok.append((sig[near[0], 1] > 0) == faster)
                tempo_ok.append((sig[near[0], 2] > 0) == faster)
        if n_tracks == tracks:
            break
    return {"tracks": n_tracks, "tempo_changes": len(found), "located_within_3s": round(float(np.mean(found)), 3),
            "direction_by_onset_rate": round(float(np.mean(rate_ok)), 3) if rate_ok else None,
            "direction_by_metrical_tempo": round(float(np.mean(tempo_ok)), 3) if tempo_ok else None,
            "read_at_annotated_time": round(float(np.mean([v != 0 for v, _ in at_time])), 3),
            "direction_at_annotated_time": round(float(np.mean([(v > 0) == f for v, f in at_time if v != 0])), 3)}


def main() -> None:
    """CLI entry point: print and save the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--tracks", type=int, default=60)
    ap.add_argument("--out", default="runs/benchmarks")
    a = ap.parse_args()
    result = run(a.bench, a.split, a.tracks)
    print(json.dumps(result, indent=1))
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "tempo_signals.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
