"""``python -m benchmarks all [--quick] --out DIR``: every figure in one run, saved as JSON and a Markdown table.

Parts: ``build`` (speed and scaling), ``annotation`` (estimated vs exact annotations), ``scoring``, ``rewards``,
``harness`` (evaluate overhead), ``endpoint`` (stub server), ``training`` (1 vs 2 DeepSpeed processes),
``quality`` (the trained model's scores, when its evaluation runs exist). Ratios, not absolute times, are what
to compare across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

PARTS = ("build", "annotation", "scoring", "rewards", "harness", "endpoint", "training", "quality")


def _bench_for_harness(quick: bool) -> str:
    from bench.build.config import BuildConfig
    from bench.build.pipeline import build
    from bench.synth.compose import ComposeConfig

    small = Path("runs/demo/bench")
    if not quick and (small / "parquet").exists():
        return str(small)
    d = Path(tempfile.mkdtemp(prefix="must-bench-harness-")) / "b"
    build(BuildConfig(name="harness", tracks=6, workers=2, splits={"train": 0.0, "val": 0.0, "test": 1.0},
                      compose=ComposeConfig(min_seconds=40, max_seconds=60)), d, progress=False)
    return str(d)


def _quality() -> dict:
    runs = sorted(Path("runs").glob("*/eval/*/scores.json")) if Path("runs").exists() else []
    if not runs:
        return {"note": "no trained-model evaluation runs under runs/*/eval/ (see the README's training section)"}
    keep = ("TSG", "LTR", "TAD", "GTO", "MTR_IoU", "MTR", "overall")
    return {str(p.parent.relative_to("runs")): {k: round(v, 1) for k, v in json.loads(p.read_text()).items() if k in keep}
            for p in runs}


def _markdown(results: dict) -> str:
    lines = [f"# must-bench benchmarks ({results['meta']['date']}, {results['meta']['machine']})", ""]
    for part, figures in results.items():
        if part == "meta":
            continue
        lines += [f"## {part}", "", "| figure | value |", "|---|---|"]

        def walk(prefix: str, v) -> None:
            if isinstance(v, dict):
                for k, x in v.items():
                    walk(f"{prefix} · {k}" if prefix else str(k), x)
            elif isinstance(v, list) and len(v) > 8:
                lines.append(f"| {prefix} | {v[:4]} … {v[-2:]} ({len(v)} values) |")
            else:
                lines.append(f"| {prefix} | {v} |")

        walk("", figures)
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen parts; a failing part is recorded with its error and the others still run."""
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("parts", nargs="*", default=["all"], help=f"all or any of {', '.join(PARTS)}")
    p.add_argument("--quick", action="store_true", help="smaller sizes (a few minutes)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "must-bench" / "numba"))
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    parts = list(PARTS) if "all" in args.parts else args.parts
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"meta": {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                              "python": sys.version.split()[0], "quick": args.quick}}
    bench = None
    for part in parts:
        t0 = time.perf_counter()
        print(f"[benchmarks] {part} …", flush=True)
        try:
            if part == "build":
                from benchmarks import build_speed
                results[part] = build_speed.run(args.quick)
            elif part == "annotation":
                from benchmarks import annotation_quality
                results[part] = annotation_quality.run(args.quick)
            elif part == "scoring":
                from benchmarks import throughput
                results[part] = throughput.scoring(5000 if args.quick else 20000)
            elif part == "rewards":
                from benchmarks import throughput
                results[part] = throughput.rewards(50000 if args.quick else 100000)
            elif part in ("harness", "endpoint"):
                from benchmarks import throughput
                bench = bench or _bench_for_harness(args.quick)
                results[part] = throughput.harness(bench) if part == "harness" else throughput.endpoint(bench)
            elif part == "training":
                from benchmarks import training_speed
                results[part] = training_speed.run(args.quick)
            elif part == "quality":
                results[part] = _quality()
            else:
                raise ValueError(f"unknown part {part!r}")
        except Exception as e:  # one failing part must not lose the others' figures
            results[part] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]}
        results[part]["seconds"] = round(time.perf_counter() - t0, 1) if isinstance(results[part], dict) else None
        (out / "benchmarks.json").write_text(json.dumps(results, indent=2))
        (out / "benchmarks.md").write_text(_markdown(results))
    print(_markdown(results))
    failed = [k for k, v in results.items() if isinstance(v, dict) and "error" in v]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
