"""Build a benchmark directory: tracks in parallel (resumable), then splits, balance and writers; or redraft a
finished build's questions from its JAMS under a new task config (:func:`redraft`).

Output layout::

    DIR/config.yaml            the resolved build config
    DIR/audio/<track>.flac     mixes (and stems/<track>/ when keep_stems)
    DIR/jams/<track>.jams      annotations
    DIR/tracks/<track>.json    per-track records (resume state)
    DIR/parquet/<split>.parquet questions in MusTBench columns + audio, duration, events
    DIR/hf/questions, DIR/hf/tracks   HF datasets (load_from_disk); audio once per track
    DIR/summary.json, summary.md     counts, balance, timings, failures
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml
from tqdm import tqdm

from bench.build.config import BuildConfig
from bench.build.real import discover
from bench.build.tracks import (build_real_track, build_synth_track, read_record, record_path, redraft_track,
                                synth_track_id)
from bench.build.writer import write_outputs
from bench.tasks.balance import finalize
from bench.tasks.base import Draft
from must.config import to_dict

__all__ = ["Job", "build", "redraft", "assign_splits", "REDRAFT_KEYS"]

log = logging.getLogger(__name__)

# what a redraft may change: nothing here alters a track's audio or annotation
REDRAFT_KEYS = ("tasks", "splits", "workers")
REDRAFT_MARKER = "redraft.partial"


@dataclass
class Job:
    """One track to build: its id and the call that builds it."""

    track_id: str
    fn: Callable[..., dict[str, Any]]
    args: tuple = field(default_factory=tuple)


def assign_splits(track_ids: list[str], fractions: dict[str, float], seed: int) -> dict[str, str]:
    """Track → split with exact counts per split, from a seeded shuffle (no track in two splits)."""
    ids = sorted(track_ids)
    order = np.random.default_rng(seed).permutation(len(ids))
    names = list(fractions)
    counts = [int(np.floor(fractions[n] * len(ids))) for n in names]
    # largest remainders get the leftover tracks; ties go to the larger split
    by_remainder = sorted(range(len(names)), key=lambda i: (-(fractions[names[i]] * len(ids) - counts[i]), -fractions[names[i]]))
    for i in by_remainder[: len(ids) - sum(counts)]:
        counts[i] += 1
    out, k = {}, 0
    for name, c in zip(names, counts):
        for j in order[k : k + c]:
            out[ids[int(j)]] = name
        k += c
    return out


def _config_record(cfg: BuildConfig, source: str | None) -> dict[str, Any]:
    """What ``config.yaml`` records of a build: its config and the folder of real audio it read (``None``: rendered)."""
    return {"config": to_dict(cfg), "source": source}


def _check_config(out: Path, cfg: BuildConfig, source: str | None) -> None:
    if (out / REDRAFT_MARKER).exists():
        raise ValueError(f"{out}: a redraft was interrupted; run the same `must-bench build --redraft` again to finish it")
    wanted = _config_record(cfg, source)
    path = out / "config.yaml"
    if path.exists():
        have = yaml.safe_load(path.read_text())
        if have != wanted:
            raise ValueError(f"{out} holds a build with a different config; use a new --out, or --force to rebuild")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(wanted, sort_keys=False))


def _warm_numba_cache() -> None:
    """Compile librosa's numba kernels once in this process: workers that compile them at the same moment race
    on writing NUMBA_CACHE_DIR and can leave a corrupt cache that segfaults every later run."""
    import numpy as np

    from bench.annotate.rhythm import _tempo

    _tempo(np.random.default_rng(0).standard_normal(22050 * 2).astype(np.float32), 22050)


def _run_jobs(jobs: list[Job], out: Path, workers: int, progress: bool) -> tuple[dict[str, dict], dict[str, str]]:
    records, failures = {}, {}
    pending = []
    for job in jobs:
        rec = read_record(out, job.track_id)
        if rec is not None:
            records[job.track_id] = rec
        else:
            pending.append(job)
    if records:
        log.info("resuming: %d of %d tracks already built", len(records), len(jobs))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), initial=len(records), desc="tracks", unit="track")

    def done(job: Job, result: dict | None, err: BaseException | None) -> None:
        if err is None:
            records[job.track_id] = result
        else:
            failures[job.track_id] = f"{type(err).__name__}: {err}"
            log.warning("track %s failed: %s", job.track_id, failures[job.track_id])
        if bar is not None:
            bar.update(1)

    if workers <= 1 or len(pending) <= 1:
        for job in pending:
            try:
                done(job, job.fn(*job.args), None)
            except Exception as e:  # one bad track must not stop the build
                done(job, None, e)
    else:
        import multiprocessing as mp

        _warm_numba_cache()
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as ex:
            futures = {ex.submit(job.fn, *job.args): job for job in pending}
            for fut in as_completed(futures):
                err = fut.exception()
                done(futures[fut], None if err else fut.result(), err)
    if bar is not None:
        bar.close()
    return records, failures


def build(cfg: BuildConfig, out: str | Path, source_dir: str | Path | None = None, progress: bool = True,
          force: bool = False) -> dict[str, Any]:
    """Build (or resume building) a benchmark into ``out``; returns the summary."""
    out = Path(out)
    if force and out.exists():
        import shutil

        shutil.rmtree(out)
    _check_config(out, cfg, str(source_dir) if source_dir else None)
    os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "must-bench" / "numba"))
    if source_dir is None:
        from bench.synth.render import check_soundfont, default_soundfont

        check_soundfont(cfg.soundfont or default_soundfont())  # one error up front, not one per track
        jobs = [Job(synth_track_id(cfg, i), build_synth_track, (i, cfg, out)) for i in range(cfg.tracks)]
    else:
        found = discover(source_dir)
        if not found:
            raise FileNotFoundError(f"{source_dir}: no audio files found")
        jobs = [Job(t.track_id, build_real_track, (t, cfg, out)) for t in found]
    t0 = time.perf_counter()
    records, failures = _run_jobs(jobs, out, cfg.workers, progress)
    if not records:
        raise RuntimeError(f"no track could be built; first failure: {next(iter(failures.values()), '?')}")
    return _write(out, cfg, records, failures, time.perf_counter() - t0)


def _write(out: Path, cfg: BuildConfig, records: dict[str, dict], failures: dict[str, str],
           wall: float | None) -> dict[str, Any]:
    """Splits, balance and every output file from the tracks' records; returns the summary."""
    splits = assign_splits(list(records), cfg.splits, cfg.seed)
    drafts = {tid: [Draft(**d) for d in rec["drafts"]] for tid, rec in records.items()}
    meta = {tid: {"split": splits[tid], "audio": rec["audio"], "duration": rec["duration"]} for tid, rec in records.items()}
    rows = finalize(drafts, meta, cfg.seed)
    summary = write_outputs(out, rows, records, failures, cfg, wall_seconds=wall)
    (out / "failures.json").write_text(json.dumps(failures, indent=2))
    return summary


