"""Turn per-track drafts into benchmark rows: stable ids, option letters, answer balance (MUSIC-AVQA v2 style).

- LTR / GTO: within each split the correct letter cycles through A–D / A–F over a seeded shuffle, so
  letter shares differ by at most one question.
- Binary answers (yes/no) may not exceed 60 % and multiclass answers 50 % within a split and
  question type; questions of an over-represented answer are dropped (deterministically) until they don't.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np

from bench.tasks.base import Draft
from bench.tasks.gto import ORDERINGS, QUESTION
from must.answers import LETTERS

__all__ = ["finalize", "cap_answer_share", "format_ltr", "format_gto"]

BINARY_CAP, MULTICLASS_CAP = 0.60, 0.50


def format_ltr(stem: str, options: list[str], letter: str, rng: np.random.Generator) -> tuple[str, str]:
    """LTR question text with the correct option (``options[0]``) placed at ``letter``."""
    target = LETTERS.index(letter)
    distractors = [options[1 + int(i)] for i in rng.permutation(len(options) - 1)]
    ordered = distractors[:target] + [options[0]] + distractors[target:]
    lines = "\n".join(f"{LETTERS[i]}: {o}" for i, o in enumerate(ordered))
    return f"{stem}\n\n{lines}", letter


def format_gto(stem: str, chronological: list[str], letter: str) -> tuple[str, str]:
    """GTO question text whose correct ordering is option ``letter``."""
    perm = ORDERINGS[LETTERS.index(letter)]  # label of the 1st, 2nd, 3rd event in time
    by_label = {label: text for label, text in zip(perm, chronological)}
    listed = "\n".join(f"({lab}) {by_label[lab]}" for lab in "XYZ")
    orders = "\n".join(f"{LETTERS[i]}: " + " → ".join(f"({x})" for x in o) for i, o in enumerate(ORDERINGS))
    return f"{stem}\n{listed}\n\n{QUESTION}\n{orders}", letter


def cap_answer_share(rows: list[dict[str, Any]], cap: float) -> list[dict[str, Any]]:
    """Drop rows of the most common answer (last ids first) until its share is at most ``cap``."""
    rows = sorted(rows, key=lambda r: r["id"])
    while rows:
        counts = Counter(r["answer"] for r in rows)
        top, n = counts.most_common(1)[0]
        if n <= cap * len(rows) or len(counts) == 1:
            break
        excess = int(np.ceil((n - cap * len(rows)) / (1 - cap)))
        drop = {r["id"] for r in [r for r in rows if r["answer"] == top][-excess:]}
        rows = [r for r in rows if r["id"] not in drop]
    return rows


def finalize(drafts: dict[str, list[Draft]], meta: dict[str, dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Rows for every track's drafts; ``meta[track_id]`` gives ``split``, ``audio`` and ``duration``."""
    rows = []
    for track_id in sorted(drafts):
        counters: Counter = Counter()
        for d in drafts[track_id]:
            counters[d.task] += 1
            row = dict(id=f"{track_id}-{d.task}-{counters[d.task]:02d}", track_id=track_id, task=d.task,
                       category=d.category, qa_type=d.qa_type, question=d.question, answer=d.answer,
                       answers=list(d.answers), events=json.dumps(d.events), _options=d.options, **meta[track_id])
            rows.append(row)
    out = []
    for split in sorted({r["split"] for r in rows}):
        in_split = [r for r in rows if r["split"] == split]
        for task, n_letters in (("LTR", 4), ("GTO", 6)):
            mc = sorted((r for r in in_split if r["task"] == task), key=lambda r: r["id"])
            rng = np.random.default_rng([seed, len(split), n_letters])
            for k, i in enumerate(rng.permutation(len(mc))):
                r, letter = mc[int(i)], LETTERS[k % n_letters]
                if task == "LTR":
                    r["question"], r["answer"] = format_ltr(r["question"], r["_options"], letter, rng)
                else:
                    r["question"], r["answer"] = format_gto(r["question"], r["_options"], letter)
                r["answers"] = [r["answer"]]
        avqa = [r for r in in_split if r["task"] == "AVQA"]
        kept = set()
        for key in sorted({(r["category"], r["qa_type"]) for r in avqa}):
            group = [r for r in avqa if (r["category"], r["qa_type"]) == key]
            binary = {r["answer"] for r in group} <= {"yes", "no"}
            kept |= {r["id"] for r in cap_answer_share(group, BINARY_CAP if binary else MULTICLASS_CAP)}
        out += [r for r in in_split if r["task"] != "AVQA" or r["id"] in kept]
    for r in out:
        r.pop("_options", None)
    return sorted(out, key=lambda r: r["id"])
