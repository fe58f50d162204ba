"""``heard:CHECKPOINT`` — a MusT checkpoint's encoder heads answering without its LM: each question is answered by
rule from the events and intensity regions the heads heard (:mod:`must.model.heard`). It measures what the
encoder hears, so that what the LM makes of it can be compared (a baseline, not the model)."""

from __future__ import annotations

from must.annotation import Event
from must.models.base import ModelError, Request, register_model
from must.models.must_model import MusTAdapter

__all__ = ["HeardReadout", "answer_from_heard"]


def answer_from_heard(task: str, question: str, qa_type: str | None, events: list[Event],
                      regions: dict[str, list[tuple[float, float]]]) -> str:
    """The answer the heard events imply. TSG: the named source's decoded entry (exit); LTR: the option with the
    most of its clauses heard within 1.5 s of the asked time ("no noticeable change" when nothing is); GTO: the
    ordering of each label's earliest heard clause; MTR: the decoded regions. Other tasks are not answered."""
    from bench.baselines.common import intensity_kind, question_source, question_time
    from bench.tasks.gto import ORDERINGS
    from bench.tasks.phrasing import event_option, source_phrase
    from must.answers import LETTERS, labelled_changes, option_clauses, option_texts
    from must.timecode import format_intervals, format_time

    if task == "TSG":
        kind, named = ("exit" if qa_type == "offset" else "enter"), f"the {question_source(question)}"
        times = [e.time for e in events if e.kind == kind and e.source and source_phrase(e.source) == named]
        return format_time(times[0]) if times else ""
    if task == "MTR":
        return format_intervals(regions.get(intensity_kind(question)) or [])
    if task == "LTR":
        at = question_time(question)
        near = {event_option(e) for e in events if at is not None and abs(e.time - at) <= 1.5}

        def support(text: str) -> float:
            cs = option_clauses(text)
            if cs == ["no noticeable change"]:
                return 0.5 if not near else 0.0
            return sum(c in near for c in cs) / len(cs)

        options = option_texts(question)
        return max(options, key=lambda letter: support(options[letter])) if options else ""
    if task == "GTO":
        when = {}
        for label, text in labelled_changes(question).items():
            times = [e.time for e in events if event_option(e) in option_clauses(text)]
            when[label] = min(times, default=float("inf"))
        order = tuple(sorted(when, key=when.get))
        return LETTERS[ORDERINGS.index(order)] if order in ORDERINGS else ""
    return ""


@register_model("heard")
class HeardReadout(MusTAdapter):
    """Answers TSG, LTR, GTO and MTR from a MusT checkpoint's heard events (:func:`answer_from_heard`); TAD and
    AVQA get an empty answer (scored as unparsed)."""

    def __init__(self, path: str, cache_tracks: int = 64):
        super().__init__(path, cache_tracks=cache_tracks)
        self.name = "heard:" + self.name.split(":", 1)[1]

    def generate(self, requests: list[Request]) -> list[str | BaseException]:
        """One rule-based answer per request (an item whose audio fails is returned as its error)."""
        from must.model.heard import heard_events, heard_regions

        out: list[str | BaseException] = []
        for r in requests:
            try:
                feats = self.features_for(r.audio)
            except Exception as e:  # unreadable audio for one item
                out.append(ModelError(f"{type(e).__name__}: {e}"))
                continue
            out.append(answer_from_heard(r.task, r.question, r.item.get("qa_type"), heard_events(feats, self.model.config),
                                         heard_regions(feats, self.model.config)))
        return out
