"""Where the suite keeps caches (WordNet copy, numba cache): ``$MUST_CACHE`` or ``~/.cache/must-bench``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The suite's cache directory, created on first use."""
    d = Path(os.environ.get("MUST_CACHE") or Path.home() / ".cache" / "must-bench")
    d.mkdir(parents=True, exist_ok=True)
    return d
