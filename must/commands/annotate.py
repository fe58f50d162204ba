"""``must-bench annotate AUDIO [--stems DIR] [--out FILE.jams]``: Amuse annotation of one audio file."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``annotate`` subcommand."""
    p = sub.add_parser("annotate", help="annotate one audio file (Amuse rhythm + sources, onsets, transitions) as JAMS",
                       description=__doc__)
    p.add_argument("audio")
    p.add_argument("--stems", default=None, help="folder of stems (one audio file per source)")
    p.add_argument("--out", default=None, help="JAMS output (default: AUDIO with .jams)")
    p.add_argument("--rhythm", default="paper", choices=["paper", "code"], help="Amuse variant")
    p.add_argument("--separator", default=None, help="without stems: 'hpss' (default) or module:ClassName")
    p.add_argument("--sr", type=int, default=22050)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Annotate and write JAMS."""
    import numpy as np

    from bench.annotate.estimate import annotate_audio
    from bench.annotate.jams_io import write_jams
    from bench.annotate.rhythm import RhythmConfig
    from bench.build.real import audio_files, safe_id
    from must.audio import load_audio
    from must.timecode import format_time

    y, sr = load_audio(args.audio, args.sr)
    stems = None
    if args.stems:
        stems = {}
        for p in audio_files(Path(args.stems)):
            s, _ = load_audio(p, sr)
            stems[p.stem] = np.pad(s, (0, max(0, len(y) - len(s))))[: len(y)]
    ann = annotate_audio(safe_id(Path(args.audio).stem), y, sr, stems, args.separator, RhythmConfig.named(args.rhythm))
    out = Path(args.out or Path(args.audio).with_suffix(".jams"))
    write_jams(ann, out)
    c = Console()
    c.print(f"sources ({ann.provenance['segment_sources']}): {', '.join(s.name for s in ann.sources)}")
    r = ann.rhythm
    c.print(f"Amuse rhythm ({r.variant}): clip tempo {r.clip_tempo:.0f} BPM; changes at "
            + ", ".join(format_time(t) for t in r.change_times()) if r.change_times() else f"Amuse rhythm ({r.variant}): no changes")
    for e in ann.transitions:
        c.print(f"  {format_time(e.time)}  {e.kind} {e.source or ''} {e.detail or ''}")
    c.print(f"written {out}")
    return 0
