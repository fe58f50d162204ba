"""``oracle``: answers from the annotations each item was built from — the ceiling (≈100)."""

from __future__ import annotations

from must.models.base import Model, Request, register_model
from must.schema import row_events
from must.timecode import format_intervals, format_time


@register_model("oracle")
class OracleBaseline(Model):
    """TSG and MTR from the item's annotation events; the other tasks from the reference answer."""

    name = "oracle"
    needs_audio = False

    def answer(self, r: Request) -> str:
        """The annotated answer."""
        events = row_events(r.item.get("events"))
        if r.task == "TSG" and events and "time" in events[0]:
            return format_time(events[0]["time"])
        if r.task == "MTR" and events and "start" in events[0]:
            return format_intervals([(e["start"], e["end"]) for e in events])
        return str(r.item["answer"])

    def generate(self, requests: list[Request]) -> list[str]:
        """Annotated answers for a batch."""
        return [self.answer(r) for r in requests]

