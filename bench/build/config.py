"""The build config (``configs/bench/<name>.yaml``), one key per field."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.synth.compose import ComposeConfig
from bench.tasks.base import TaskConfig

__all__ = ["BuildConfig"]


@dataclass
class BuildConfig:
    """Everything a build depends on; the same config and seed give the same benchmark."""

    name: str = "small"
    seed: int = 0
    tracks: int = 32
    sample_rate: int = 22050
    soundfont: str | None = None  # None: TimGM6mb.sf2 from pretty_midi
    audio_format: str = "flac"
    keep_stems: bool = False
    splits: dict[str, float] = field(default_factory=lambda: {"train": 0.5, "val": 0.15, "test": 0.35})
    rhythm: str = "paper"  # Amuse variant: paper | code
    truth: str = "exact"  # exact (MIDI truth for renders) | estimated (annotate renders as if real audio)
    separator: str | None = None  # for audio without stems: hpss (default) or module:ClassName
    max_seconds: float = 900.0  # longer input audio is reported and skipped
    workers: int = 2
    compose: ComposeConfig = field(default_factory=ComposeConfig)
    tasks: TaskConfig = field(default_factory=TaskConfig)

    def __post_init__(self) -> None:
        if abs(sum(self.splits.values()) - 1.0) > 1e-6 or any(v < 0 for v in self.splits.values()):
            raise ValueError(f"splits must be non-negative fractions summing to 1, got {self.splits}")
        if self.truth not in ("exact", "estimated"):
            raise ValueError(f"truth must be 'exact' or 'estimated', got {self.truth!r}")
        if self.audio_format not in ("flac", "wav"):
            raise ValueError(f"audio_format must be 'flac' or 'wav', got {self.audio_format!r}")
