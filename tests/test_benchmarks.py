"""The benchmarks entry point writes JSON and Markdown, and a failing part does not lose the others."""

import json

from benchmarks.__main__ import main
from benchmarks.throughput import rewards


def test_reward_throughput_figures():
    out = rewards(2000)
    assert set(out["completions_per_s"]) >= {"timestamp_exp", "interval_iou"}
    assert all(v > 0 for v in out["completions_per_s"].values())


def test_entry_point_writes_json_and_markdown(tmp_path):
    rc = main(["quality", "nonsense", "--out", str(tmp_path)])
    assert rc == 1  # the unknown part failed …
    data = json.loads((tmp_path / "benchmarks.json").read_text())
    assert "error" in data["nonsense"] and "quality" in data and "meta" in data  # … and the other part is kept
    assert (tmp_path / "benchmarks.md").read_text().startswith("# must-bench benchmarks")
