"""The General-MIDI palette the composer draws from: display name, program, role, category.

Names in the MUSIC-AVQA vocabulary (``piano``, ``violin``, ``acoustic_guitar`` …) are used as-is so
that AVQA questions about these sources have vocabulary answers; the rest (choir, strings, pads)
broaden timbre and provide the "vocal" sources MusTBench asks about.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Voice", "PALETTE", "ROLES", "by_role", "display"]


@dataclass(frozen=True)
class Voice:
    """One palette entry."""

    name: str
    program: int
    role: str  # lead | bass | drums | pad | vocal
    category: str  # instrument | vocal | drums | bass
    low: int = 48  # pitch range (MIDI)
    high: int = 84
    is_drum: bool = False


PALETTE: tuple[Voice, ...] = (
    Voice("piano", 0, "lead", "instrument", 48, 84),
    Voice("acoustic_guitar", 24, "lead", "instrument", 45, 76),
    Voice("violin", 40, "lead", "instrument", 55, 88),
    Voice("cello", 42, "lead", "instrument", 36, 67),
    Voice("flute", 73, "lead", "instrument", 60, 93),
    Voice("trumpet", 56, "lead", "instrument", 55, 82),
    Voice("saxophone", 65, "lead", "instrument", 49, 80),
    Voice("clarinet", 71, "lead", "instrument", 50, 86),
    Voice("accordion", 21, "lead", "instrument", 53, 84),
    Voice("banjo", 105, "lead", "instrument", 48, 79),
    Voice("xylophone", 13, "lead", "instrument", 65, 96),
    Voice("bassoon", 70, "lead", "instrument", 34, 65),
    Voice("organ", 19, "pad", "instrument", 48, 79),
    Voice("strings", 48, "pad", "instrument", 48, 79),
    Voice("synth pad", 89, "pad", "instrument", 48, 79),
    Voice("choir", 52, "vocal", "vocal", 52, 76),
    Voice("vocal", 53, "vocal", "vocal", 55, 77),
    Voice("electric_bass", 33, "bass", "bass", 28, 52),
    Voice("tuba", 58, "bass", "bass", 28, 55),
    Voice("drums", 0, "drums", "drums", 35, 81, is_drum=True),
)
ROLES = ("lead", "bass", "drums", "pad", "vocal")


def by_role(role: str) -> list[Voice]:
    """Palette entries with this role."""
    return [v for v in PALETTE if v.role == role]


def display(name: str) -> str:
    """Human wording of a source name (``acoustic_guitar`` → ``acoustic guitar``)."""
    return name.replace("_", " ")
