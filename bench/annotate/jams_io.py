"""Write and read track annotations as JAMS.

Layout (``annotator.name`` tells annotations of one namespace apart):

- ``tempo`` / ``amuse-rhythm``: one observation per Amuse segment (value = BPM); the change flags,
  threshold, clip tempo and variant are in the annotation's sandbox.
- ``tempo`` / ``tempo-map``: the tempo in force from each observation's time.
- ``onset`` / ``<source>``: onsets of one source (``mix`` for mix-level onsets).
- ``tag_open`` / ``source-activity``: active spans, value = source name.
- ``tag_open`` / ``amuse-sources``: per Amuse segment, one observation per sounding source.
- ``tag_open`` / ``transitions``: ``enter:<source>``, ``exit:<source>``, ``tempo_change:<from>-><to>``,
  ``dynamic_change:<louder|softer>:<dB>``.
- ``segment_open`` / ``intensity-regions``: value ``highest`` or ``lowest``.
- File sandbox ``must_bench``: sources (category, program), intensity curve, per-source loudness, provenance.

Foreign JAMS files (not written by the suite) contribute their ``onset`` and ``tempo`` annotations.
"""

from __future__ import annotations

from pathlib import Path

import jams

from must.annotation import Event, Rhythm, Source, TrackAnnotation

__all__ = ["write_jams", "read_jams", "read_foreign_jams"]


def _ann(namespace: str, annotator: str, duration: float) -> jams.Annotation:
    a = jams.Annotation(namespace=namespace, time=0, duration=duration)
    a.annotation_metadata.annotator.name = annotator
    a.annotation_metadata.data_source = "must-bench"
    return a


def _event_value(e: Event) -> str:
    if e.kind in ("enter", "exit"):
        return f"{e.kind}:{e.source}"
    if e.kind == "tempo_change":
        return f"tempo_change:{e.detail['from']}->{e.detail['to']}"
    return f"dynamic_change:{e.detail['direction']}:{e.detail.get('db', 0)}"


def _parse_event(time: float, value: str) -> Event:
    kind, _, rest = value.partition(":")
    if kind in ("enter", "exit"):
        return Event(time, kind, rest)
    if kind == "tempo_change":
        a, b = rest.split("->")
        return Event(time, kind, None, {"from": float(a), "to": float(b)})
    direction, _, db = rest.partition(":")
    return Event(time, kind, None, {"direction": direction, "db": float(db or 0)})


def write_jams(ann: TrackAnnotation, path: str | Path) -> None:
    """Save ``ann`` as a JAMS file (written atomically)."""
    d = ann.duration
    j = jams.JAMS()
    j.file_metadata.title = ann.track_id
    j.file_metadata.duration = d
    if ann.rhythm:
        r = ann.rhythm
        a = _ann("tempo", "amuse-rhythm", d)
        for s, t in zip(r.starts, r.tempos):
            a.append(time=s, duration=min(r.segment_seconds, max(d - s, 0)), value=max(float(t), 0.0), confidence=1.0)
        a.sandbox.update(variant=r.variant, segment_seconds=r.segment_seconds, threshold=r.threshold,
                         sample_rate=r.sample_rate, clip_tempo=r.clip_tempo, changes=r.changes)
        j.annotations.append(a)
    if ann.tempo:
        a = _ann("tempo", "tempo-map", d)
        bounds = [t for t, _ in ann.tempo[1:]] + [d]
        for (t, bpm), end in zip(ann.tempo, bounds):
            a.append(time=t, duration=max(end - t, 0), value=float(bpm), confidence=1.0)
        j.annotations.append(a)
    for name, times in ann.onsets.items():
        a = _ann("onset", name, d)
        for t in times:
            a.append(time=float(t), duration=0)
        j.annotations.append(a)
    for annotator, rows in (
        ("source-activity", [(s, e - s, n) for n, spans in ann.activity.items() for s, e in spans]),
        ("amuse-sources", [(s, e - s, n) for s, e, names in ann.segment_sources for n in names]),
        ("transitions", [(e.time, 0.0, _event_value(e)) for e in ann.transitions]),
    ):
        a = _ann("tag_open", annotator, d)
        for t, dur, v in rows:
            a.append(time=float(t), duration=float(dur), value=v)
        if annotator == "amuse-sources":
            a.sandbox.update(segments=[[s, e] for s, e, _ in ann.segment_sources])
        j.annotations.append(a)
    a = _ann("segment_open", "intensity-regions", d)
    for kind, spans in ann.regions.items():
        for s, e in spans:
            a.append(time=float(s), duration=float(e - s), value=kind)
    j.annotations.append(a)
    j.sandbox.must_bench = {
        "sources": [vars(s) for s in ann.sources], "intensity_times": ann.intensity_times,
        "intensity": ann.intensity, "loudness_db": ann.loudness_db, "provenance": ann.provenance,
    }
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".part")
    j.save(str(tmp), strict=False, fmt="jams")
    tmp.replace(p)


