"""Training data from a built benchmark: tracks, JAMS annotations, frame targets, captions, task examples,
and the per-track caches (16 kHz audio, encoder features) every stage reads."""

from __future__ import annotations

import functools
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench.annotate.jams_io import read_jams
from bench.annotate.transitions import group_moments
from bench.evaluate.prompts import load_prompts
from bench.io import load_bench
from bench.metrics.intervals import total_duration
from bench.synth.instruments import PALETTE, display
from bench.tasks.phrasing import NO_CHANGE, describe_moment, event_option, join_clauses, moment_option
from must.annotation import Event, TrackAnnotation
from must.answers import LETTERS, option_texts
from must.model.pace import REFERENCE_BPM, pace, pace_target
from must.schema import row_events
from must.timecode import format_time

__all__ = ["SOURCES", "CAPTION_QUESTION", "EVENT_QUESTION", "TrainData", "RepeatedTracks", "frame_targets", "caption",
           "event_caption", "caption_examples", "source_prevalence"]

log = logging.getLogger(__name__)
SOURCES = [v.name for v in PALETTE]
CAPTION_QUESTION = "Describe the music with timestamps."  # stage 2's questions (in the tokenizer's text)
EVENT_QUESTION = "When does the music change?"


TEMPO_SCALE = 200.0  # BPM that maps to a tempo target of 1


def frame_targets(ann: TrackAnnotation, n_frames: int, frame_rate: int, sources: list[str], sigma: float,
                  with_pace: bool = False) -> dict[str, np.ndarray]:
    """Frame-level targets: soft transition bumps, source activity, Amuse rhythm-change and segment sources, the
    local tempo / ``TEMPO_SCALE`` (−1 where the annotation has none) and (``with_pace``) the pace head's target
    (:func:`must.model.pace.pace_target`; −1 for a track without annotated onsets)."""
    t = np.arange(n_frames) / frame_rate
    transition = np.zeros(n_frames, np.float32)
    for e in ann.transitions:
        transition = np.maximum(transition, np.exp(-((t - e.time) ** 2) / (2 * sigma ** 2)))
    activity = np.zeros((n_frames, len(sources)), np.float32)
    for name, spans in ann.activity.items():
        if name in sources:
            for s, e in spans:
                activity[(t >= s) & (t < e), sources.index(name)] = 1
    rhythm = np.zeros(n_frames, np.float32)
    amuse = np.zeros((n_frames, len(sources)), np.float32)
    if ann.rhythm:
        for s, flag in zip(ann.rhythm.starts, ann.rhythm.changes):
            if flag:
                rhythm[(t >= s) & (t < s + ann.rhythm.segment_seconds)] = 1
    for s, e, names in ann.segment_sources:
        for name in names:
            if name in sources:
                amuse[(t >= s) & (t < e), sources.index(name)] = 1
    bpm = ann.tempo_curve(t)
    tempo = np.where(np.isnan(bpm), -1.0, np.minimum(bpm / TEMPO_SCALE, 1.0)).astype(np.float32)
    out = {"transition": transition, "activity": activity, "rhythm": rhythm, "amuse": amuse, "tempo": tempo}
    if with_pace:
        onsets = [np.asarray(v, float) for v in ann.onsets.values() if len(v)]
        known = np.where(np.isnan(bpm), REFERENCE_BPM, bpm)
        out["pace"] = (pace_target(pace(np.concatenate(onsets), t, known)).astype(np.float32) if onsets
                       else np.full(n_frames, -1.0, np.float32))
    return out


def source_prevalence(annotations: list[TrackAnnotation], sources: list[str]) -> np.ndarray:
    """Fraction of the tracks' total duration in which each source plays (overlapping spans counted once)."""
    active = np.zeros(len(sources))
    total = 0.0
    for ann in annotations:
        total += ann.duration
        for name, spans in ann.activity.items():
            if name in sources:
                active[sources.index(name)] += total_duration(spans)
    return active / max(total, 1e-9)


