"""How a TSG time under ``choices=constrained`` should weigh the pointer against the scan, fitted for one checkpoint.

With ``tsg_scan`` the written second is the Hit@3s choice of ``p(t)^a · exp(b · s(t))``: the pointer's distribution
over seconds ``p`` and the scan ``s`` of LTR's question about the asked change at every second
(:func:`must.model.inference.scanned_hit_second`). ``a`` = 0.5 and ``b`` = 3 were chosen on val for f42's stage 4
(session 41). This answers each TSG question of a split once as ``must-bench evaluate`` does, records the ``p`` and
``s`` its time was chosen from, and scores every ``(a, b)`` of a grid on those records: the split's TSG score (the
mean of onset and offset Hit@3s) per pair, the best pair, and its difference from the default paired over the
questions. Fit on val; pass the pair to the test run as ``--model-args
choices=constrained,tsg_pointer_weight=A,tsg_scan_weight=B``.

``python -m benchmarks.tsg_weights --model CKPT [--model CKPT …] --bench DIR [--split val] [--limit N] --out DIR``
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.figures import save_table

__all__ = ["POINTER_WEIGHTS", "SCAN_WEIGHTS", "record", "grid_scores", "run"]

POINTER_WEIGHTS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
SCAN_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0)


def record(checkpoint: str, bench: str, split: str = "val", limit: int | None = None) -> list[dict[str, Any]]:
    """Each TSG question of ``split`` answered by ``checkpoint`` under ``choices=constrained``: its kind, reference
    seconds and the hit of the answer written, with the pointer's distribution and the scan its time was chosen from
    (``probs``, ``scan``; absent when the question's wording has no scan)."""
    from tqdm import tqdm

    from bench.evaluate.prompts import load_prompts
    from bench.evaluate.runner import make_request
    from bench.io import load_bench
    from bench.scoring import score_item
    from must.answers import parse_timestamp
    from must.model import inference
    from must.models.must_model import MusTAdapter

    table = load_bench(bench, split).query("task == 'TSG'")
    rows = (table if limit is None else table.head(limit)).to_dict("records")
    prompts, adapter = load_prompts(), MusTAdapter(checkpoint, choices="constrained")
    chosen_from: list[tuple[np.ndarray, np.ndarray]] = []
    original = inference.scanned_hit_second

    def recording(probs, scan, **weights) -> int:
        chosen_from.append((probs.double().numpy().copy(), np.asarray(scan, dtype=float).copy()))
        return original(probs, scan, **weights)

    inference.scanned_hit_second = recording  # answer_batch looks it up at call time
    out = []
    try:
        for row in tqdm(rows, desc=f"TSG {Path(checkpoint).parent.name}", unit="q"):
            chosen_from.clear()
            answer = adapter.generate([make_request(row, prompts)])[0]
            result = score_item(row, answer if isinstance(answer, str) else None)
            rec = {"id": str(row["id"]), "kind": result.kind, "hit": result.scores["hit"],
                   "refs": [parse_timestamp(str(a)).value for a in row["answers"]]}
            if chosen_from:
                rec["probs"], rec["scan"] = chosen_from[0]
            out.append(rec)
    finally:
        inference.scanned_hit_second = original
        adapter.close()
    return out


def _hits(records: list[dict[str, Any]], pointer_weight: float, scan_weight: float) -> np.ndarray:
    import torch

    from bench.scoring import TSG_WINDOW
    from must.model.inference import scanned_hit_second

    hits = []
    for r in records:
        if "probs" not in r:
            hits.append(r["hit"])
            continue
        second = scanned_hit_second(torch.from_numpy(r["probs"]), r["scan"], pointer_weight, scan_weight)
        hits.append(float(min(abs(second - t) for t in r["refs"]) <= TSG_WINDOW))
    return np.array(hits)


def _tsg(records: list[dict[str, Any]], hits: np.ndarray) -> float:
    """TSG as the benchmark scores it: the mean of the onset and offset Hit@3s, in percent."""
    kinds = np.array([r["kind"] for r in records])
    return float(100 * np.mean([hits[kinds == k].mean() for k in ("onset", "offset") if (kinds == k).any()]))


def grid_scores(records: list[dict[str, Any]], pointer_weights=POINTER_WEIGHTS,
                scan_weights=SCAN_WEIGHTS) -> dict[tuple[float, float], float]:
    """TSG (percent) of the records' answers re-chosen with each ``(pointer weight, scan weight)``."""
    return {(a, b): _tsg(records, _hits(records, a, b)) for a, b in itertools.product(pointer_weights, scan_weights)}


def run(checkpoints: list[str], bench: str, split: str = "val", limit: int | None = None) -> dict[str, Any]:
    """Per checkpoint: the written answers' TSG, the default pair's (a check: the same), the grid's best pair and its
    gain over the default paired over the questions (± one standard error)."""
    from bench.evaluate.paired import mean_difference
    from must.model.inference import TSG_POINTER_WEIGHT, TSG_SCAN_WEIGHT

    default = (TSG_POINTER_WEIGHT, TSG_SCAN_WEIGHT)
    result: dict[str, Any] = {"bench": bench, "split": split, "default": list(default), "checkpoints": {}}
    for ckpt in checkpoints:
        records = record(ckpt, bench, split, limit)
        grid = grid_scores(records)
        best = max(grid, key=lambda k: (round(grid[k], 6), k == default))
        gain, se = mean_difference(100 * (_hits(records, *best) - _hits(records, *default)))
        result["checkpoints"][ckpt] = {
            "questions": len(records), "scanned": sum("probs" in r for r in records),
            "written": round(_tsg(records, np.array([r["hit"] for r in records])), 2),
            "default": round(grid[default], 2), "best": list(best), "best_score": round(grid[best], 2),
            "gain": round(gain, 2), "standard_error": round(se, 2),
            "grid": {f"{a:g},{b:g}": round(v, 2) for (a, b), v in grid.items()}}
    return result


def main() -> None:
    """CLI entry point: print and save the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True, help="a MusT checkpoint (a final/ directory); repeat")
    ap.add_argument("--bench", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int, default=None, help="first N TSG questions")
    ap.add_argument("--out", default="runs/benchmarks")
    a = ap.parse_args()
    result = run(a.model, a.bench, a.split, a.limit)
    lines = ["| checkpoint | questions | written | default (a, b) | best (a, b) | gain, paired |", "|---|---:|---:|---:|---:|---:|"]
    for ckpt, r in result["checkpoints"].items():
        lines.append(f"| {ckpt} | {r['questions']} | {r['written']} | {r['default']} ({result['default'][0]:g}, "
                     f"{result['default'][1]:g}) | {r['best_score']} ({r['best'][0]:g}, {r['best'][1]:g}) | "
                     f"{r['gain']:+.1f} ± {r['standard_error']:.1f} |")
    save_table(a.out, "tsg_weights", result, f"TSG under choices=constrained, pointer power a and scan weight b "
               f"({a.split})", lines)


if __name__ == "__main__":
    main()
