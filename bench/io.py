"""Load benchmarks (Parquet files, built benchmark directories, MUSIC-AVQA JSON) and prediction files."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from must.schema import BenchFormatError, read_parquet_bench, validate_bench

__all__ = ["load_bench", "read_avqa_json", "read_predictions", "bench_root", "iter_jsonl"]

log = logging.getLogger(__name__)


def bench_root(path: str | Path) -> Path:
    """The directory that relative ``audio`` paths of a benchmark are resolved against."""
    p = Path(path)
    if p.is_dir():
        return p
    return p.parent.parent if p.parent.name == "parquet" else p.parent


def read_avqa_json(path: str | Path) -> pd.DataFrame:
    """Official MUSIC-AVQA question JSON → benchmark rows (task ``AVQA``; placeholders filled)."""
    try:
        records = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BenchFormatError(f"{path}: not a readable MUSIC-AVQA JSON file ({e})") from e
    if not isinstance(records, list):
        raise BenchFormatError(f"{path}: expected a JSON list of questions")
    rows = []
    for i, r in enumerate(records):
        try:
            modality, qtype = json.loads(r["type"])
            words = []
            values = iter(json.loads(r.get("templ_values") or "[]"))
            # Fill placeholders in order, as the official data loader does word by word.
            for w in r["question_content"].rstrip("?？").split(" "):
                if w.startswith("<") and ">" in w:
                    w = next(values, w)
                words.append(w)
            question = " ".join(words) + "?"
            rows.append(
                dict(id=str(r["question_id"]), track_id=str(r["video_id"]), task="AVQA", category=modality,
                     qa_type=qtype, question=question, answer=str(r["anser"]), answers=[str(r["anser"])],
                     split="test")
            )
        except (KeyError, TypeError, ValueError) as e:
            raise BenchFormatError(f"{path}: question {i}: malformed MUSIC-AVQA record ({type(e).__name__}: {e})") from e
    return validate_bench(pd.DataFrame(rows), str(path))


def load_bench(path: str | Path, split: str | None = None) -> pd.DataFrame:
    """A benchmark as a validated table: a Parquet, a built directory (``parquet/*.parquet``) or AVQA JSON.

    ``audio`` paths are made absolute. ``split`` filters rows (a built directory defaults to ``test``).
    """
    p = Path(path)
    if not p.exists():
        raise BenchFormatError(f"{p}: benchmark not found")
    if p.is_dir():
        files = sorted((p / "parquet").glob("*.parquet")) or sorted(p.glob("*.parquet"))
        if not files:
            raise BenchFormatError(f"{p}: no Parquet files (expected {p}/parquet/<split>.parquet)")
        df = pd.concat([read_parquet_bench(f) for f in files], ignore_index=True)
        df = validate_bench(df, str(p))
        split = split or "test"
    elif p.suffix == ".json":
        df = read_avqa_json(p)
    else:
        df = read_parquet_bench(p)
    if split and split != "all":
        df = df[df["split"] == split].reset_index(drop=True)
        if df.empty:
            raise BenchFormatError(f"{p}: no rows in split {split!r}")
    root = bench_root(p)
    df["audio"] = [None if a is None or pd.isna(a) else str(a if Path(a).is_absolute() else root / a) for a in df["audio"]]
    return df


def iter_jsonl(path: str | Path):
    """``(line number, record or None, problem or None)`` for each non-empty line (bytes that are not UTF-8 replaced)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                yield n, None, f"not valid JSON ({e.msg})"
                continue
            yield (n, rec, None) if isinstance(rec, dict) else (n, None, "expected a JSON object")


def read_predictions(path: str | Path) -> dict[str, str]:
    """Predictions by id from JSONL/JSON, Parquet or CSV with ``id`` (or ``question_id``) and ``prediction``.

    A malformed line or row raises :class:`BenchFormatError` naming the file and line; a repeated id
    keeps the last prediction (later lines of a resumed run win) and is logged.
    """
    p = Path(path)
    if not p.exists():
        raise BenchFormatError(f"{p}: predictions file not found")
    if p.suffix in (".parquet", ".csv"):
        try:
            df = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p, keep_default_na=False)
        except Exception as e:
            raise BenchFormatError(f"{p}: not a readable {p.suffix[1:]} file ({type(e).__name__}: {e})") from e
        records = df.to_dict("records")
        where = "row"
    else:
        records, where = [], "line"
        for n, rec, problem in iter_jsonl(p):
            if problem:
                raise BenchFormatError(f"{p}: line {n}: {problem}")
            records.append(rec)
    out: dict[str, str] = {}
    for n, rec in enumerate(records, 1):
        key = rec.get("id", rec.get("question_id"))
        if key is None or "prediction" not in rec:
            raise BenchFormatError(f"{p}: {where} {n}: needs 'id' (or 'question_id') and 'prediction'; has {sorted(rec)}")
        key = str(key)
        if key in out:
            log.warning("%s: %s %d: repeated id %s, keeping the later prediction", p, where, n, key)
        pred = rec["prediction"]
        out[key] = "" if pred is None or (isinstance(pred, float) and pd.isna(pred)) else str(pred)
    return out