def caption(ann: TrackAnnotation) -> str:
    """A timestamped caption: what plays in each span between transitions, and each transition."""
    moments = group_moments(ann.transitions)
    bounds = sorted({0.0, *(m[0].time for m in moments), ann.duration})
    parts = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b - a < 1.0:
            continue
        playing = [display(n) for n in ann.active_at((a + b) / 2)]
        tempo = ann.tempo_at((a + b) / 2)
        desc = join_clauses(playing) if playing else "silence"
        parts.append(f"[{format_time(a)}-{format_time(b)}] {desc}" + (f", {tempo:.0f} bpm" if tempo else "") + ".")
        for m in moments:
            if abs(m[0].time - b) < 1e-6 and b < ann.duration - 1:
                parts.append(f"[{format_time(b)}] {moment_option(m).lower()}.")
    for kind in ("highest", "lowest"):
        for s, e in ann.regions.get(kind, []):
            parts.append(f"[{format_time(s)}-{format_time(e)}] {kind} intensity.")
    return " ".join(parts)


def event_caption(ann: TrackAnnotation, rng: np.random.Generator) -> str:
    """Every change followed by its time, in random order: ``the drums enter at 0:25 ; highest intensity
    0:40-0:55 ; …``. The change is written before its time, so each time is pointing at the second where *that*
    change happens — what TSG and MTR ask — rather than at the next change along the timeline."""
    parts = [f"{event_option(e)} at {format_time(e.time)}" for e in ann.transitions]
    parts += [f"{kind} intensity {format_time(s)}-{format_time(e)}" for kind in ("highest", "lowest")
              for s, e in ann.regions.get(kind, [])]
    return " ; ".join(parts[int(i)] for i in rng.permutation(len(parts))) + " ." if parts else NO_CHANGE.lower() + " ."


def caption_examples(data: "TrainData", tracks: list[dict], event_captions: bool, seed: int) -> list[tuple[dict, str, str]]:
    """Stage 2's ``(track row, question, caption)``: every track's timeline caption and, with ``event_captions``,
    its event caption (order drawn from ``seed``)."""
    rng = np.random.default_rng(seed)
    out = []
    for r in tracks:
        ann = data.annotation(r["track_id"])
        out.append((r, CAPTION_QUESTION, caption(ann)))
        if event_captions:
            out.append((r, EVENT_QUESTION, event_caption(ann, rng)))
    return out