def redraft(cfg: BuildConfig, out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Draft the questions of a finished build in ``out`` again under ``cfg`` — which may differ from the build's
    config only in :data:`REDRAFT_KEYS` — from its JAMS, without rendering or annotating any audio (seconds rather
    than the build's minutes); the same config redrafts the same questions. Returns the summary."""
    out = Path(out)
    path = out / "config.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{out}: no build to redraft (config.yaml missing); build it first")
    have = yaml.safe_load(path.read_text())
    wanted = _config_record(cfg, have.get("source"))
    changed = sorted(k for k in set(have["config"]) | set(wanted["config"])
                     if have["config"].get(k) != wanted["config"].get(k) and k not in REDRAFT_KEYS)
    if changed:
        raise ValueError(f"{out}: a redraft can change only {', '.join(REDRAFT_KEYS)}; this config also changes "
                         f"{', '.join(changed)} — build into a new --out instead")
    failures_path = out / "failures.json"  # written when a build finishes
    if not failures_path.exists():
        raise ValueError(f"{out}: the build did not finish; resume it (the same `must-bench build` without --redraft) first")
    failures = json.loads(failures_path.read_text())
    ids = sorted(p.stem for p in (out / "tracks").glob("*.json"))
    # the folder claims the new config from here on; until the marker goes, only a redraft may finish it
    path.write_text(yaml.safe_dump(wanted, sort_keys=False))
    (out / REDRAFT_MARKER).touch()
    records = {}
    for tid in tqdm(ids, desc="redraft", unit="track", disable=not progress):
        rec = read_record(out, tid)
        if rec is None:
            raise ValueError(f"{record_path(out, tid)}: unreadable track record; build into a new --out")
        records[tid] = redraft_track(out, cfg, rec, synthetic=have.get("source") is None)
    summary = _write(out, cfg, records, failures, None)
    (out / REDRAFT_MARKER).unlink()
    return summary
