"""Which busyness signal MTR's intensity regions need: the regions the MTR annotation procedure finds from the
measured RMS × each candidate signal, scored against the benchmark's MTR references (IoU and segment F1).

Candidates: the annotation's own pace (onsets per second × tempo; a check, ≈ 100), its onset density without the
tempo, librosa's onset strength, librosa's detected onsets, and for each ``--model`` checkpoint what its heads give
(:func:`must.model.heard.heard_regions`: loudness × the pace head when it has one, else × flux).

``python -m benchmarks.mtr_pace --bench runs/standard/bench [--split test] [--model CKPT ...] --out DIR``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.figures import save_table

__all__ = ["signal_regions", "run"]


def signal_regions(annotation, y: np.ndarray, sr: int) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Per candidate signal, the highest and lowest regions of RMS × that signal (the annotation's span)."""
    import librosa

    from bench.annotate import intensity as inten
    from must.model.pace import REFERENCE_BPM, pace

    times = inten.frame_times(annotation.duration)
    rms = inten.windowed_rms(y, sr, times)
    onsets = np.concatenate([np.asarray(v, float) for v in annotation.onsets.values()])
    bpm = annotation.tempo_curve(times, REFERENCE_BPM)
    env = librosa.onset.onset_strength(y=y.astype(np.float32), sr=sr, hop_length=512)
    env_times = librosa.frames_to_time(np.arange(len(env)), sr=sr, hop_length=512)
    strength = np.array([env[(env_times >= t - 1) & (env_times < t + 1)].mean() for t in times])
    detected = librosa.onset.onset_detect(onset_envelope=env, sr=sr, hop_length=512, units="time")
    signals = {"annotated pace (check)": pace(onsets, times, bpm),
               "annotated onset density, no tempo": inten.onset_density(onsets, times),
               "onset strength (librosa)": strength,
               "detected onsets (librosa)": inten.onset_density(detected, times)}
    spans = [s for v in annotation.activity.values() for s in v]
    span = (min(s for s, _ in spans), max(e for _, e in spans))
    out = {}
    for name, sig in signals.items():
        curve = inten.intensity_curve(rms, sig, np.ones(len(times)))
        out[name] = {kind: inten.intensity_regions(times, curve, span, kind) for kind in ("highest", "lowest")}
    return out


def run(bench: str, split: str = "test", models: list[str] | None = None, limit: int | None = None) -> dict:
    """Mean IoU and segment F1 (percent) of each candidate's regions over the MTR questions of ``split``."""
    import torch

    from bench.annotate.jams_io import read_jams
    from bench.metrics.intervals import segment_f1, temporal_iou
    from must.audio import load_audio
    from must.model.heard import heard_regions
    from must.schema import row_events
    from stages.common import load_must

    questions = pd.read_parquet(Path(bench) / "parquet" / f"{split}.parquet").query("task == 'MTR'")
    loaded = {m: load_must(Path(m))[0].eval() for m in models or []}
    scores: dict[str, list[tuple[str, float, float]]] = {}
    tracks = list(questions.groupby("track_id"))[:limit]
    for tid, rows in tracks:
        ann = read_jams(Path(bench) / "jams" / f"{tid}.jams")
        y, sr = load_audio(str(Path(bench) / "audio" / f"{tid}.flac"), 16000)
        found = signal_regions(ann, y, sr)
        for name, model in loaded.items():
            with torch.no_grad():
                found[f"model {name}"] = heard_regions(model.encode_audio(y), model.config)
        for _, q in rows.iterrows():
            events = row_events(q.events)
            ref = [(e["start"], e["end"]) for e in events]
            kind = "highest" if events[0]["kind"] == "highest_intensity" else "lowest"
            for name, regions in found.items():
                est = regions[kind]
                iou, f1 = (temporal_iou(ref, est), segment_f1(ref, est)) if est else (0.0, 0.0)
                scores.setdefault(name, []).append((kind, iou, f1))
    table = {}
    for name, rows in scores.items():
        arr = np.array([(iou, f1) for _, iou, f1 in rows])
        by = {k: np.mean([iou for kk, iou, _ in rows if kk == k]) for k in ("highest", "lowest")}
        table[name] = {"IoU": round(100 * arr[:, 0].mean(), 1), "F1": round(100 * arr[:, 1].mean(), 1),
                       "IoU highest": round(100 * by["highest"], 1), "IoU lowest": round(100 * by["lowest"], 1)}
    return {"bench": bench, "split": split, "tracks": len(tracks), "questions": len(next(iter(scores.values()), [])),
            "regions_from_rms_times": table}


def main() -> None:
    """CLI entry point: print and save the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--model", nargs="*", default=[], help="MusT checkpoints whose heads to read")
    ap.add_argument("--limit", type=int, default=None, help="first N tracks")
    ap.add_argument("--out", default="runs/benchmarks")
    a = ap.parse_args()
    result = run(a.bench, a.split, a.model, a.limit)
    lines = ["| RMS × | IoU | F1 | IoU highest | IoU lowest |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {k} | {v['IoU']} | {v['F1']} | {v['IoU highest']} | {v['IoU lowest']} |"
              for k, v in result["regions_from_rms_times"].items()]
    save_table(a.out, "mtr_pace", result, f"{result['questions']} MTR questions, {result['tracks']} tracks ({a.split})", lines)


if __name__ == "__main__":
    main()
