"""Evaluation runs: stream one JSONL line per item, resume after a kill, shard, score at the end.

A run directory holds ``predictions.jsonl`` (or ``predictions.shard-I-of-N.jsonl``: one self-contained
line per item with the question, reference, raw output, parsed answer, scores, latency and any error),
``run.json`` (what was run, timings) and — once every item is done — ``scores.json`` in the format of
``must-bench score --json``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.evaluate.prompts import PromptConfig, load_prompts
from bench.io import iter_jsonl, load_bench
from bench.scoring import ItemResult, TextScorer, score_item, summarize
from must.audio import AudioError, audio_info
from must.environment import environment
from must.models.base import Model, Request

__all__ = ["EvalConfig", "evaluate", "select_items", "read_run_lines", "merge_run", "answers_item", "make_request"]

log = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    """What to evaluate and how."""

    model: str
    bench: str
    out: str
    split: str | None = None
    tasks: list[str] | None = None
    limit: int | None = None  # per task
    shard: tuple[int, int] = (0, 1)
    prompts: str | None = None
    batch_size: int = 8
    max_audio_seconds: float = 900.0
    retry_errors: bool = False
    semantic_model: str | None = None


def select_items(df: pd.DataFrame, tasks: list[str] | None, limit: int | None, shard: tuple[int, int]) -> pd.DataFrame:
    """Filter by task, keep the first ``limit`` per task (by id), then take shard ``i`` of ``n``."""
    df = df.sort_values("id").reset_index(drop=True)
    if tasks:
        unknown = set(tasks) - set(df.task)
        if unknown:
            log.warning("tasks %s not in this benchmark", sorted(unknown))
        df = df[df.task.isin(tasks)]
    if limit:
        df = df.groupby("task", group_keys=False).head(limit)
    i, n = shard
    if not 0 <= i < n:
        raise ValueError(f"shard {i}/{n}: need 0 <= i < n")
    df = df.reset_index(drop=True)
    return df[df.index % n == i].reset_index(drop=True)


def _shard_file(out: Path, shard: tuple[int, int]) -> Path:
    i, n = shard
    return out / ("predictions.jsonl" if n == 1 else f"predictions.shard-{i}-of-{n}.jsonl")


def read_run_lines(path: Path) -> dict[str, dict[str, Any]]:
    """Finished items of a predictions file by id; a torn last line (a kill mid-write) is ignored."""
    out: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return out
    for n, rec, problem in iter_jsonl(path):
        if problem or "id" not in rec:
            log.warning("%s: line %d is incomplete or malformed; that item will be redone", path, n)
            continue
        out[str(rec["id"])] = rec
    return out


def _truncate_torn_tail(path: Path) -> None:
    """Cut a partial last line (no newline) left by a kill, so appended lines stay valid JSONL."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def make_request(row: dict[str, Any], prompts: PromptConfig) -> Request:
    """The request that puts one benchmark row to a model, its prompt rendered by ``prompts``."""
    return Request(id=str(row["id"]), task=row["task"], question=row["question"],
                   prompt=prompts.render(row["task"], row["question"]), system=prompts.system,
                   audio=row.get("audio"), duration=row.get("duration"), item=row)


def _check_audio(req: Request, max_seconds: float) -> str | None:
    if not req.audio:
        return "no audio path for this item"
    try:
        duration, _, _ = audio_info(req.audio)
    except AudioError as e:
        return str(e)
    if duration <= 0:
        return f"{req.audio}: audio is empty (0 samples)"
    if duration > max_seconds:
        return f"{req.audio}: audio is {duration:.0f} s long, over the limit of {max_seconds:.0f} s"
    return None


def _line(row: dict, prediction: str | None, result: ItemResult, latency: float, error: str | None) -> str:
    rec = {"id": str(row["id"]), "task": row["task"], "prediction": prediction, "parsed": result.parsed,
           "status": "error" if error else result.status, "scores": result.scores, "kind": result.kind,
           "latency_s": round(latency, 6), "error": error, "track_id": row["track_id"], "qa_type": row.get("qa_type"),
           "duration": row.get("duration"), "question": row["question"], "answer": row["answer"]}
    return json.dumps(rec, ensure_ascii=False) + "\n"


def answers_item(rec: dict[str, Any], row: dict[str, Any]) -> bool:
    """Whether a stored line answers the benchmark item as it is now: a rebuilt benchmark may ask something else
    under the same id (lines without a question or answer, from older runs, are taken as they are)."""
    return rec.get("question", row["question"]) == row["question"] and rec.get("answer", row["answer"]) == row["answer"]


