"""Write a built benchmark: Parquet per split, HF datasets, and the summary (JSON + Markdown)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.build.config import BuildConfig
from must.environment import environment
from must.schema import write_parquet_bench

__all__ = ["write_outputs", "balance_report", "summary_markdown"]


def balance_report(df: pd.DataFrame) -> dict[str, Any]:
    """Answer balance per split: letter shares (LTR/GTO), top answer share per AVQA type, TSG time spread."""
    out: dict[str, Any] = {}
    for split, g in df.groupby("split"):
        rep: dict[str, Any] = {}
        for task in ("LTR", "GTO"):
            t = g[g.task == task]
            if len(t):
                rep[f"{task}_letters"] = {k: round(v, 3) for k, v in sorted(t.answer.value_counts(normalize=True).items())}
        avqa = g[g.task == "AVQA"]
        for (cat, qt), a in avqa.groupby(["category", "qa_type"]):
            top = a.answer.value_counts(normalize=True)
            rep[f"AVQA {cat} {qt}"] = {"top_answer": top.index[0], "share": round(float(top.iloc[0]), 3), "n": len(a)}
        tsg = g[g.task == "TSG"]
        if len(tsg):
            from must.timecode import parse_time

            rel = [parse_time(a) / d for a, d in zip(tsg.answer, tsg.duration) if d]
            rep["TSG_relative_time_deciles"] = [int(x) for x in np.histogram(rel, bins=10, range=(0, 1))[0]]
        mtr = g[g.task == "MTR"]
        if len(mtr):
            from must.timecode import parse_intervals

            cover = [sum(e - s for s, e in parse_intervals(a)) / d for a, d in zip(mtr.answer, mtr.duration)]
            rep["MTR_mean_coverage"] = round(float(np.mean(cover)), 3)
        out[str(split)] = rep
    return out


def _hf(out: Path, df: pd.DataFrame, records: dict[str, dict], sr: int) -> None:
    import datasets

    q = datasets.DatasetDict({
        split: datasets.Dataset.from_pandas(g.reset_index(drop=True), preserve_index=False)
        for split, g in df.groupby("split")
    })
    q.save_to_disk(str(out / "hf" / "questions"))
    tracks = {}
    for split, g in df.groupby("split"):
        ids = sorted(set(g.track_id))
        tracks[split] = datasets.Dataset.from_dict({
            "track_id": ids,
            "audio": [str(out / records[t]["audio"]) for t in ids],
            "duration": [records[t]["duration"] for t in ids],
            "sources": [records[t]["sources"] for t in ids],
            "jams": [f"jams/{t}.jams" for t in ids],
            "split": [split] * len(ids),
        }).cast_column("audio", datasets.Audio(sampling_rate=sr))
    datasets.DatasetDict(tracks).save_to_disk(str(out / "hf" / "tracks"))


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary as Markdown tables."""
    lines = [f"# Benchmark `{summary['name']}`", "", "| task | " + " | ".join(summary["splits"]) + " | total |",
             "|---|" + "---:|" * (len(summary["splits"]) + 1)]
    for task, counts in summary["counts"].items():
        lines.append(f"| {task} | " + " | ".join(str(counts.get(s, 0)) for s in summary["splits"]) + f" | {sum(counts.values())} |")
    lines += ["", f"Tracks: {summary['tracks']} ({summary['tracks_per_split']}); audio {summary['audio_hours']:.2f} h; "
              f"failed tracks: {len(summary['failures'])}.", "",
              "| stage | × realtime |", "|---|---:|"]
    for k, v in summary["speed_x_realtime"].items():
        lines.append(f"| {k} | {v:.0f} |")
    lines += ["", "```json", json.dumps(summary["balance"], indent=1), "```", ""]
    return "\n".join(lines)


def write_outputs(out: Path, rows: list[dict[str, Any]], records: dict[str, dict], failures: dict[str, str],
                  cfg: BuildConfig, wall_seconds: float | None) -> dict[str, Any]:
    """Parquet per split, HF datasets, summary.json / summary.md; returns the summary (``wall_seconds``: the tracks'
    build time, None for a redraft, which builds none)."""
    df = pd.DataFrame(rows)
    for split, g in df.groupby("split"):
        write_parquet_bench(g.reset_index(drop=True), out / "parquet" / f"{split}.parquet")
    _hf(out, df, records, cfg.sample_rate)
    audio = sum(r["timing"]["audio_seconds"] for r in records.values())
    cpu = {k: sum(r["timing"][k] for r in records.values()) for k in ("render", "annotate", "tasks")}
    splits = sorted(df.split.unique(), key=lambda s: ["train", "val", "test"].index(s) if s in ("train", "val", "test") else 9)
    summary = {
        "name": cfg.name,
        "tracks": len(records),
        "tracks_per_split": dict(Counter(df.drop_duplicates("track_id").split)),
        "splits": splits,
        "items": len(df),
        "counts": {t: {s: int(((df.task == t) & (df.split == s)).sum()) for s in splits} for t in sorted(df.task.unique())},
        "audio_hours": audio / 3600,
        # per-stage speed is audio seconds per CPU second of that stage (one core); overall uses wall time
        "speed_x_realtime": {**{k: audio / max(v, 1e-9) for k, v in cpu.items()},
                             **({} if wall_seconds is None else
                                {"overall (wall, all workers)": audio / max(wall_seconds, 1e-9)})},
        "provenance": dict(Counter(json.dumps(r["provenance"], sort_keys=True) for r in records.values()).most_common(3)),
        "balance": balance_report(df),
        "failures": failures,
        "environment": environment(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(summary_markdown(summary))
    return summary
