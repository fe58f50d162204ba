"""``must-bench report RUN [RUN ...] --out DIR``: compare runs side by side (Markdown, JSON, PNG plots).

Writes ``report.md`` (leaderboard in MusTBench's column order, AVQA buckets, each later run's paired differences
from the first on the questions both answered, the environments the runs were computed in, worst items per run),
``report.json``, and plots: ``tasks.png`` (per-task scores), ``tsg_errors.png`` (TSG absolute time error
histogram), ``mtr_iou.png`` (MTR IoU distribution), ``letters.png`` (LTR/GTO letter confusion).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from bench.evaluate.paired import paired_differences, paired_over_seeds
from must.answers import LETTERS
from must.environment import identity

__all__ = ["load_run", "leaderboard_rows", "letter_confusion", "environment_section", "write_report", "COLUMNS"]

COLUMNS = [("TSG_onset", "TSG on"), ("TSG_offset", "TSG off"), ("LTR", "LTR"), ("TAD_METEOR", "METEOR"),
           ("TAD_semantic", "semantic"), ("GTO", "GTO"), ("MTR_IoU", "IoU"), ("MTR_F1", "F1"), ("overall", "overall")]


def load_run(path: str | Path) -> dict[str, Any]:
    """A finished run: name, scores and per-item lines (``FileNotFoundError`` if it has no scores)."""
    p = Path(path)
    scores_file = p / "scores.json"
    if not scores_file.exists():
        raise FileNotFoundError(f"{p}: no scores.json (the run is unfinished, or this is not a run directory)")
    meta = json.loads((p / "run.json").read_text()) if (p / "run.json").exists() else {}
    from bench.evaluate.runner import read_run_lines

    lines: dict[str, dict] = {}
    for f in sorted(p.glob("predictions*.jsonl")):
        lines.update(read_run_lines(f))
    items = sorted(lines.values(), key=lambda i: i["id"])
    return {"name": meta.get("model_name") or p.name, "path": str(p), "scores": json.loads(scores_file.read_text()),
            "items": items, "meta": meta}


def leaderboard_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
    """Rows of the leaderboard, best overall first."""
    ordered = sorted(runs, key=lambda r: -r["scores"].get("overall", -1))
    return [[r["name"]] + [f"{r['scores'][k]:.1f}" if k in r["scores"] else "–" for k, _ in COLUMNS] for r in ordered]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _avqa_rows(runs: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    keys: list[str] = []
    for r in runs:
        keys += [k for k in r["scores"].get("AVQA", {}) if k not in keys]
    return ["model", *keys], [[r["name"]] + [f"{r['scores'].get('AVQA', {}).get(k, float('nan')):.1f}" for k in keys] for r in runs]


def _short_commit(commit: str | None) -> str:
    if not commit:
        return "—"
    return commit[:10] + ("+dirty" if commit.endswith("+dirty") else "")


def environment_section(runs: list[dict[str, Any]]) -> list[str]:
    """Markdown lines naming what the runs were computed with: a table of the commit, CPU and package versions that
    differ between them, one sentence for what they share; empty when no run recorded its environment."""
    known = [(r["name"], r["meta"]["environment"]) for r in runs if r.get("meta", {}).get("environment")]
    if not known:
        return []
    ids = [identity(env) for _, env in known]
    for i in ids:
        i["commit"] = _short_commit(i["commit"])
    fields = {k: [i.get(k) for i in ids] for k in dict.fromkeys(k for i in ids for k in i)}
    differ = [k for k, values in fields.items() if len(set(values)) > 1]
    lines = ["## Environments", ""]
    if differ:
        rows = [[name, *[str(fields[k][i] or "—") for k in differ]] for i, (name, _) in enumerate(known)]
        lines += [_md_table(["model", *differ], rows), ""]
    shared = [f"{k} {values[0]}" for k, values in fields.items() if k not in differ and values[0] not in (None, "—")]
    if shared:
        lines += [("Every run" if len(known) > 1 else known[0][0]) + ": " + ", ".join(shared) + ".", ""]
    unknown = [r["name"] for r in runs if not r.get("meta", {}).get("environment")]
    if unknown:
        lines += ["Not recorded (run.json written before it held the environment): " + ", ".join(unknown) + ".", ""]
    return lines


def _worst(run: dict[str, Any], n: int = 3) -> list[str]:
    out = []
    for task, key, worst_first in (("TSG", "error", True), ("MTR", "iou", False), ("LTR", "correct", False),
                                   ("GTO", "correct", False), ("TAD", "semantic", False)):
        items = [i for i in run["items"] if i["task"] == task]
        if not items:
            continue
        def value(i: dict) -> float:
            v = (i.get("scores") or {}).get(key)
            if v is None:
                return float("inf") if worst_first else -1.0
            return v
        for i in sorted(items, key=value, reverse=worst_first)[:n]:
            q = i["question"].split("\n")[0]
            pred = (i.get("prediction") or i.get("error") or "").replace("\n", " ")[:120]
            out.append(f"| {task} | {q[:90]} | {i['answer'][:60]} | {pred} |")
    return out


def _save(fig, out: Path, name: str, written: list[str]) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    written.append(name)


# tuples, not strings: `"" in "ABCD"` is true
CHOICE_LETTERS = {"LTR": tuple(LETTERS[:4]), "GTO": tuple(LETTERS)}


def letter_confusion(items: list[dict[str, Any]], task: str) -> np.ndarray:
    """Counts of (true letter, answered letter) for ``task``'s items; the last column counts unparsed answers."""
    letters = CHOICE_LETTERS[task]
    m = np.zeros((len(letters), len(letters) + 1))
    for i in items:
        if i["task"] == task and i["answer"] in letters:
            p = i.get("parsed")
            m[letters.index(i["answer"]), letters.index(p) if p in letters else len(letters)] += 1
    return m


