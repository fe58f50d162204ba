"""Composition and rendering: determinism, structure, stems that sum to the mix."""

import numpy as np
import pytest

from bench.synth.compose import ComposeConfig, compose
from bench.synth.render import TAIL_SECONDS, render_stems

CFG = ComposeConfig(min_seconds=30, max_seconds=45)


def test_same_seed_same_piece_different_seed_different_piece():
    a, b, c = compose(3, CFG), compose(3, CFG), compose(4, CFG)
    assert [p.notes for p in a.parts] == [p.notes for p in b.parts]
    assert [p.notes for p in a.parts] != [p.notes for p in c.parts]


def test_structure():
    for seed in range(20):
        p = compose(seed, CFG)
        assert 2 <= len(p.parts) <= 6
        assert len({part.voice.name for part in p.parts}) == len(p.parts)
        assert any(part.entry_bar == 0 and part.exit_bar == len(p.bar_starts) - 1 for part in p.parts)
        assert all(p.sections[i].level == 4 for i in p.peaks) and all(p.sections[i].level == 1 for i in p.quiet)
        for part in p.parts:
            first, last = part.notes[0][0], max(e for _, e, _, _ in part.notes)
            assert abs(first - p.bar_starts[part.entry_bar]) < 1e-9  # entries on bar lines
            assert last <= p.bar_starts[part.exit_bar] + 1e-9
        # sections tile the piece without gaps
        assert all(abs(a.end - b.start) < 1e-9 for a, b in zip(p.sections, p.sections[1:]))


def test_render_stems_sum_to_mix_and_length():
    p = compose(1, CFG)
    mix, stems = render_stems(p, sr=16000)
    assert set(stems) == {part.voice.name for part in p.parts}
    assert len(mix) == int((p.end + TAIL_SECONDS) * 16000)
    np.testing.assert_allclose(np.sum(list(stems.values()), axis=0), mix, atol=1e-5)
    assert abs(np.max(np.abs(mix)) - 0.9) < 1e-3
    mix2, _ = render_stems(p, sr=16000)
    np.testing.assert_array_equal(mix, mix2)


def test_missing_soundfont_names_the_path_and_the_fix(tmp_path):
    missing = str(tmp_path / "NoSuchFont.sf2")
    with pytest.raises(FileNotFoundError, match=r"NoSuchFont\.sf2.*fluid-soundfont-gm"):
        render_stems(compose(1, CFG), sr=16000, soundfont=missing)
