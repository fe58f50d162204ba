"""``constant``: one fixed guess per task — the shortcut a benchmark must not reward."""

from __future__ import annotations

from must.models.base import Model, Request, register_model
from must.timecode import format_interval, format_time


@register_model("constant")
class ConstantBaseline(Model):
    """Track midpoint, whole track as the interval, letter A, "yes", a fixed sentence."""

    name = "constant"
    needs_audio = False

    def generate(self, requests: list[Request]) -> list[str]:
        """The same guess for every item of a task."""
        out = []
        for r in requests:
            d = float(r.duration or 180.0)
            out.append({"TSG": format_time(d / 2), "MTR": format_interval(0, d), "LTR": "A", "GTO": "A",
                        "TAD": "The music changes.", "AVQA": "yes"}[r.task])
        return out