def merge_run(out: Path, bench_items: pd.DataFrame) -> tuple[list[ItemResult], dict[str, dict]] | None:
    """All shards' lines of a run; ``None`` while some benchmark item is not finished (or answered as it is now)."""
    lines: dict[str, dict] = {}
    for f in sorted(out.glob("predictions*.jsonl")):
        lines.update(read_run_lines(f))
    rows = bench_items.to_dict("records")
    if any(str(row["id"]) not in lines or not answers_item(lines[str(row["id"])], row) for row in rows):
        return None
    results = []
    for row in rows:
        rec = lines[str(row["id"])]
        status = "missing" if rec.get("status") == "error" else rec.get("status", "ok")
        results.append(ItemResult(str(row["id"]), row["task"], rec.get("parsed"), status, rec.get("scores") or {}, rec.get("kind")))
    return results, lines


def evaluate(cfg: EvalConfig, model: Model, progress: bool = True) -> dict[str, Any]:
    """Run ``model`` over the selected items, appending to the run's JSONL; score once all are done."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    bench = load_bench(cfg.bench, cfg.split)
    everything = select_items(bench, cfg.tasks, cfg.limit, (0, 1))
    mine = select_items(bench, cfg.tasks, cfg.limit, cfg.shard)
    prompts = load_prompts(cfg.prompts)
    path = _shard_file(out, cfg.shard)
    _truncate_torn_tail(path)
    done = read_run_lines(path)
    if cfg.retry_errors:
        done = {k: v for k, v in done.items() if v.get("status") != "error"}
    rows = mine.to_dict("records")
    changed = {str(r["id"]) for r in rows if str(r["id"]) in done and not answers_item(done[str(r["id"])], r)}
    if changed:
        log.warning("%s: %d items ask something other than when they were answered (the benchmark was rebuilt), "
                    "e.g. %s; answering them again", path.name, len(changed), min(changed))
        done = {k: v for k, v in done.items() if k not in changed}
    todo = [r for r in rows if str(r["id"]) not in done]
    if done:
        log.info("resuming %s: %d of %d items already done", path.name, len(mine) - len(todo), len(mine))
    scorer = TextScorer(cfg.semantic_model)
    t_start, t_model, n_done = time.perf_counter(), 0.0, 0
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(mine), initial=len(mine) - len(todo), desc=f"evaluate {model.name}", unit="item")
    with open(path, "a", encoding="utf-8") as f:
        for start in range(0, len(todo), max(1, cfg.batch_size)):
            batch = todo[start : start + cfg.batch_size]
            reqs = [make_request(r, prompts) for r in batch]
            errors = {r.id: _check_audio(r, cfg.max_audio_seconds) for r in reqs} if model.needs_audio else {}
            live = [r for r in reqs if not errors.get(r.id)]
            t0 = time.perf_counter()
            try:
                answers = model.generate(live) if live else []
            except Exception as e:  # isolate the failing item(s): retry one by one
                log.warning("batch failed (%s: %s); retrying items one by one", type(e).__name__, e)
                answers = []
                for r in live:
                    try:
                        answers += model.generate([r])
                    except Exception as e1:
                        answers.append(e1)
            elapsed = time.perf_counter() - t0
            t_model += elapsed
            by_id = dict(zip((r.id for r in live), answers))
            for row, req in zip(batch, reqs):
                error = errors.get(req.id)
                answer = by_id.get(req.id)
                if error is None and isinstance(answer, BaseException):
                    error = f"{type(answer).__name__}: {answer}"
                prediction = None if error else str(answer)
                result = score_item(row, prediction, scorer)
                f.write(_line(row, prediction, result, elapsed / max(len(live), 1), error))
                n_done += 1
            f.flush()
            if bar is not None:
                bar.update(len(batch))
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - t_start
    meta = {"model": cfg.model, "model_name": model.name, "config": {**asdict(cfg), "shard": list(cfg.shard)},
            "items_this_invocation": n_done, "wall_seconds": round(wall, 3), "model_seconds": round(t_model, 3),
            "harness_overhead_ms_per_item": round(1000 * (wall - t_model) / max(n_done, 1), 3),
            "environment": environment()}
    run_json = out / ("run.json" if cfg.shard[1] == 1 else f"run.shard-{cfg.shard[0]}-of-{cfg.shard[1]}.json")
    run_json.write_text(json.dumps(meta, indent=2))
    merged = merge_run(out, everything)
    if merged is None:
        finished = sum(1 for i in everything.id if str(i) in {k for f in out.glob("predictions*.jsonl") for k in read_run_lines(f)})
        log.info("shard %d/%d done; %d of %d items of the run finished — scores are written when all shards are",
                 cfg.shard[0], cfg.shard[1], finished, len(everything))
        return {"partial": True, **meta}
    results, lines = merged
    info = scorer.describe() if any(r.task == "TAD" for r in results) else None
    summary = summarize(results, info)
    summary["errors"] = {t: sum(1 for r in results if r.task == t and lines[r.id].get("status") == "error")
                         for t in sorted({r.task for r in results})}
    (out / "scores.json").write_text(json.dumps(summary, indent=2))
    return summary