def _save_npy(path: Path, array: np.ndarray) -> None:
    """Write a cache ``.npy`` through a per-process temporary file (ranks may cache the same track at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.part.npy")
    np.save(tmp, array)
    tmp.replace(path)


def _text(v: Any) -> str | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)


class TrainData:
    """The benchmark's train/val splits and caches under ``out/cache``."""

    def __init__(self, bench: str, out: str | Path, max_train_tracks: int | None = None, seed: int = 0):
        self.bench, self.seed = Path(bench), seed
        self.cache = Path(out) / "cache"
        self.train = load_bench(self.bench, "train")
        self.val = load_bench(self.bench, "val")
        if max_train_tracks:
            keep = sorted(self.train.track_id.unique())
            keep = set(np.random.default_rng(seed).permutation(keep)[:max_train_tracks])
            self.train = self.train[self.train.track_id.isin(keep)].reset_index(drop=True)
        self.instructions = load_prompts().instructions

    def tracks(self, split: str) -> pd.DataFrame:
        """One row per track of a split: ``track_id``, ``audio``, ``duration``."""
        df = self.train if split == "train" else self.val
        return df.drop_duplicates("track_id")[["track_id", "audio", "duration"]].reset_index(drop=True)

    @functools.lru_cache(maxsize=4096)
    def annotation(self, track_id: str) -> TrackAnnotation:
        """The track's JAMS annotation."""
        return read_jams(self.bench / "jams" / f"{track_id}.jams")

    def wave(self, track_id: str, audio: str, sr: int = 16000) -> np.ndarray:
        """Mono audio at ``sr`` Hz (16 kHz by default), cached as float16 ``.npy``."""
        return np.asarray(self.wave_samples(track_id, audio, sr), dtype=np.float32)

    def wave_samples(self, track_id: str, audio: str, sr: int = 16000) -> np.ndarray:
        """The audio of :meth:`wave` without reading or converting it all: a float16 memory map once cached (the
        first call decodes and returns float32). Slice, then convert: training takes 15–30 s crops and prefixes
        of 45–150 s tracks and needs no more than those."""
        from must.audio import load_audio

        # one cache per rate: an hf audio-LM's feature extractor may want another rate than MusT's 16 kHz
        path = self.cache / "wave" / ("" if sr == 16000 else f"{sr}hz") / f"{track_id}.npy"
        if path.exists():
            return np.load(path, mmap_mode="r")
        y, _ = load_audio(audio, sr)
        _save_npy(path, y.astype(np.float16))
        return y

    def log_mel(self, track_id: str, audio: str, log_mel: Callable[[torch.Tensor], torch.Tensor], tag: str) -> np.ndarray:
        """The track's ``(frames, n_mels)`` log-mel by ``log_mel`` (an encoder's), a float16 memory map cached under
        ``cache/mel/<tag>``: stage 1 crops it instead of transforming the same audio again at every step."""
        path = self.cache / "mel" / tag / f"{track_id}.npy"
        if path.exists():
            return np.load(path, mmap_mode="r")
        with torch.no_grad():
            mel = log_mel(torch.from_numpy(self.wave(track_id, audio))[None])[0].T.numpy().astype(np.float16)
        _save_npy(path, mel)
        return mel

    def features(self, model, tag: str, tracks: pd.DataFrame, rank: int = 0, world: int = 1) -> dict[str, torch.Tensor]:
        """Encoder features per track (cached under ``cache/features/<tag>``); ranks share the work."""
        from safetensors.torch import load_file, save_file

        d = self.cache / "features" / tag
        d.mkdir(parents=True, exist_ok=True)
        rows = tracks.to_dict("records")

        def path(r: dict) -> Path:
            return d / f"{r['track_id']}.safetensors"

        def encode(r: dict) -> None:
            f = model.encode_audio(self.wave(r["track_id"], r["audio"])).cpu().contiguous()
            tmp = path(r).with_suffix(".part")
            save_file({"features": f}, str(tmp))
            tmp.replace(path(r))

        todo = [r for i, r in enumerate(rows) if i % world == rank and not path(r).exists()]

        # a track's encoding is many small ops that two intra-op threads barely share: one track per thread instead
        # (0.153 -> 0.106 s a track on 2 cores, the same features to the bit)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(max(1, threads)) as pool:
                list(pool.map(encode, todo))
        finally:
            torch.set_num_threads(threads)
        if world > 1:
            torch.distributed.barrier()
        return {r["track_id"]: load_file(str(path(r)))["features"] for r in rows}

    def examples(self, split: str, tasks: list[str]) -> list[dict[str, Any]]:
        """Task questions of a split as training examples (question, instruction, answer, columns for rewards)."""
        df = self.train if split == "train" else self.val
        return [self._example(r) for r in df[df.task.isin(tasks)].to_dict("records")]

    def generated_examples(self, copies: int, tasks: list[str]) -> list[dict[str, Any]]:
        """More train questions: the benchmark's own generators and balancing run again on the train tracks'
        annotations with ``copies`` fresh seeds per track (val and test are never touched)."""
        import yaml

        from bench.tasks.balance import finalize
        from bench.tasks.base import TaskConfig, generate_drafts

        if copies <= 0:
            return []
        built = yaml.safe_load((self.bench / "config.yaml").read_text()) or {}
        task_cfg = TaskConfig(**(built.get("config", built).get("tasks") or {}))
        drafts, meta = {}, {}
        for i, r in enumerate(self.tracks("train").to_dict("records")):
            ann = self.annotation(r["track_id"])
            for c in range(copies):
                key = f"{r['track_id']}-gen{c}"
                drafts[key] = generate_drafts(ann, 7_000_003 * (c + 1) + i, task_cfg, [t for t in tasks if t in task_cfg.per_track])
                meta[key] = {"split": "train", "audio": r["audio"], "duration": r["duration"]}
        rows = finalize(drafts, meta, self.seed)
        for row in rows:
            row["track_id"] = row["track_id"].rsplit("-gen", 1)[0]
        return [self._example(row) for row in rows]

    def _example(self, r: dict[str, Any]) -> dict[str, Any]:
        return {"id": r["id"], "track_id": r["track_id"], "task": r["task"], "question": r["question"],
                "instruction": self.instructions.get(r["task"], ""), "answer": str(r["answer"]),
                "reasoned": reasoned_answer(r["task"], str(r["answer"]), r.get("events"), r["question"]),
                "full": self._full_description(r) if r["task"] == "TAD" else str(r["answer"]),
                "answers": [str(a) for a in r["answers"]], "duration": float(r["duration"]),
                "qa_type": _text(r.get("qa_type")), "category": _text(r.get("category")), "audio": r["audio"]}

    def _full_description(self, r: dict[str, Any]) -> str:
        """A TAD question's fullest description of its moment (every entry's role, the sources that keep playing;
        :func:`~bench.tasks.phrasing.describe_moment` without a generator); its first reference if it has no events."""
        evs = row_events(r.get("events"))
        if not evs:
            return str(r["answer"])
        return describe_moment([Event(**e) for e in evs], self.annotation(r["track_id"]), None)


