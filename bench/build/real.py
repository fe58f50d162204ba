"""Find tracks in a folder of real audio: plain files, Slakh- or MedleyDB-style multitrack layouts.

- Plain: ``DIR/<name>.<ext>``; optional stems in ``DIR/<name>/`` (or ``DIR/<name>_STEMS/``) and
  optional annotations ``DIR/<name>.jams``.
- Slakh2100: ``DIR/<track>/mix.flac`` with ``stems/S00.flac``… and ``metadata.yaml`` (stem → instrument).
- MedleyDB: ``DIR/<track>/<track>_MIX.wav`` with ``<track>_STEMS/*.wav`` and ``<track>_METADATA.yaml``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from must.audio import AUDIO_EXTENSIONS

__all__ = ["RealTrack", "discover", "safe_id", "audio_files"]


@dataclass
class RealTrack:
    """One real track: mix path, named stem paths, optional JAMS."""

    track_id: str
    mix: Path
    stems: dict[str, Path] = field(default_factory=dict)
    jams: Path | None = None


def safe_id(name: str) -> str:
    """A track id safe for file names."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "track"


def audio_files(d: Path) -> list[Path]:
    """Audio files directly inside a folder, sorted (none when it is not a folder)."""
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS) if d.is_dir() else []


def _metadata_stems(meta: Path) -> dict:
    """The ``stems`` mapping of a multitrack dataset's metadata YAML; empty when missing or unreadable."""
    try:
        data = yaml.safe_load(meta.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    return (data.get("stems") or {}) if isinstance(data, dict) else {}


def _slakh_names(meta: Path) -> dict[str, str]:
    out = {}
    for key, info in _metadata_stems(meta).items():
        if isinstance(info, dict):
            out[key] = str(info.get("inst_class") or info.get("instrument") or info.get("midi_program_name") or key)
    return out


def _medleydb_names(meta: Path) -> dict[str, str]:
    out = {}
    for info in _metadata_stems(meta).values():
        if isinstance(info, dict) and info.get("filename"):
            out[Path(info["filename"]).stem] = str(info.get("instrument") or Path(info["filename"]).stem)
    return out


def _named(stems: list[Path], names: dict[str, str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in stems:
        name = names.get(p.stem, p.stem).lower().replace(" ", "_")
        base, k = name, 2
        while name in out:
            name, k = f"{base}_{k}", k + 1
        out[name] = p
    return out


def discover(root: str | Path) -> list[RealTrack]:
    """All tracks under ``root`` in any of the supported layouts, sorted by id."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory of audio")
    tracks = []
    for f in audio_files(root):
        stem_dir = next((d for d in (root / f.stem, root / f"{f.stem}_STEMS") if d.is_dir()), None)
        jams = f.with_suffix(".jams")
        tracks.append(RealTrack(safe_id(f.stem), f, _named(audio_files(stem_dir), {}) if stem_dir else {},
                                jams if jams.exists() else None))
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        mix = next((p for p in audio_files(d) if p.stem.lower() == "mix"), None)
        if mix is not None:  # Slakh
            tracks.append(RealTrack(safe_id(d.name), mix, _named(audio_files(d / "stems"), _slakh_names(d / "metadata.yaml")),
                                    next(iter(d.glob("*.jams")), None)))
            continue
        mdb = next((p for p in audio_files(d) if p.stem.endswith("_MIX")), None)
        if mdb is not None:  # MedleyDB
            stems_dir = d / f"{d.name}_STEMS"
            tracks.append(RealTrack(safe_id(d.name), mdb, _named(audio_files(stems_dir), _medleydb_names(d / f"{d.name}_METADATA.yaml")),
                                    next(iter(d.glob("*.jams")), None)))
    seen, unique = set(), []
    for t in sorted(tracks, key=lambda t: t.track_id):
        if t.track_id not in seen:
            seen.add(t.track_id)
            unique.append(t)
    return unique
