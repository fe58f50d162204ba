"""Compose a multitrack piece from a seed: sections with tempo and dynamics, staggered parts, notes.

The plan is what makes the grounding targets clear: sections carry a tempo and a dynamic level
(1 = soft and sparse … 4 = loud and dense); one or two *peak* sections are the loudest and densest,
and one *quiet* section is the softest; all sit anywhere in the piece. Parts enter and exit on bar
lines at uniformly placed points, so no position in the track predicts an answer. Everything is a pure function of the seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bench.synth.instruments import Voice, by_role

__all__ = ["ComposeConfig", "Section", "Part", "Piece", "compose", "LEVEL_VELOCITY"]

LEVEL_VELOCITY = {1: 42, 2: 66, 3: 88, 4: 118}
MAJOR = [0, 2, 4, 5, 7, 9, 11]
MINOR = [0, 2, 3, 5, 7, 8, 10]
PROGRESSIONS = [[0, 5, 3, 4], [0, 3, 4, 0], [0, 4, 5, 3], [5, 3, 0, 4], [0, 3, 5, 4]]


@dataclass
class ComposeConfig:
    """Composition ranges (the build config's ``compose`` block)."""

    min_seconds: float = 30.0
    max_seconds: float = 240.0
    min_sources: int = 2
    max_sources: int = 6
    min_sections: int = 5
    max_sections: int = 8
    min_bpm: float = 80.0
    max_bpm: float = 140.0
    tempo_change_prob: float = 0.35
    tempo_change_min: float = 0.22  # relative change of a tempo change
    tempo_change_max: float = 0.45
    second_peak_prob: float = 0.3
    exit_prob: float = 0.6  # a part (other than the first) leaves before the end


@dataclass
class Section:
    """A span of bars with one tempo and one dynamic level."""

    start: float
    end: float
    start_bar: int
    bars: int
    bpm: float
    level: int


@dataclass
class Part:
    """One instrument's notes ``(start, end, pitch, velocity)`` between its entry and exit bars."""

    voice: Voice
    entry_bar: int
    exit_bar: int
    notes: list[tuple[float, float, int, int]] = field(default_factory=list)


@dataclass
class Piece:
    """A composed piece: sections, bar start times and parts."""

    seed: int
    sections: list[Section]
    bar_starts: list[float]  # one per bar, plus the end of the last bar
    parts: list[Part]
    key_root: int
    minor: bool
    peaks: list[int]
    quiet: list[int]

    @property
    def end(self) -> float:
        """Time the last bar ends."""
        return self.bar_starts[-1]

    def section_of_bar(self, bar: int) -> Section:
        """The section containing ``bar``."""
        for s in self.sections:
            if s.start_bar <= bar < s.start_bar + s.bars:
                return s
        return self.sections[-1]


def _plan_sections(rng: np.random.Generator, cfg: ComposeConfig) -> tuple[list[Section], list[int], list[int]]:
    target = rng.uniform(cfg.min_seconds, cfg.max_seconds)
    k = int(rng.integers(cfg.min_sections, cfg.max_sections + 1))
    bpms = [float(rng.uniform(cfg.min_bpm, cfg.max_bpm))]
    for _ in range(k - 1):
        bpm = bpms[-1]
        if rng.random() < cfg.tempo_change_prob:
            factor = 1 + rng.uniform(cfg.tempo_change_min, cfg.tempo_change_max) * rng.choice([-1, 1])
            new = bpm * factor
            if not 60 <= new <= 180:
                new = bpm / factor
            bpm = float(np.clip(new, 60, 180))
        bpms.append(bpm)
    peak = int(rng.integers(0, k))
    peaks = [peak]
    others = [i for i in range(k) if abs(i - peak) >= 2]
    if others and rng.random() < cfg.second_peak_prob:
        peaks = sorted(peaks + [int(rng.choice(others))])
    calm = [i for i in range(k) if all(abs(i - p) >= 2 for p in peaks)] or [i for i in range(k) if i not in peaks]
    quiet = [int(rng.choice(calm))]
    levels = []
    for i in range(k):
        if i in peaks:
            levels.append(4)
        elif i in quiet:
            levels.append(1)
        elif any(abs(i - p) == 1 for p in peaks):
            levels.append(int(rng.choice([2, 3])))
        else:
            levels.append(int(rng.choice([2, 2, 3])))
    sections, t, bar = [], 0.0, 0
    for i in range(k):
        bar_seconds = 240.0 / bpms[i]
        bars = int(np.clip(round(target / k / bar_seconds), 2, 16))
        sections.append(Section(t, t + bars * bar_seconds, bar, bars, bpms[i], levels[i]))
        t += bars * bar_seconds
        bar += bars
    return sections, peaks, quiet


def _choose_voices(rng: np.random.Generator, cfg: ComposeConfig) -> list[Voice]:
    n = int(rng.integers(cfg.min_sources, cfg.max_sources + 1))
    roles = ["lead"]
    for role, p in (("bass", 0.8), ("drums", 0.65), ("vocal", 0.55), ("pad", 0.5), ("lead", 0.5)):
        if rng.random() < p:
            roles.append(role)
    while len(roles) < n:
        roles.append(str(rng.choice(["lead", "vocal", "pad", "lead"])))
    roles = roles[:n]
    chosen: list[Voice] = []
    for role in roles:
        options = [v for v in by_role(role) if v not in chosen]
        if not options:
            options = [v for v in by_role("lead") if v not in chosen]
        chosen.append(options[int(rng.integers(len(options)))])
    return chosen


def _scale_pitch(root: int, scale: list[int], degree: int) -> int:
    octave, step = divmod(degree, len(scale))
    return root + 12 * octave + scale[step]


def _fit(pitch: int, voice: Voice) -> int:
    while pitch < voice.low:
        pitch += 12
    while pitch > voice.high:
        pitch -= 12
    return pitch


def _notes_for_bar(rng, voice: Voice, t0: float, bpm: float, level: int, chord_degree: int, root: int,
                   scale: list[int], state: dict, first_bar_of_section: bool) -> list[tuple[float, float, int, int]]:
    beat = 60.0 / bpm
    vel = lambda scale_=1.0: int(np.clip(LEVEL_VELOCITY[level] * scale_ + rng.normal(0, 4), 20, 127))  # noqa: E731
    notes = []
    chord = [_scale_pitch(root, scale, chord_degree + k) for k in (0, 2, 4)]
    if voice.role == "drums":
        hat_step = {1: 1.0, 2: 0.5, 3: 0.5, 4: 0.25}[level]
        for k in np.arange(0, 4, hat_step):
            notes.append((t0 + k * beat, t0 + k * beat + 0.1, 42, vel(0.7)))
        kicks = {1: [], 2: [0, 2], 3: [0, 2], 4: [0, 1.5, 2, 3.5]}[level]
        snares = {1: [], 2: [], 3: [1, 3], 4: [1, 3]}[level]
        notes += [(t0 + k * beat, t0 + k * beat + 0.15, 36, vel()) for k in kicks]
        notes += [(t0 + k * beat, t0 + k * beat + 0.15, 38, vel()) for k in snares]
        if first_bar_of_section and level >= 3:
            notes.append((t0, t0 + 0.5, 49, vel()))
        return notes
    if voice.role == "bass":
        step = {1: 4, 2: 2, 3: 1, 4: 0.5}[level]
        for k in np.arange(0, 4, step):
            p = _fit(chord[0] - 24, voice) if k % 2 == 0 or level < 4 else _fit(chord[2] - 24, voice)
            notes.append((t0 + k * beat, t0 + (k + step * 0.9) * beat, p, vel()))
        return notes
    if voice.role == "pad":
        steps = [0, 2] if level == 4 else [0]
        length = 4 / len(steps)
        for k in steps:
            notes += [(t0 + k * beat, t0 + (k + length * 0.95) * beat, _fit(p, voice), vel(0.8)) for p in chord]
        return notes
    # lead and vocal: a random walk on the scale, chord tones on strong beats
    if voice.role == "vocal":
        rhythm = {1: [4], 2: [2, 2], 3: [2, 1, 1], 4: [1, 1, 1, 1]}[level]
    else:
        rhythm = {1: [2, 2], 2: [1, 1, 1, 1], 3: [0.5] * 8, 4: [0.5, 0.25, 0.25] * 2 + [0.5, 0.5, 0.5, 0.5]}[level]
        rhythm = rhythm[: max(1, len(rhythm))]
    k = 0.0
    for dur in rhythm:
        if k >= 4:
            break
        degree = state.get("degree", chord_degree + 7)
        degree += int(rng.choice([-2, -1, -1, 0, 1, 1, 2]))
        degree = int(np.clip(degree, chord_degree + 2, chord_degree + 14))
        state["degree"] = degree
        pitch = _fit(_scale_pitch(root, scale, degree) + 12, voice)
        if k == 0:
            pitch = _fit(chord[0] + 12, voice)
        if k > 0 and level >= 3 and rng.random() < 0.1:  # an occasional rest (never on the downbeat)
            k += dur
            continue
        notes.append((t0 + k * beat, t0 + (k + dur * 0.9) * beat, pitch, vel()))
        k += dur
    return notes


def compose(seed: int, cfg: ComposeConfig | None = None) -> Piece:
    """A piece from ``seed`` (same seed, same piece)."""
    cfg = cfg or ComposeConfig()
    rng = np.random.default_rng(seed)
    sections, peaks, quiet = _plan_sections(rng, cfg)
    bar_starts = []
    for s in sections:
        bar_seconds = 240.0 / s.bpm
        bar_starts += [s.start + i * bar_seconds for i in range(s.bars)]
    bar_starts.append(sections[-1].end)
    total_bars = len(bar_starts) - 1
    voices = _choose_voices(rng, cfg)
    order = list(rng.permutation(len(voices)))
    # The first part plays throughout (the piece is never silent); every other part plays one contiguous
    # span of at least min_bars, placed uniformly, so entries, exits and peaks are spread over the piece.
    min_bars = min(4, total_bars)
    parts = []
    for rank, idx in enumerate(order):
        if rank == 0:
            entry, exit_bar = 0, total_bars
        else:
            entry = int(rng.integers(0, total_bars - min_bars + 1))
            exit_bar = total_bars if rng.random() > cfg.exit_prob else int(rng.integers(entry + min_bars, total_bars + 1))
        parts.append(Part(voices[idx], entry, exit_bar))
    key_root = int(rng.integers(48, 60))
    minor = bool(rng.random() < 0.4)
    scale = MINOR if minor else MAJOR
    progression = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    for part in parts:
        state: dict = {}
        for bar in range(part.entry_bar, part.exit_bar):
            sec = next(s for s in sections if s.start_bar <= bar < s.start_bar + s.bars)
            part.notes += _notes_for_bar(rng, part.voice, bar_starts[bar], sec.bpm, sec.level, progression[bar % 4],
                                         key_root, scale, state, bar == sec.start_bar)
        part.notes.sort()
    parts = [p for p in parts if p.notes]
    return Piece(seed, sections, bar_starts, parts, key_root, minor, peaks, quiet)