def reasoned_answer(task: str, answer: str, events: Any, question: str = "") -> str:
    """A multiple-choice answer that first says what it heard, then the letter. LTR: the change at the asked
    time in words, ``The drums enter. Answer: C`` (naming a change from the audio, then matching words to an
    option, is easier than binding a letter to the audio). GTO: when (X), (Y) and (Z) happen, ``(X) 0:06 (Y)
    0:31 (Z) 0:16. Answer: B`` (ordering three written times is easier than three heard moments). Other
    tasks answer directly."""
    from bench.tasks.gto import ORDERINGS

    if task == "LTR" and answer in option_texts(question):
        return f"{option_texts(question)[answer]}. Answer: {answer}"
    if task != "GTO" or answer not in LETTERS[: len(ORDERINGS)]:
        return answer
    evs = row_events(events)
    times = sorted({round(float(e["time"]), 3) for e in evs})
    if len(times) < 3:
        return answer
    # events are one moment per listed change; a moment's events share (nearly) one time, moments are far apart
    cuts = sorted(np.argsort(np.diff(times))[-2:] + 1)
    starts = [times[0], times[cuts[0]], times[cuts[1]]]
    order = ORDERINGS[LETTERS.index(answer)]  # label of the 1st, 2nd, 3rd moment in time
    when = dict(zip(order, starts))
    return " ".join(f"({x}) {format_time(when[x])}" for x in "XYZ") + f". Answer: {answer}"


class RepeatedTracks(torch.utils.data.Dataset):
    """The train tracks repeated ``repeats`` times; index ``i`` is track ``i mod n`` (crops seeded by ``i``)."""

    def __init__(self, data: TrainData, repeats: int, seed: int):
        self.data, self.seed = data, seed
        self.tracks = data.tracks("train").to_dict("records")
        self.n = len(self.tracks) * repeats

    def __len__(self) -> int:
        return self.n

    def track(self, i: int) -> dict[str, Any]:
        """The track behind index ``i``."""
        return self.tracks[i % len(self.tracks)]