def _find(j: jams.JAMS, namespace: str, annotator: str | None = None) -> list[jams.Annotation]:
    return [a for a in j.annotations if a.namespace == namespace
            and (annotator is None or a.annotation_metadata.annotator.name == annotator)]


def read_jams(path: str | Path) -> TrackAnnotation:
    """Load a JAMS file written by :func:`write_jams` back into a :class:`TrackAnnotation`."""
    j = jams.load(str(path), validate=False)
    meta = dict(vars(j.sandbox).get("must_bench") or {})
    d = float(j.file_metadata.duration)
    ann = TrackAnnotation(str(j.file_metadata.title), d, [Source(**s) for s in meta.get("sources", [])])
    for a in _find(j, "tempo", "amuse-rhythm"):
        sb = vars(a.sandbox)
        ann.rhythm = Rhythm(sb["variant"], sb["segment_seconds"], sb["threshold"], sb["sample_rate"], sb["clip_tempo"],
                            [o.time for o in a.data], [o.value for o in a.data], list(sb["changes"]))
    for a in _find(j, "tempo", "tempo-map"):
        ann.tempo = [(o.time, o.value) for o in a.data]
    for a in _find(j, "onset"):
        ann.onsets[a.annotation_metadata.annotator.name] = [o.time for o in a.data]
    for a in _find(j, "tag_open", "source-activity"):
        for o in a.data:
            ann.activity.setdefault(o.value, []).append((o.time, round(o.time + o.duration, 6)))
    # JAMS keeps observations in time order, so the sources come back by first activity: restore their order
    # (what "keeps playing" lists, in questions and captions, follows it)
    order = {s.name: k for k, s in enumerate(ann.sources)}
    ann.activity = dict(sorted(ann.activity.items(), key=lambda kv: order.get(kv[0], len(order))))
    for a in _find(j, "tag_open", "amuse-sources"):
        by_seg: dict[float, list[str]] = {}
        for o in a.data:
            by_seg.setdefault(round(o.time, 6), []).append(o.value)
        ann.segment_sources = [(s, e, sorted(by_seg.get(round(s, 6), []))) for s, e in vars(a.sandbox).get("segments", [])]
    for a in _find(j, "tag_open", "transitions"):
        ann.transitions = [_parse_event(o.time, o.value) for o in a.data]
    for a in _find(j, "segment_open", "intensity-regions"):
        for o in a.data:
            ann.regions.setdefault(o.value, []).append((o.time, round(o.time + o.duration, 6)))
    ann.regions = dict(sorted(ann.regions.items()))  # "highest", "lowest": as intensity_regions returns them
    ann.intensity_times = list(meta.get("intensity_times", []))
    ann.intensity = list(meta.get("intensity", []))
    ann.loudness_db = dict(meta.get("loudness_db", {}))
    ann.provenance = dict(meta.get("provenance", {}))
    return ann


def read_foreign_jams(path: str | Path) -> dict:
    """Onsets (``{"onsets": [...]}``) and tempo map (``{"tempo": [(t, bpm)]}``) from any JAMS file."""
    j = jams.load(str(path), validate=False)
    out: dict = {}
    onsets = _find(j, "onset")
    if onsets:
        out["onsets"] = sorted(o.time for o in onsets[0].data)
    tempo = _find(j, "tempo")
    if tempo:
        out["tempo"] = [(o.time, float(o.value)) for o in tempo[0].data]
    return out
