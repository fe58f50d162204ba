"""How much of LTR a MusT checkpoint's frame heads answer without its LM: at the asked second, each option's
clauses are scored from the heads — a source's activity change for "enters"/"stops", the rhythm-change
probability for tempo, the loudness change for louder/softer — and "No noticeable change" scores a fixed
threshold. It separates what the encoder hears from what the LM makes of it.

``python -m benchmarks.ltr_readout CHECKPOINT --bench DIR [--limit 150] --out DIR`` (the items
``must-bench evaluate --limit`` takes).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["clause_evidence", "second_evidence", "run"]

THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.3)
_CLAUSE = re.compile(r"^(?:the )?(.+?) (enters|enter|stops|stop)$")


def second_evidence(model, wave: np.ndarray) -> dict[str, torch.Tensor]:
    """Per second of a track: head probabilities, their change over ±2 s, and the change of relative loudness —
    read from the pooled seconds MusT itself adds to its time tokens (:meth:`MusTModel.pool`)."""
    from must.model.modeling import contrast

    enc, h = model.config.encoder_dim, model.config.n_heads_out
    pooled = model.model.pool(model.encode_audio(wave))  # frame mean, frame max, probs, their change, track signals
    probs, change = pooled[:, 2 * enc : 2 * enc + h], pooled[:, 2 * enc + h : 2 * enc + 2 * h]
    signals = pooled[:, -model.model.n_track_signals :]  # after source context, when the model has it
    return {"probs": probs, "change": change, "loudness_change": contrast(signals[:, :1])[:, 0]}


def clause_evidence(clause: str, at: int, ev: dict[str, torch.Tensor], sources: list[str]) -> float | None:
    """Evidence for one option clause within a second of ``at`` (``None`` for "no noticeable change")."""
    from bench.synth.instruments import display

    c = clause.strip().lower()
    window = slice(max(0, at - 1), min(len(ev["probs"]), at + 2))
    names = {display(s): i for i, s in enumerate(sources)}
    m = _CLAUSE.match(c)
    if m and m.group(1) in names:
        change = ev["change"][window, 2 + names[m.group(1)]]  # heads: transition, rhythm change, then activity
        return float(change.max() if m.group(2).startswith("enter") else (-change).max())
    if "tempo" in c:
        return float(ev["probs"][window, 1].max()) - 0.3
    if "louder" in c or "softer" in c:
        sign = 1 if "louder" in c else -1
        return 2 * float((sign * ev["loudness_change"][window]).max())
    if "no noticeable change" in c:
        return None
    raise ValueError(f"unrecognised LTR option clause {clause!r}")


def run(checkpoint: str, bench: str, limit: int = 150) -> dict[str, Any]:
    """LTR accuracy of the head readout for each "no change" threshold, on the first ``limit`` test items."""
    from bench.evaluate.runner import select_items
    from bench.io import load_bench
    from must.answers import option_clauses, option_texts
    from must.audio import load_audio
    from must.model import MusTForCausalLM
    from must.timecode import parse_time

    model = MusTForCausalLM.from_pretrained(checkpoint).eval()
    items = select_items(load_bench(bench, "test"), ["LTR"], limit, (0, 1))
    evidence: dict[str, dict] = {}
    scored = []
    for item in items.to_dict("records"):
        if item["audio"] not in evidence:
            evidence[item["audio"]] = second_evidence(model, load_audio(item["audio"], model.config.sample_rate)[0])
        ev = evidence[item["audio"]]
        at = min(int(parse_time(re.search(r"\bat (\d+:\d\d)", item["question"]).group(1))), len(ev["probs"]) - 1)
        options = {letter: [clause_evidence(c, at, ev, model.config.sources) for c in option_clauses(text)]
                   for letter, text in option_texts(item["question"]).items()}
        scored.append((item["answer"], options))
    accuracy = {}
    for tau in THRESHOLDS:
        def score(clauses: list[float | None]) -> float:
            return tau if clauses == [None] else float(np.mean([x for x in clauses if x is not None]))

        right = sum(max(opts, key=lambda k: score(opts[k])) == answer for answer, opts in scored)
        accuracy[f"no-change threshold {tau}"] = round(100 * right / max(len(scored), 1), 1)
    return {"checkpoint": checkpoint, "items": len(scored), "tracks": len(evidence), "LTR accuracy": accuracy}


def main(argv: list[str] | None = None) -> int:
    """Print and save the readout's LTR accuracy."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.ltr_readout", description=__doc__)
    p.add_argument("checkpoint")
    p.add_argument("--bench", required=True)
    p.add_argument("--limit", type=int, default=150)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    with torch.no_grad():
        result = run(args.checkpoint, args.bench, args.limit)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ltr_readout.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
