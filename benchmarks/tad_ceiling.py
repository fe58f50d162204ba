"""What a TAD description scores when what it says is right: the benchmark's TAD references scored against the
description MusT is trained to write, made from the annotation (:func:`bench.tasks.phrasing.describe_moment` without
a generator: every change, an entry's role, what keeps playing) — the ceiling of a model that always writes that one
wording — and, given an evaluation's predictions, those predictions as written, with their change (what comes before
", while the …") replaced by the annotation's, and with what keeps playing replaced by the annotation's; and how
often a prediction names the moment's first change, by kind of change (a source entering or stopping, the tempo, the
dynamics).

``python -m benchmarks.tad_ceiling --bench runs/standard/bench [--split test] [--predictions RUN/predictions.jsonl]
--out DIR``
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.figures import save_table

if TYPE_CHECKING:
    from must.annotation import Event

__all__ = ["split_description", "names_change", "run"]

KEEPS = ", while the "


def split_description(text: str) -> tuple[str, str]:
    """A description's change and what keeps playing: ``"The drums enter, while the piano keeps playing."`` →
    ``("The drums enter", ", while the piano keeps playing")``; the second part is empty when there is none."""
    head, sep, tail = text.strip().rstrip(".").partition(KEEPS)
    return head, sep + tail


def names_change(description: str, event: Event) -> bool:
    """Whether a description's change (before ", while the …") names ``event`` in the benchmark's short wording
    (:func:`bench.tasks.phrasing.event_option`) or as a description opens on it
    (:func:`~bench.tasks.phrasing.description_opening`: "… gets noticeably louder")."""
    from bench.tasks.phrasing import description_opening, event_option

    said = " ".join(split_description(description)[0].lower().split())
    return any(w in said for w in (event_option(event), description_opening(event)))


def _predictions(path: str | None) -> dict[str, str]:
    """Question id → prediction text of an evaluation's ``predictions.jsonl`` (failed items as empty text)."""
    from bench.evaluate.runner import read_run_lines

    if not path:
        return {}
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such predictions file")
    return {i: r.get("prediction") or "" for i, r in read_run_lines(Path(path)).items()}


def run(bench: str, split: str = "test", predictions: str | None = None, limit: int | None = None) -> dict:
    """Mean METEOR, semantic similarity and their mean (percent) of each variant over the TAD questions of ``split``
    (the first ``limit`` of them)."""
    from bench.annotate.jams_io import read_jams
    from bench.io import load_bench
    from bench.scoring import TextScorer
    from bench.tasks.phrasing import describe_moment
    from must.annotation import Event
    from must.schema import row_events

    questions = load_bench(bench, split).query("task == 'TAD'").head(limit)
    preds = _predictions(predictions)
    scorer, annotations = TextScorer(), {}
    scores: dict[str, list[tuple[float, float]]] = {}
    named: dict[str, list[bool]] = {}
    for q in questions.to_dict("records"):
        if q["track_id"] not in annotations:
            annotations[q["track_id"]] = read_jams(Path(bench) / "jams" / f"{q['track_id']}.jams")
        moment = [Event(**e) for e in row_events(q["events"])]
        full = describe_moment(moment, annotations[q["track_id"]], None)
        variants = {"the annotation's description": full}
        if q["id"] in preds:
            named.setdefault(moment[0].kind, []).append(names_change(preds[q["id"]], moment[0]))
            said, right = split_description(preds[q["id"]]), split_description(full)
            variants |= {"as predicted": preds[q["id"]], "the right change": f"{right[0]}{said[1]}.",
                         "the right sources still playing": f"{said[0]}{right[1]}."}
        for name, text in variants.items():
            s = scorer([str(a) for a in q["answers"]], text)
            scores.setdefault(name, []).append((s["meteor"], s["semantic"]))
    table = {}
    for name, rows in scores.items():
        meteor, semantic = 100 * np.array(rows).mean(0)
        table[name] = {"n": len(rows), "METEOR": round(float(meteor), 1), "semantic": round(float(semantic), 1),
                       "TAD": round(float(meteor + semantic) / 2, 1)}
    kinds = {kind: {"n": len(hits), "named": round(100 * float(np.mean(hits)), 1)} for kind, hits in sorted(named.items())}
    if named:
        every = [h for hits in named.values() for h in hits]
        kinds["all"] = {"n": len(every), "named": round(100 * float(np.mean(every)), 1)}
    return {"bench": bench, "split": split, "predictions": predictions, "questions": len(questions), "scores": table,
            "first_change_named": kinds}


def main(argv: list[str] | None = None) -> None:
    """CLI entry point: print and save the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--predictions", default=None, help="an evaluation's predictions.jsonl")
    ap.add_argument("--limit", type=int, default=None, help="first N TAD questions")
    ap.add_argument("--out", default="runs/benchmarks")
    a = ap.parse_args(argv)
    result = run(a.bench, a.split, a.predictions, a.limit)
    lines = ["| description | questions | METEOR | semantic | TAD |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {k} | {v['n']} | {v['METEOR']} | {v['semantic']} | {v['TAD']} |" for k, v in result["scores"].items()]
    if result["first_change_named"]:
        lines += ["", "| first change of the moment | questions | named (%) |", "|---|---:|---:|"]
        lines += [f"| {k} | {v['n']} | {v['named']} |" for k, v in result["first_change_named"].items()]
    save_table(a.out, "tad_ceiling", result, f"{result['questions']} TAD questions ({a.split})", lines)


if __name__ == "__main__":
    main()
