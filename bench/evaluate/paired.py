"""Paired differences between runs on the questions they share: one pair of runs, or one pair per training seed.

Two runs of one benchmark compared question by question cancel each question's difficulty, so they can differ
significantly by less than either score's own sampling error. With several seeds (pairs of runs ``(base_i,
other_i)``, e.g. stage 3 and stage 4 of ``k`` independent trainings), the differences form a seeds × questions table,
and its mean has two sources of error: which questions the test split holds, and which training runs the seeds
gave. :func:`crossed_mean_difference` estimates both (a crossed two-way random-effects design), so a gain that is
within noise in every single run can still be established, or refused, over all of them.

Conventions, as in mir_eval: scores are in [0, 1] per question and differences are returned in points (×100);
``other − base``; questions enter only where every run of the comparison scored them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["ITEM_METRICS", "item_scores", "mean_difference", "crossed_mean_difference", "paired_differences",
           "paired_over_seeds"]

# per-item scores compared between runs: (task, score key, TSG question kind or None, label)
ITEM_METRICS = [("TSG", "hit", "onset", "TSG onset"), ("TSG", "hit", "offset", "TSG offset"),
                ("LTR", "correct", None, "LTR"), ("TAD", "meteor", None, "TAD METEOR"),
                ("TAD", "semantic", None, "TAD semantic"), ("GTO", "correct", None, "GTO"), ("MTR", "iou", None, "MTR IoU"),
                ("MTR", "f1", None, "MTR F1"), ("AVQA", "correct", None, "AVQA")]


def item_scores(run: dict[str, Any], task: str, key: str, kind: str | None = None) -> dict[str, float]:
    """``{question id: score}`` of one per-item score of a loaded run (only TSG questions of ``kind`` if given)."""
    return {i["id"]: float(i["scores"][key]) for i in run["items"]
            if i["task"] == task and key in (i.get("scores") or {}) and (kind is None or i.get("kind") == kind)}


def mean_difference(d: np.ndarray) -> tuple[float, float]:
    """The mean of per-question differences and its standard error (sample std / √n; NaN for a single question)."""
    d = np.asarray(d, dtype=float)
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return float(d.mean()), se


def crossed_mean_difference(strata: Sequence[np.ndarray], weights: Sequence[float]) -> tuple[float, float]:
    """``T = Σ_s w_s · mean(D_s)`` of per-seed, per-question differences ``D_s`` (seeds × questions arrays, the same
    seeds as rows of every stratum, e.g. TSG's onset and offset questions) and its standard error.

    The model is ``d_iq = μ + a_i + b_q + e_iq`` in each stratum: a seed effect, a question effect and noise. Per
    stratum, with ``k`` seeds and ``Q`` questions, the two-way ANOVA's mean squares give ``Var(mean) = (MS_seed +
    MS_question − MS_residual) / kQ`` (each of the first two raised to ``MS_residual`` when below it: a variance
    component is never negative); across strata the seed term is taken from the per-seed values of ``T`` itself, so a
    seed's effects on two strata may be correlated. With one seed this is the paired standard error
    (:func:`mean_difference`; NaN when a stratum has a single question).
    """
    mats = [np.asarray(d, dtype=float) for d in strata]
    if not mats or len(mats) != len(weights):
        raise ValueError(f"need one weight per stratum, got {len(mats)} strata and {len(weights)} weights")
    if any(m.ndim != 2 or m.size == 0 for m in mats) or len({m.shape[0] for m in mats}) != 1:
        raise ValueError(f"each stratum must be a non-empty seeds x questions array with the same seeds, got shapes "
                         f"{[m.shape for m in mats]}")
    if not all(np.isfinite(m).all() for m in mats):
        raise ValueError("differences must be finite")
    k = mats[0].shape[0]
    w = [float(x) for x in weights]
    mean = sum(wi * m.mean() for wi, m in zip(w, mats))
    if k == 1 and any(m.shape[1] == 1 for m in mats):
        return float(mean), float("nan")
    per_seed = sum(wi * m.mean(axis=1) for wi, m in zip(w, mats))
    seed_term = float(np.var(per_seed, ddof=1) / k) if k > 1 else 0.0
    question_terms, residual_terms = [], []
    for wi, m in zip(w, mats):
        q = m.shape[1]
        question_terms.append(wi ** 2 * float(np.var(m.mean(axis=0), ddof=1)) / q if q > 1 else 0.0)
        if k > 1 and q > 1:
            resid = m - m.mean(axis=1, keepdims=True) - m.mean(axis=0, keepdims=True) + m.mean()
            residual_terms.append(wi ** 2 * float((resid ** 2).sum()) / ((k - 1) * (q - 1)) / (k * q))
        else:
            residual_terms.append(0.0)
    residual = sum(residual_terms)
    var = (max(seed_term, residual) + sum(max(qt, rt) for qt, rt in zip(question_terms, residual_terms)) - residual)
    return float(mean), float(np.sqrt(max(var, 0.0)))


def paired_over_seeds(pairs: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per metric of :data:`ITEM_METRICS`, ``other − base`` over the pairs ``(base, other)`` of loaded runs, one pair
    per seed, on the questions every run scored: ``seeds``, ``n`` questions, the mean ``difference`` and its
    ``standard_error`` (:func:`crossed_mean_difference`), each seed's own difference (``per_seed``), and how many
    seed-question cells it scores ``higher`` and ``lower`` on; plus ``TSG``, the mean of the onset and offset rows as
    the benchmark averages them."""
    if not pairs:
        raise ValueError("no pairs of runs to compare")
    tables: dict[str, np.ndarray] = {}
    rows: list[dict[str, Any]] = []
    for task, key, kind, label in ITEM_METRICS:
        scored = [(item_scores(base, task, key, kind), item_scores(other, task, key, kind)) for base, other in pairs]
        common = sorted(set.intersection(*(set(a) & set(b) for a, b in scored)))
        if not common:
            continue
        d = np.array([[b[q] - a[q] for q in common] for a, b in scored])
        tables[label] = d
        rows.append(_row(label, [d], [1.0]))
    if "TSG onset" in tables and "TSG offset" in tables:
        at = next(i for i, r in enumerate(rows) if r["metric"] == "TSG offset") + 1
        rows.insert(at, _row("TSG", [tables["TSG onset"], tables["TSG offset"]], [0.5, 0.5]))
    return rows


def _row(label: str, strata: list[np.ndarray], weights: list[float]) -> dict[str, Any]:
    mean, se = crossed_mean_difference(strata, weights)
    per_seed = sum(w * d.mean(axis=1) for w, d in zip(weights, strata))
    return {"metric": label, "seeds": strata[0].shape[0], "n": sum(d.shape[1] for d in strata),
            "difference": round(100 * mean, 2), "standard_error": round(100 * se, 2),
            "per_seed": [round(100 * float(v), 2) for v in per_seed],
            "higher": int(sum((d > 0).sum() for d in strata)), "lower": int(sum((d < 0).sum() for d in strata))}


def paired_differences(base: dict[str, Any], other: dict[str, Any]) -> list[dict[str, Any]]:
    """Per metric of :data:`ITEM_METRICS`, ``other`` minus ``base`` on the questions both runs scored: ``n``, the mean
    difference and its standard error (sample std of the per-question differences / √n), in points (×100), and how
    many questions it scores higher and lower on; plus ``TSG``, the mean of the onset and offset rows."""
    keep = ("metric", "n", "difference", "standard_error", "higher", "lower")
    return [{k: r[k] for k in keep} for r in paired_over_seeds([(base, other)])]
