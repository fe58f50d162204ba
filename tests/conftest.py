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
