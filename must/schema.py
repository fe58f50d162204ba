"""The benchmark item data model: MusTBench's columns plus audio, duration and source events.

A benchmark is a table with one row per question. The first nine columns are MusTBench's, in its
order, so a benchmark released as a MusTBench Parquet loads unchanged; the suite adds ``audio``
(path relative to the benchmark directory, or absolute), ``duration`` (seconds) and ``events``
(JSON list of the annotation events the question was generated from). AVQA rows use
``category`` for the modality (``Audio``, ``Visual``, ``Audio-Visual``) and ``qa_type`` for the
question type (``Counting``, ``Comparative``, ``Location``, ``Existential``, ``Temporal``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "MUSTBENCH_COLUMNS",
    "EXTRA_COLUMNS",
    "COLUMNS",
    "TASKS",
    "BenchFormatError",
    "Item",
    "row_events",
    "validate_bench",
    "read_parquet_bench",
    "write_parquet_bench",
]

MUSTBENCH_COLUMNS = ["id", "track_id", "task", "category", "qa_type", "question", "answer", "answers", "split"]
EXTRA_COLUMNS = ["audio", "duration", "events"]
COLUMNS = MUSTBENCH_COLUMNS + EXTRA_COLUMNS
TASKS = ("TSG", "LTR", "TAD", "GTO", "MTR", "AVQA")


class BenchFormatError(ValueError):
    """A benchmark or predictions file that cannot be used; the message names the file and row."""


@dataclass
class Item:
    """One benchmark question (a row of the table)."""

    id: str
    track_id: str
    task: str
    question: str
    answer: str
    answers: list[str]
    split: str = "test"
    category: str | None = None
    qa_type: str | None = None
    audio: str | None = None
    duration: float | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    def to_row(self) -> dict[str, Any]:
        """The item as a table row (``events`` serialised to JSON)."""
        row = {c: getattr(self, c) for c in COLUMNS}
        row["events"] = json.dumps(self.events)
        row["answers"] = list(self.answers)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Item":
        """An item from a table row (missing suite columns default to empty)."""
        duration = row.get("duration")
        return cls(
            id=str(row["id"]),
            track_id=str(row["track_id"]),
            task=str(row["task"]),
            question=str(row["question"]),
            answer=str(row["answer"]),
            answers=[str(a) for a in _as_list(row.get("answers"), row["answer"])],
            split=str(row.get("split") or "test"),
            category=_none_if_na(row.get("category")),
            qa_type=_none_if_na(row.get("qa_type")),
            audio=_none_if_na(row.get("audio")),
            duration=None if duration is None or pd.isna(duration) else float(duration),
            events=row_events(row.get("events")),
        )


def row_events(value: Any) -> list[dict[str, Any]]:
    """A row's ``events`` column as a list of dicts: JSON text as written to Parquet, or a list or array as read
    back; missing (None, NaN, empty text) is an empty list."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return []
    if isinstance(value, str):
        return json.loads(value) if value.strip() else []
    return list(value)


def _none_if_na(v: Any) -> Any:
    return None if v is None or (isinstance(v, float) and pd.isna(v)) else v


def _as_list(v: Any, fallback: Any) -> list:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return [fallback]
    if isinstance(v, str):
        return [v]
    out = list(v)
    return out or [fallback]


def validate_bench(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check columns, tasks and ids; return the frame with suite columns added (``BenchFormatError`` otherwise)."""
    missing = [c for c in ("id", "track_id", "task", "question", "answer") if c not in df.columns]
    if missing:
        raise BenchFormatError(f"{source}: missing column(s) {missing}; have {list(df.columns)}")
    df = df.copy()
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = None
    df["id"] = df["id"].astype(str)
    dup = df["id"].duplicated(keep="first")
    if dup.any():
        i = int(dup.to_numpy().nonzero()[0][0])
        raise BenchFormatError(f"{source}: row {i}: duplicate id {df['id'].iloc[i]!r} ({int(dup.sum())} duplicates)")
    bad = ~df["task"].isin(TASKS)
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise BenchFormatError(
            f"{source}: row {i} (id {df['id'].iloc[i]!r}): unknown task {df['task'].iloc[i]!r}; expected one of {TASKS}"
        )
    df["answers"] = [_as_list(a, b) for a, b in zip(df["answers"], df["answer"])]
    df["split"] = df["split"].fillna("test")
    return df[COLUMNS + [c for c in df.columns if c not in COLUMNS]]


def read_parquet_bench(path: str | Path) -> pd.DataFrame:
    """Read one benchmark Parquet (MusTBench or suite columns), validated."""
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise BenchFormatError(f"{path}: not a readable Parquet file ({type(e).__name__}: {e})") from e
    return validate_bench(df, str(path))


def write_parquet_bench(df: pd.DataFrame, path: str | Path) -> None:
    """Write a benchmark table to Parquet with the suite's column order."""
    df = validate_bench(df, str(path))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path, index=False)
