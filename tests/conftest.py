"""Shared fixtures: paths built from __file__, the shared MUSIC-AVQA files when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
AVQA_TEST = SHARED / "data" / "music-avqa" / "avqa-test.json"

os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "must-bench" / "numba"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def avqa_test_file() -> Path:
    """The official MUSIC-AVQA test questions (skips when ../shared is absent)."""
    if not AVQA_TEST.exists():
        pytest.skip("../shared/data/music-avqa not present")
    return AVQA_TEST


@pytest.fixture(scope="session")
def tiny_bench(tmp_path_factory) -> Path:
    """A 6-track benchmark built once per test session (about 15 s)."""
    from bench.build.config import BuildConfig
    from bench.build.pipeline import build
    from must.config import load_config

    out = tmp_path_factory.mktemp("bench") / "tiny"
    cfg = load_config(BuildConfig, ROOT / "configs" / "bench" / "small.yaml",
                      ["name=tiny", "tracks=6", "workers=1", "compose.min_seconds=40", "compose.max_seconds=60",
                       "splits={train: 0.34, val: 0.16, test: 0.5}"])
    build(cfg, out, progress=False)
    return out