def _plots(runs: list[dict[str, Any]], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    tasks = [k for k, _ in COLUMNS]
    fig, ax = plt.subplots(figsize=(11, 4))
    width = 0.8 / max(len(runs), 1)
    for j, r in enumerate(runs):
        ax.bar(np.arange(len(tasks)) + j * width, [r["scores"].get(k, 0) for k in tasks], width, label=r["name"])
    ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2, [lab for _, lab in COLUMNS])
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, ncol=min(len(runs), 4))
    ax.set_title("MusTBench sub-metrics")
    _save(fig, out, "tasks.png", written)

    fig, ax = plt.subplots(figsize=(7, 4))
    bins = [0, 1, 2, 3, 5, 10, 20, 40, 80, 160, 1e9]
    for r in runs:
        errs = [i["scores"].get("error", np.inf) for i in r["items"] if i["task"] == "TSG"]
        counts = np.histogram(np.clip(errs, 0, 1e8), bins=bins)[0] if errs else np.zeros(len(bins) - 1)
        ax.plot(range(len(counts)), counts / max(len(errs), 1), marker="o", label=r["name"])
    ax.set_xticks(range(len(bins) - 1), ["<1", "1-2", "2-3", "3-5", "5-10", "10-20", "20-40", "40-80", "80-160", ">160\n/none"], fontsize=8)
    ax.set_xlabel("|predicted − reference| (s)")
    ax.set_ylabel("share of TSG questions")
    ax.axvline(2.5, color="grey", ls=":")
    ax.legend(fontsize=8)
    ax.set_title("TSG time error (Hit@3s left of the dotted line)")
    _save(fig, out, "tsg_errors.png", written)

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in runs:
        ious = [i["scores"].get("iou", 0.0) for i in r["items"] if i["task"] == "MTR"]
        if ious:
            ax.hist(ious, bins=np.linspace(0, 1, 11), histtype="step", linewidth=2, label=r["name"])
    ax.set_xlabel("MTR IoU")
    ax.set_ylabel("questions")
    ax.legend(fontsize=8)
    ax.set_title("MTR IoU distribution")
    _save(fig, out, "mtr_iou.png", written)

    mc = [(r, t) for r in runs for t in ("LTR", "GTO") if any(i["task"] == t for i in r["items"])]
    if mc:
        fig, axes = plt.subplots(1, len(mc), figsize=(2.6 * len(mc), 2.8), squeeze=False)
        for ax, (r, t) in zip(axes[0], mc):
            letters = CHOICE_LETTERS[t]
            ax.imshow(letter_confusion(r["items"], t), cmap="Blues")
            ax.set_xticks(range(len(letters) + 1), list(letters) + ["∅"], fontsize=7)
            ax.set_yticks(range(len(letters)), list(letters), fontsize=7)
            ax.set_title(f"{r['name']} {t}", fontsize=8)
            ax.set_xlabel("predicted", fontsize=7)
            ax.set_ylabel("true", fontsize=7)
        _save(fig, out, "letters.png", written)
    return written


