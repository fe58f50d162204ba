"""Classic AVQA accuracy under the MUSIC-AVQA protocol.

Conventions
-----------
- Answers are normalised to the 42-word MUSIC-AVQA answer vocabulary (:data:`VOCAB`): lower-case,
  punctuation dropped, digits and number words → ``zero``…``ten``, numbers above ten → ``more than ten``,
  instrument names in MUSIC-AVQA spelling (``acoustic guitar`` / ``acoustic _ guitar`` → ``acoustic_guitar``,
  ``drums`` → ``drum``).
  A free-form answer maps to the vocabulary word it starts with, else the first vocabulary word it
  contains; none → unparsed (wrong).
- Buckets are the nine question types of the official test script, keyed ``"<Modality> <Type>"``
  (``"Audio Counting"``, ``"Audio-Visual Temporal"``, …); ``Audio``, ``Visual`` and ``Audio-Visual``
  pool their buckets (correct / total), and ``overall`` is correct / total over every question —
  as the official ``main_avst.py`` test loop computes them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from must.answers import Parsed, clean_text

__all__ = ["NUMBERS", "INSTRUMENTS", "VOCAB", "BUCKETS", "MODALITIES", "normalize_answer", "bucket_accuracy"]

NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
INSTRUMENTS = [
    "accordion", "acoustic_guitar", "bagpipe", "banjo", "bassoon", "cello", "clarinet", "congas", "drum",
    "electric_bass", "erhu", "flute", "guzheng", "piano", "pipa", "saxophone", "suona", "trumpet", "tuba",
    "ukulele", "violin", "xylophone",
]
VOCAB = ["yes", "no", *NUMBERS, "more than ten", "left", "right", "middle", "indoor", "outdoor", "simultaneously", *INSTRUMENTS]
MODALITIES = ("Audio", "Visual", "Audio-Visual")
BUCKETS = (
    "Audio Counting", "Audio Comparative", "Visual Counting", "Visual Location", "Audio-Visual Existential",
    "Audio-Visual Counting", "Audio-Visual Location", "Audio-Visual Comparative", "Audio-Visual Temporal",
)

_ALIASES = {
    "acoustic guitar": "acoustic_guitar", "guitar": "acoustic_guitar", "electric bass": "electric_bass",
    "bass guitar": "electric_bass", "drums": "drum", "drum kit": "drum", "conga": "congas", "bagpipes": "bagpipe",
    "saxophones": "saxophone", "sax": "saxophone", "violins": "violin", "pianos": "piano", "cellos": "cello",
    "flutes": "flute", "trumpets": "trumpet", "at the same time": "simultaneously", "none": "zero",
    "center": "middle", "centre": "middle", "inside": "indoor", "indoors": "indoor", "outside": "outdoor",
    "outdoors": "outdoor", "more than 10": "more than ten", "yeah": "yes", "nope": "no",
}
# answers are matched with underscores read as spaces (:func:`normalize_answer`), so phrases are keyed that way too
_PHRASES = {w.replace("_", " "): w for w in VOCAB} | _ALIASES
_PHRASE_RE = re.compile(
    r"(?<![a-z0-9])(" + "|".join(sorted(map(re.escape, _PHRASES), key=len, reverse=True)) + r")(?![a-z0-9])"
)
_DIGITS = re.compile(r"(?<![\d:])(?<!\d\.)(\d+)(?![\d:]|\.\d)")


def _digits_to_words(text: str) -> str:
    def repl(m: re.Match) -> str:
        digits = m.group(1).lstrip("0") or "0"
        if len(digits) > 2:  # also keeps int() away from 10,000-digit garbage
            return "more than ten"
        n = int(digits)
        return NUMBERS[n] if n <= 10 else "more than ten"

    return _DIGITS.sub(repl, text)


def normalize_answer(text) -> Parsed:
    """Map a free-form answer to a MUSIC-AVQA vocabulary word (``Parsed(None, "unparsed")`` if none)."""
    s = _digits_to_words(clean_text(text).lower().strip())
    # underscores separate words like spaces: word-level tokenizers decode ``electric_bass`` as ``electric _ bass``
    s = re.sub(r"[^a-z0-9 ]+", " ", s)
    s = re.sub(r"\s+", " ", s).strip()
    if not s:
        return Parsed(None, "unparsed")
    if s in _PHRASES:
        return Parsed(_PHRASES[s], "ok")
    m = _PHRASE_RE.search(s)
    return Parsed(_PHRASES[m.group(1)], "ok") if m else Parsed(None, "unparsed")


def bucket_accuracy(results: Iterable[tuple[str, str, bool]]) -> dict[str, float]:
    """Accuracy (percent) per bucket, per modality and overall from ``(modality, type, correct)`` triples."""
    counts: dict[str, list[int]] = {}
    for modality, qtype, ok in results:
        for key in (f"{modality} {qtype}", modality, "overall"):
            c = counts.setdefault(key, [0, 0])
            c[0] += bool(ok)
            c[1] += 1
    order = [*BUCKETS, *MODALITIES, "overall"]
    keys = [k for k in order if k in counts] + sorted(k for k in counts if k not in order)
    return {k: 100.0 * counts[k][0] / counts[k][1] for k in keys}