def write_report(run_paths: list[str | Path], out: str | Path,
                 pairs: list[tuple[str | Path, str | Path]] | None = None) -> dict[str, Any]:
    """Write the comparison report for ``run_paths`` into ``out``, and for ``pairs`` of runs ``(base, other)``, one
    per training seed, the differences over all of them (:func:`~bench.evaluate.paired.paired_over_seeds`); returns
    the JSON written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = [(str(a), str(b)) for a, b in (pairs or [])]
    paths = list(dict.fromkeys([str(p) for p in run_paths] + [p for pair in pairs for p in pair]))
    if not paths:
        raise ValueError("nothing to report: give runs, pairs of runs, or both")
    loaded = {p: load_run(p) for p in paths}
    runs = list(loaded.values())
    name_counts = Counter(r["name"] for r in runs)
    for r in runs:  # two checkpoints' stages share a name (must:stage4_grpo): tell them apart by their run directories
        if name_counts[r["name"]] > 1:
            r["name"] = f"{r['name']} ({Path(r['path']).name})"
    plots = _plots(runs, out)
    md = ["# must-bench report", "", "## Leaderboard (MusTBench order, %)", "",
          _md_table(["model"] + [lab for _, lab in COLUMNS], leaderboard_rows(runs)), ""]
    if any("AVQA" in r["scores"] for r in runs):
        header, rows = _avqa_rows(runs)
        md += ["## AVQA accuracy (MUSIC-AVQA protocol, %)", "", _md_table(header, rows), ""]
    listed = [loaded[str(p)] for p in run_paths]
    paired = {r["name"]: paired_differences(listed[0], r) for r in listed[1:]}
    for name, rows in paired.items():
        md += [f"## Paired with {listed[0]['name']} — {name}", "",
               "Differences in points on the questions both runs scored (± one standard error of the mean difference).", "",
               _md_table(["metric", "questions", "difference", "higher", "lower"],
                         [[x["metric"], str(x["n"]), f"{x['difference']:+.1f} ± {x['standard_error']:.1f}",
                           str(x["higher"]), str(x["lower"])] for x in rows]), ""]
    seeds = paired_over_seeds([(loaded[a], loaded[b]) for a, b in pairs]) if pairs else []
    if pairs:
        md += [f"## Paired over {len(pairs)} seeds", "",
               "Each pair's second run minus its first, on the questions every run scored, in points; ± one standard "
               "error counting both the questions drawn and the seeds trained (bench/evaluate/paired.py). Pairs: "
               + "; ".join(f"{loaded[b]['name']} − {loaded[a]['name']}" for a, b in pairs) + ".", "",
               _md_table(["metric", "seeds", "questions", "difference", "per seed", "higher", "lower"],
                         [[x["metric"], str(x["seeds"]), str(x["n"]), f"{x['difference']:+.1f} ± {x['standard_error']:.1f}",
                           " ".join(f"{v:+.1f}" for v in x["per_seed"]), str(x["higher"]), str(x["lower"])]
                          for x in seeds]), ""]
    md += environment_section(runs)
    md += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    md += ["## Unparsed answers and errors", "", _md_table(
        ["model", "unparsed", "errors", "items"],
        [[r["name"], str(sum(r["scores"].get("unparsed", {}).values())), str(sum(r["scores"].get("errors", {}).values())),
          str(r["scores"].get("n", {}).get("total", ""))] for r in runs]), ""]
    for r in runs:
        md += [f"## Worst items — {r['name']}", "", "| task | question | reference | answer |", "|---|---|---|---|", *_worst(r), ""]
    (out / "report.md").write_text("\n".join(md))
    data = {"runs": [{"name": r["name"], "path": r["path"], "scores": r["scores"],
                      "environment": r["meta"].get("environment")} for r in runs], "plots": plots,
            "paired_with_first": paired, "paired_over_seeds": {"pairs": [list(p) for p in pairs], "rows": seeds}}
    (out / "report.json").write_text(json.dumps(data, indent=2))
    return data
