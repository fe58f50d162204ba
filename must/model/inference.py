"""Answering questions with a MusT checkpoint (used by ``must:`` evaluation and by validation during training).

Three ways to answer a multiple-choice question: ``generate`` (greedy text, whose letter the scorer parses), and two
where the letter follows from what the model says it heard rather than from the letter it writes. ``scored``: LTR
picks the option whose description the model finds most likely (mean log-probability per token, as
lm-evaluation-harness scores multiple choice), GTO picks the ordering implied by the three times the model writes.
``constrained``: answers are held to the form the model was trained to give, ``<description>. Answer: <its letter>``:
LTR writes the option whose description the model finds most likely by itself (mean log-probability per token of
``<description>.``, the letter left out), so the letter is that description's — a search over the allowed answers, not
greedy decoding, which prefers the prefix most options share ("the …" over "no noticeable change"), less
``ltr_calibration`` (default :data:`LTR_CALIBRATION`) times the same option's mean score when the question is asked at
other moments of the track (:func:`shifted_questions`) — what happens *then* rather than what the model finds likely
anywhere: it weighs down "no noticeable change", which is right at most moments (for f34's GRPO checkpoint, val LTR
53.1 → 57.6 %; weights 0.25 / 0.5 / 0.75 / 1.0 gave 57.1 / 57.6 / 55.1 / 46.4, docs/training-log.md), plus
(``ltr_grounding``, :func:`grounding_bonus`), for an option that is a source entering or stopping, how much of the
model's answer to TSG's question about that source falls near the asked time (for the default run f42, whole test
split LTR 71.2 → 76.2 %, docs/training-log.md); a GTO answer may not time two of its changes within a second of each
other (:class:`DistinctTimes`: the changes to order are different moments) and its letter is the ordering most
probable under the model's own distributions over each change's time, each change at least :data:`GTO_MIN_GAP` seconds
after the one before (the changes a question lists are separate moments; for f38, test GTO 60.7 → 65.2 %, val 76.4 →
77.5 %, where it was chosen; docs/training-log.md) (:func:`written_time_probs`, :func:`order_from_time_probs`; for the
fresh default run f25, GTO 53.9 → 61.8 % on val and 48.1 → 52.6 % on test against the ordering of its written times,
docs/training-log.md) — each multiplied (``gto_scan``) by the distribution of the seconds at which the model, asked
LTR's question there, recognises that change (:func:`scanned_time_probs`, :func:`combine_time_probs`; for g36d5, the
default before tempo signals, whole test split GTO 50.4 → 59.3 %, +8.9 ± 4.3 paired; val 48.3 → 74.2 %, where its two
constants were chosen; docs/training-log.md) — and, for a listed change that is a source entering or stopping, by the
model's answer to TSG's question about it (``gto_grounding``, :func:`grounded_time_probs`: "When does the tuba first
start to play?"; for the default run f42, test GTO 63.7 → 73.5 %, docs/training-log.md) — falling back to the ordering
its three written times imply (as in ``scored``). A small LM names the right change or the right times more often than
it binds them to a letter. ``constrained`` also writes each time from the model's whole distribution over seconds
rather than its single most probable second (:class:`TimeChoice`): a TSG time is the one most likely to score under
Hit@3s (:func:`hit_window_second`) — with ``tsg_scan``, under the pointer's distribution weighed by how strongly the
model, asked LTR's question at every second, recognises the asked change there (:func:`scanned_change_scores`,
:func:`scanned_hit_second`; for the default run f42, val Hit@3s 72.7 → 77.0 %, docs/training-log.md) — an MTR
boundary the distribution's median (:func:`median_second`, the least expected error in seconds); a TAD description
names each source once (:class:`DistinctSources`; a quarter of l30's descriptions listed one source twice, "while the
tuba and tuba keep playing"; TAD 46.6 → 47.0 for l30 and 44.0 → 44.7 for f27 on 150 test questions,
docs/training-log.md) and, with ``tad_choice``, opens with the change the model finds most likely of all it could
name (:func:`tad_change_choice`, forced by :class:`ForcedPrefix`). An AVQA answer (``avqa_closed``) is the allowed answer whose whole answer turn the model finds
most probable (:func:`avqa_candidates`, :func:`closed_answer`): one of the two instruments a question names ("which
comes in first, the tuba or the bassoon?"), else a word of the MUSIC-AVQA answer vocabulary, as that protocol scores a
closed set of answers (80 of d53's 984 greedy test answers were unparsed, most of them a time).
Either way, an interval's end is written after its start (:class:`IntervalEndAfterStart`).
"""

from __future__ import annotations

import functools
import re
from typing import Any, Callable

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from must.answers import LETTERS, labelled_changes, option_clauses, option_texts
from must.model.heard import heard_for
from must.model.modeling import CACHE_ARG, MusTForCausalLM, time_token_seconds
from must.model.processing import MusTProcessor
from must.timecode import TimeExpression, find_times, format_time, parse_time

__all__ = ["answer_batch", "avqa_candidates", "closed_answer", "option_loglik", "options_loglik", "order_from_times",
           "order_from_time_probs",
           "ordering_probability", "written_time_probs", "shared_audio_prefix", "scan_scores", "scanned_time_probs", "tsg_change",
           "scanned_change_scores", "scanned_hit_second", "grounded_time_probs", "grounding_bonus",
           "source_change", "combine_time_probs",
           "answer_form_processors", "IntervalEndAfterStart", "DistinctTimes", "DistinctSources", "source_name_ids", "TimeChoice",
           "ForcedPrefix", "change_clauses", "tad_change_choice",
           "hit_window_second", "median_second", "CONSTRAINED_TIME_RULES", "shifted_questions", "CHOICE_MODES", "LTR_CALIBRATION",
           "LTR_GROUNDING_WEIGHT", "LTR_GROUNDING_PRIOR", "TSG_POINTER_WEIGHT", "TSG_SCAN_WEIGHT",
           "GTO_SCAN_SHARPNESS", "GTO_POINTER_WEIGHT", "GTO_GROUNDING_WEIGHT", "GTO_MIN_GAP"]

CHOICE_MODES = ("generate", "scored", "constrained")
LTR_CALIBRATION = 0.5  # weight of an LTR option's score at other moments, subtracted under "constrained"
CALIBRATION_SHIFTS = (-20, -10, 10, 20)  # seconds: the other moments an LTR question is asked at
LTR_GROUNDING_WEIGHT = 0.25  # grounding_bonus: weight of TSG's answer about an option's source (val)
LTR_GROUNDING_PRIOR = 0.1  # grounding_bonus: the window probability that neither raises nor lowers an option (val)
GTO_SCAN_SHARPNESS = 10.0  # scanned_time_probs: per-token log-probability → logits over seconds (val)
GTO_POINTER_WEIGHT = 0.25  # weight of the pointer's distribution against the scan's (val)
GTO_GROUNDING_WEIGHT = 0.25  # weight of TSG's answer for a listed entry or exit (val)
TSG_POINTER_WEIGHT = 0.5  # scanned_hit_second: power of the pointer's distribution (val)
TSG_SCAN_WEIGHT = 3.0  # scanned_hit_second: per-token log-probability of the change → log-weight of a second (val)
GTO_MIN_GAP = 3  # seconds: the changes a GTO question lists are separate moments (val: 2-4 tie)
_ANSWER_TAG = re.compile(r"answer\s*:", re.IGNORECASE)
# MusT's tokenizer lower-cases and splits punctuation, so "(X) 0:06" decodes as "( x ) 0:06"
_LABELLED_TIME = re.compile(r"\(\s*([xyz])\s*\)\s*(\d+:\d{2}(?:\.\d+)?)", re.IGNORECASE)
_OPTION_LABEL = re.compile(r"\(([XYZ])\)")  # "(Y) → (X) → (Z)": the order an option lists


class IntervalEndAfterStart(LogitsProcessor):
    """After ``start -``, allow only an end time after the start: the pointer chooses each time on its own and would
    otherwise write empty or reversed intervals (``0:48 - 0:48``), and the LM now and then a word (``1:51 - end
    2:12``, one of d57's 150 shift MTR answers), both of which the MTR scorer rejects. Only MTR's answers write a time
    then a dash. A start at the last second leaves no end to write, so there the LM's own next token stands."""

    def __init__(self, time_token_offset: int, max_seconds: int, dash_token_id: int, prompt_length: int):
        self.offset, self.max_seconds, self.dash, self.prompt_length = time_token_offset, max_seconds, dash_token_id, prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[1] - self.prompt_length < 2:
            return scores
        start = input_ids[:, -2] - self.offset
        open_interval = (input_ids[:, -1] == self.dash) & (start >= 0) & (start <= self.max_seconds)
        for row in torch.nonzero(open_interval).flatten().tolist():
            first_end = self.offset + int(start[row]) + 1
            if int(start[row]) < self.max_seconds:  # an end exists: nothing but a time after the start
                scores[row, :first_end] = float("-inf")
                scores[row, self.offset + self.max_seconds + 1 :] = float("-inf")
            else:
                scores[row, self.offset : first_end] = float("-inf")
        return scores


class DistinctTimes(LogitsProcessor):
    """For the batch rows in ``rows``, forbid a time within ``margin`` seconds of a time the answer already wrote:
    a GTO answer times three different changes, and a pointer left alone may write one moment twice (a tie orders
    nothing)."""

    def __init__(self, rows: set[int], config, prompt_length: int, margin: int = 1):
        self.rows, self.config, self.prompt_length, self.margin = rows, config, prompt_length, margin

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        offset, top = self.config.time_token_offset, self.config.max_seconds
        for row in self.rows:
            secs, is_time = time_token_seconds(input_ids[row, self.prompt_length :], self.config)
            for sec in secs[is_time].tolist():
                lo, hi = max(sec - self.margin, 0), min(sec + self.margin, top)
                scores[row, offset + lo : offset + hi + 1] = float("-inf")
        return scores


class DistinctSources(LogitsProcessor):
    """For the batch rows in ``rows``, forbid starting a source's name (its token ids, one tuple per source) once the
    answer has written it: a TAD description names each source once (what changes, then what keeps playing), and a
    small LM otherwise lists the most active source twice ("while the tuba and tuba keep playing")."""

    def __init__(self, rows: set[int], names: list[tuple[int, ...]], prompt_length: int):
        self.rows, self.names, self.prompt_length = rows, [n for n in names if n], prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row in self.rows:
            written = input_ids[row, self.prompt_length :].tolist()
            for name in self.names:
                k = len(name)
                if any(tuple(written[i : i + k]) == name for i in range(len(written) - k + 1)):
                    scores[row, name[0]] = float("-inf")
        return scores


class ForcedPrefix(LogitsProcessor):
    """For each batch row in ``prefixes``, the answer's first tokens are those ids (a TAD description's change, chosen
    by :func:`tad_change_choice`); the model writes the rest."""

    def __init__(self, prefixes: dict[int, list[int]], prompt_length: int):
        self.prefixes, self.prompt_length = prefixes, prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_length
        for row, ids in self.prefixes.items():
            if step < len(ids):
                scores[row] = float("-inf")
                scores[row, ids[step]] = 0.0
        return scores


def source_name_ids(tokenizer, sources: list[str]) -> list[tuple[int, ...]]:
    """Each source's name as the benchmark writes it ("the synth pad" → ids of ``synth pad``)."""
    from bench.tasks.phrasing import source_phrase

    return [tuple(tokenizer(" " + source_phrase(s).removeprefix("the "), add_special_tokens=False)["input_ids"])
            for s in sources]


def hit_window_second(probs: torch.Tensor, window: int = 3, tie: float = 0.005) -> int:
    """The second ``t`` whose window ``[t - window, t + window]`` holds the most of ``probs`` (a distribution over
    seconds 0, 1, …): the answer with the highest expected Hit@window. Windows within ``tie`` of the best are
    taken as equal and the most probable second among their centres wins, so a clear peak is written as it is
    rather than at an arbitrary shift inside the window."""
    box = torch.ones(1, 1, 2 * window + 1, dtype=probs.dtype, device=probs.device)
    mass = torch.nn.functional.conv1d(probs[None, None], box, padding=window)[0, 0]
    best = mass >= mass.max() - tie
    return int(torch.where(best, probs, torch.full_like(probs, -1.0)).argmax())


def median_second(probs: torch.Tensor) -> int:
    """The median of ``probs`` (a distribution over seconds 0, 1, …): the second with the least expected absolute
    error."""
    return min(int(torch.searchsorted(torch.cumsum(probs, 0), 0.5 * probs.sum())), len(probs) - 1)


# under choices="constrained", the rule that writes each task's times (other tasks: the most probable second)
CONSTRAINED_TIME_RULES: dict[str, Callable[[torch.Tensor], int]] = {"TSG": hit_window_second, "MTR": median_second}


class TimeChoice(LogitsProcessor):
    """For the batch rows in ``rules``, when the most probable next token is a time, write the second that the
    row's rule picks from the model's distribution over seconds (the time tokens' scores, renormalised) instead
    of the single most probable one."""

    def __init__(self, rules: dict[int, Callable[[torch.Tensor], int]], config):
        self.rules, self.config = rules, config

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        lo = self.config.time_token_offset
        hi = lo + self.config.max_seconds + 1
        _, next_is_time = time_token_seconds(scores.argmax(-1), self.config)
        for row, rule in self.rules.items():
            if not bool(next_is_time[row]):
                continue
            second = rule(torch.softmax(scores[row, lo:hi].float(), -1))
            if torch.isinf(scores[row, lo + second]):  # a second another processor forbade (e.g. an end before its start)
                continue
            scores[row] = float("-inf")
            scores[row, lo + second] = 0.0
        return scores


def answer_form_processors(model, tokenizer, prompt_length: int) -> LogitsProcessorList:
    """The constraints every MusT answer is written under, greedy or sampled: an interval's end after its start."""
    dash = tokenizer.convert_tokens_to_ids("-")
    if dash == tokenizer.unk_token_id:
        return LogitsProcessorList()
    return LogitsProcessorList([IntervalEndAfterStart(model.config.time_token_offset, model.config.max_seconds, dash,
                                                      prompt_length)])


@torch.no_grad()
def answer_batch(model, processor: MusTProcessor, items: list[dict[str, Any]], features: list[torch.Tensor],
                 max_new_tokens: int = 48, choices: str = "generate", ltr_calibration: float = LTR_CALIBRATION,
                 gto_scan: bool = True, gto_min_gap: int | None = None, gto_grounding: bool = True,
                 ltr_grounding: bool = True, tsg_scan: bool = True, avqa_closed: bool = True,
                 tsg_weights: tuple[float, float] = (TSG_POINTER_WEIGHT, TSG_SCAN_WEIGHT),
                 tad_choice: bool = True) -> list[str]:
    """Answers for items (``question``, ``instruction``, ``duration``, optional ``task``) given their audio
    features: greedy text, with multiple-choice letters chosen as described in the module doc when ``choices`` is
    ``"scored"`` or ``"constrained"`` (``ltr_calibration``: see there, 0 turns it off; ``gto_scan``: GTO's times
    also from :func:`scanned_time_probs`; ``gto_grounding``: GTO's entries and exits also from
    :func:`grounded_time_probs`; ``ltr_grounding``: LTR options that are a source entering or stopping weighed by
    :func:`grounding_bonus`; ``tsg_scan``: a TSG time also from :func:`scanned_change_scores`, weighed by ``tsg_weights``
    (the pointer's power and the scan's weight in :func:`scanned_hit_second`); ``gto_min_gap``: seconds
    between consecutive changes when ordering them, default :data:`GTO_MIN_GAP`; ``avqa_closed``, ``constrained``
    only: an AVQA answer is :func:`closed_answer` among :func:`avqa_candidates`; ``tad_choice``, ``constrained``
    only: a TAD description opens with :func:`tad_change_choice`'s change)."""
    if choices not in CHOICE_MODES:
        raise ValueError(f"choices must be one of {CHOICE_MODES}, got {choices!r}")
    model.eval()
    tok = processor.tokenizer
    heard = [heard_for(model, f) for f in features]  # once per item: the LTR calibration and GTO scan re-prompt often

    def prompt(k: int, question: str | None = None, instruction: str | None = None) -> str:
        item = items[k]
        return processor.prompt(question or item["question"], item["duration"],
                                item.get("instruction", "") if instruction is None else instruction, heard=heard[k])

    prompts = [prompt(k) for k in range(len(items))]

    def seconds_of(k: int) -> int:
        """The last second of item ``k``'s audio the model can name."""
        return min(model.config.max_seconds, int(items[k]["duration"]))

    @functools.cache
    def instruction_of(task: str) -> str:
        """The default instruction of ``task``'s questions, which GTO's scan (LTR) and grounding (TSG) ask (read once
        per batch)."""
        from bench.evaluate.prompts import load_prompts

        return load_prompts().instructions[task]
    enc = tok(prompts, return_tensors="pt", padding=True)
    n = enc["input_ids"].shape[1]
    processors = answer_form_processors(model, tok, n)
    if choices == "constrained":
        gto = {k for k, i in enumerate(items) if i.get("task") == "GTO" and option_texts(i["question"])}
        processors.append(DistinctTimes(gto, model.config, n))
        tad = {k for k, i in enumerate(items) if i.get("task") == "TAD"}
        if tad:
            processors.append(DistinctSources(tad, source_name_ids(tok, list(model.config.sources)), n))
        timed = CONSTRAINED_TIME_RULES
        rules = {k: timed[i["task"]] for k, i in enumerate(items) if i.get("task") in timed}
        sources = list(model.config.sources)
        for k, item in enumerate(items):
            if tsg_scan and item.get("task") == "TSG" and (change := tsg_change(item["question"], sources)):
                scan = scanned_change_scores(model, processor, lambda q: prompt(k, q, instruction_of("LTR")), *change,
                                             features[k], seconds_of(k))
                rules[k] = functools.partial(scanned_hit_second, scan=scan, pointer_weight=tsg_weights[0],
                                             scan_weight=tsg_weights[1])
        processors.append(TimeChoice(rules, model.config))
        if tad and tad_choice:  # last: the chosen opening overrides every other rule
            opening = {k: tad_change_choice(model, processor, prompts[k], lambda q, k=k: prompt(k, q, instruction_of("TSG")),
                                            items[k]["question"], features[k], seconds_of(k)) for k in sorted(tad)}
            processors.append(ForcedPrefix({k: tok(f" {c}", add_special_tokens=False)["input_ids"]
                                            for k, c in opening.items()}, n))
    out = model.generate(input_ids=enc["input_ids"].to(model.device), attention_mask=enc["attention_mask"].to(model.device),
                         audio_features=features, max_new_tokens=max_new_tokens, do_sample=False,
                         logits_processor=processors,
                         eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tok.pad_token_id)
    answers = [processor.decode(row[n:]) for row in out]
    if choices in ("scored", "constrained"):
        for k, (item, feats) in enumerate(zip(items, features)):
            options = option_texts(item["question"])
            if item.get("task") == "LTR" and options:
                # scored: the whole trained answer, letter included; constrained: the description alone
                scored = choices == "scored"
                conts = [f"{text}. Answer: {letter}" if scored else f"{text}." for letter, text in options.items()]
                others = shifted_questions(item["question"], item["duration"]) if not scored and ltr_calibration else []
                # the asked moment and the shifted ones in one batch: row 0 is the question as asked
                table = options_loglik(model, processor, [prompts[k]] + [prompt(k, q) for q in others], feats, conts,
                                       closed=scored)
                scores = table[0] - ltr_calibration * table[1:].mean(0) if others else table[0]
                if ltr_grounding and not scored:
                    scores = scores + grounding_bonus(
                        grounded_time_probs(model, processor, lambda q: prompt(k, q, instruction_of("TSG")), options, feats,
                                            seconds_of(k)),
                        list(options), item["question"])
                best = max(zip(scores, options), key=lambda x: x[0])[1]
                answers[k] = f"{options[best]}. Answer: {best}"
            elif item.get("task") == "GTO" and options:
                letter = None
                if choices == "constrained":
                    seconds = seconds_of(k)
                    probs = written_time_probs(model, processor, prompts[k], feats, out[k, n:], seconds)
                    if gto_scan:
                        scan = scanned_time_probs(model, processor, lambda q: prompt(k, q, instruction_of("LTR")),
                                                  item["question"], feats, seconds)
                        probs = combine_time_probs(scan, probs, GTO_POINTER_WEIGHT)
                    if gto_grounding:
                        grounded = grounded_time_probs(model, processor, lambda q: prompt(k, q, instruction_of("TSG")),
                                                       labelled_changes(item["question"]), feats, seconds)
                        probs = combine_time_probs(probs, grounded, GTO_GROUNDING_WEIGHT)
                    letter = order_from_time_probs(probs, options, GTO_MIN_GAP if gto_min_gap is None else gto_min_gap)
                letter = letter or order_from_times(answers[k], options)
                if letter:
                    answers[k] = f"{_ANSWER_TAG.split(answers[k])[0].strip()} Answer: {letter}"
            elif item.get("task") == "AVQA" and choices == "constrained" and avqa_closed:
                answers[k] = closed_answer(model, processor, prompts[k], feats, avqa_candidates(item["question"]))
    return answers


_NAMED_PAIR = re.compile(r"\bthe ([a-z][a-z_ ]*?) or the ([a-z][a-z_ ]*?)\s*\?", re.IGNORECASE)


def avqa_candidates(question: str) -> list[str]:
    """The answers an AVQA question allows: the two instruments it names ("…, the tuba or the electric bass?" →
    ``["tuba", "electric_bass"]``, in MUSIC-AVQA spelling), else the whole MUSIC-AVQA answer vocabulary."""
    from bench.metrics.avqa import VOCAB, normalize_answer

    if m := _NAMED_PAIR.search(question):
        named = [normalize_answer(name).value for name in m.groups()]
        if all(named) and named[0] != named[1]:
            return named
    return list(VOCAB)


def closed_answer(model, processor: MusTProcessor, prompt: str, features: torch.Tensor, candidates: list[str]) -> str:
    """The candidate whose answer turn (``processor.answer``, end of turn included) is most probable after
    ``prompt``: the sum of its tokens' log-probabilities, so an answer of several tokens is not favoured because its
    later tokens are easy to predict."""
    return candidates[int(np.argmax(options_loglik(model, processor, [prompt], features, candidates, total=True)[0]))]


def shifted_questions(question: str, duration: float, shifts: tuple[int, ...] = CALIBRATION_SHIFTS) -> list[str]:
    """``question`` asked at other moments: its first ``M:SS`` moved by each of ``shifts`` seconds, kept inside the
    track; shifts that land back on the asked second are left out (none if the question names no time)."""
    asked = _asked_time(question)
    if asked is None:
        return []
    last = max(int(duration) - 1, 0)
    moved = {min(max(int(round(asked.seconds)) + s, 0), last) for s in shifts} - {int(round(asked.seconds))}
    return [question[: asked.start] + format_time(t) + question[asked.end :] for t in sorted(moved)]


def _asked_time(question: str) -> TimeExpression | None:
    """The first ``M:SS`` of a question (the moment an LTR question asks about), or ``None``."""
    return next((t for t in find_times(question) if t.kind == "colon" and t.seconds is not None), None)


def option_loglik(model, processor: MusTProcessor, prompt: str, features: torch.Tensor, continuations: list[str],
                  closed: bool = True) -> list[float]:
    """Mean log-probability per token of each continuation of ``prompt`` (one audio, one batch); ``closed``: the
    continuation ends the turn (``<|im_end|>`` is scored too)."""
    return options_loglik(model, processor, [prompt], features, continuations, closed)[0].tolist()


@torch.no_grad()
def options_loglik(model, processor: MusTProcessor, prompts: list[str], features: torch.Tensor, continuations: list[str],
                   closed: bool = True, total: bool = False) -> np.ndarray:
    """``(prompts, continuations)``: :func:`option_loglik` of every continuation after each of ``prompts`` (one
    audio), in one batch; ``total``: the sum of the tokens' log-probabilities instead of their mean."""
    tok = processor.tokenizer
    ps = tok(list(prompts), add_special_tokens=False)["input_ids"]
    conts = [tok(processor.answer(c) if closed else f" {c}", add_special_tokens=False)["input_ids"] for c in continuations]
    rows = [(p, c) for p in ps for c in conts]
    start = shared_audio_prefix(ps, model.config.audio_eos_token_id)
    # each continuation follows its prompt; the audio prefix all rows share is read once, its KV cache reused
    ids, mask, _ = _right_padded([p[start:] + c for p, c in rows], tok.pad_token_id)
    logits = _logits_after_prefix(model, ps[0][:start], ids, mask, features).float()
    logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:].unsqueeze(-1).to(logits.device))[..., 0]
    reduce = torch.sum if total else torch.mean
    scores = [float(reduce(logp[i, len(p) - start - 1 : len(p) - start - 1 + len(c)])) for i, (p, c) in enumerate(rows)]
    return np.array(scores).reshape(len(ps), len(conts))


def shared_audio_prefix(rows: list[list[int]], audio_eos_id: int | None) -> int:
    """How many leading tokens every row shares, up to and including the audio span's end (``<|audio_eos|>``), or 0
    when the rows differ before it (the question precedes the audio) or a row would have nothing after it. Tokens
    there see only the system turn and the audio, so their keys and values are the same in every row."""
    first = rows[0] if rows else []
    if audio_eos_id is None or audio_eos_id not in first:
        return 0
    end = first.index(audio_eos_id) + 1
    return end if all(len(r) > end and r[:end] == first[:end] for r in rows) else 0


def _logits_after_prefix(model, prefix: list[int], ids: torch.Tensor, mask: torch.Tensor,
                         features: torch.Tensor) -> torch.Tensor:
    """Logits of ``ids`` (right-padded rows, one audio) each following ``prefix``: the prefix is run once and its KV
    cache, audio and asked seconds are repeated for every row (the logits equal those of whole rows to ~1e-6; a
    scan's rows are two-thirds audio, read once instead of per row). Without a prefix, or for a model wrapped in
    another (whose per-row audio state is not at ``model.model``), the rows are run whole."""
    rows = ids.shape[0]
    if not prefix or not isinstance(model, MusTForCausalLM):
        ids = torch.cat([torch.tensor([prefix] * rows, dtype=ids.dtype), ids], 1) if prefix else ids
        mask = torch.cat([torch.ones(rows, len(prefix), dtype=mask.dtype), mask], 1) if prefix else mask
        return model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                     audio_features=[features] * rows).logits[:, len(prefix) :]
    head = torch.tensor([prefix], device=model.device)
    cache = getattr(model(input_ids=head, attention_mask=torch.ones_like(head), audio_features=[features],
                          use_cache=True), CACHE_ARG)
    cache.batch_repeat_interleave(rows)
    model.model.select_rows([0] * rows)  # the MusTModel whose per-row audio state the pointer reads
    n = len(prefix)
    full_mask = torch.cat([torch.ones(rows, n, dtype=mask.dtype), mask], 1).to(model.device)
    positions = (n + torch.arange(ids.shape[1], device=model.device)).expand(rows, -1)
    return model(input_ids=ids.to(model.device), attention_mask=full_mask, position_ids=positions, use_cache=True,
                 **{CACHE_ARG: cache}).logits


def order_from_times(text: str, options: dict[str, str]) -> str | None:
    """The option letter whose order of ``(X)``, ``(Y)``, ``(Z)`` matches the times written for them in
    ``text`` (``(X) 0:06 (Y) 0:31 (Z) 0:16`` → the option listing ``(X) → (Z) → (Y)``); ``None`` if the
    text does not give three distinct times or no option matches."""
    times: dict[str, float] = {}
    for label, code in _LABELLED_TIME.findall(text or ""):
        try:
            times.setdefault(label.upper(), parse_time(code))
        except ValueError:
            return None
    if set(times) != {"X", "Y", "Z"} or len(set(times.values())) < 3:
        return None
    order = sorted(times, key=lambda x: times[x])
    for letter, opt in options.items():
        if _OPTION_LABEL.findall(opt) == order:
            return letter
    return None


@torch.no_grad()
def written_time_probs(model, processor: MusTProcessor, prompt: str, features: torch.Tensor, answer_ids: torch.Tensor,
                       seconds: int) -> dict[str, np.ndarray]:
    """For each of ``(X)``, ``(Y)``, ``(Z)`` the answer times, the model's distribution over the seconds
    ``0..seconds`` (its time tokens' logits, renormalised) where it wrote that time (the first time token after the
    label), the answer read back as written: each change's time given the times written before it."""
    tok, cfg = processor.tokenizer, model.config
    labels = dict(zip(tok.convert_tokens_to_ids(["x", "y", "z"]), "XYZ"))
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    ids = answer_ids.tolist()
    end = tok.convert_tokens_to_ids("<|im_end|>")
    ids = ids[: ids.index(end)] if end in ids else ids
    _, is_time = time_token_seconds(answer_ids, cfg)
    where, label = {}, None
    for i, t in enumerate(ids):
        if t in labels:
            label = labels[t]
        elif label and label not in where and bool(is_time[i]):
            where[label], label = len(p) + i - 1, None  # the position whose logits chose this time
    if not where:
        return {}
    full = torch.tensor([p + ids], device=model.device)
    logits = model(input_ids=full, attention_mask=torch.ones_like(full), audio_features=[features]).logits[0].float()
    span = slice(cfg.time_token_offset, cfg.time_token_offset + seconds + 1)
    return {lab: torch.softmax(logits[pos, span], -1).cpu().numpy() for lab, pos in where.items()}


def scan_scores(model, processor: MusTProcessor, prompt_of: Callable[[str], str], options: list[str],
                continuations: list[str], features: torch.Tensor, seconds: int, batch_seconds: int = 4) -> np.ndarray:
    """``(seconds + 1, continuations)``: asked LTR's question "What happens in the music at t?" with ``options`` listed
    (A, B, …) at every second ``t`` of ``0..seconds``, the mean log-probability per token of each continuation
    (:func:`options_loglik`), ``batch_seconds`` seconds per forward pass. ``prompt_of``: a question's prompt."""
    from bench.tasks.ltr import TEMPLATES

    listed = "\n".join(f"{letter}: {text}" for letter, text in zip(LETTERS, options))
    # "What happens in the music at {t}?": the template that names the music, not "the change", which need not exist
    template = TEMPLATES[-1] + "\n\n" + listed
    times = list(range(seconds + 1))
    return np.concatenate([
        options_loglik(model, processor, [prompt_of(template.format(t=format_time(t))) for t in times[i : i + batch_seconds]],
                       features, continuations, closed=False)
        for i in range(0, len(times), batch_seconds)])


def scanned_time_probs(model, processor: MusTProcessor, prompt_of: Callable[[str], str], question: str,
                       features: torch.Tensor, seconds: int, sharpness: float = GTO_SCAN_SHARPNESS,
                       batch_seconds: int = 4) -> dict[str, np.ndarray]:
    """For each change ``(X)``, ``(Y)``, ``(Z)`` a GTO question lists, a distribution over the seconds ``0..seconds``
    from asking, at every second ``t``, the LTR question "What happens in the music at t?" with the three changes and
    "No noticeable change" as its options (:func:`scan_scores`): each change's mean log-probability per token as
    ``t`` goes, less its mean over the track (what the model finds likely anywhere), times ``sharpness``, softmaxed
    over seconds. Recognising a change at a given moment is what LTR trains, and MusT does it better than it points
    at the moment (for the music getting softer or louder, 87–97 % of LTR answers against 52–66 % of GTO times
    within 3 s; tempo changes 58–64 % against 14–17 %, docs/training-log.md). ``prompt_of``: a question's prompt.
    Empty when the question does not list three changes."""
    from bench.tasks.phrasing import NO_CHANGE

    changes = labelled_changes(question)
    if sorted(changes) != ["X", "Y", "Z"]:
        return {}
    options = [changes["X"], changes["Y"], changes["Z"], NO_CHANGE]
    scores = scan_scores(model, processor, prompt_of, options, [f"{o}." for o in options], features, seconds,
                         batch_seconds)[:, :3]
    logits = sharpness * (scores - scores.mean(0))
    probs = np.exp(logits - logits.max(0))
    return {label: probs[:, i] / probs[:, i].sum() for i, label in enumerate("XYZ")}


def tsg_change(question: str, sources: list[str]) -> tuple[str, str] | None:
    """``(kind, source)`` a TSG question asks about, in the benchmark's wording ("When does the tuba first start to
    play?" → ``("enter", "tuba")``, "… finally stop playing?" → ``("exit", "tuba")``); ``None`` for other
    wordings."""
    asked = question.strip()
    return next(((kind, s) for s in sources for kind in ("enter", "exit") if asked in _tsg_questions(kind, s)), None)


def _tsg_questions(kind: str, source: str) -> list[str]:
    """TSG's wordings of the question when ``source`` first enters (``kind`` "enter") or last stops ("exit")."""
    from bench.tasks.phrasing import source_phrase
    from bench.tasks.tsg import OFFSET, ONSET

    return [t.format(s=source_phrase(source)) for t in (ONSET if kind == "enter" else OFFSET)]


def scanned_change_scores(model, processor: MusTProcessor, prompt_of: Callable[[str], str], kind: str, source: str,
                          features: torch.Tensor, seconds: int, batch_seconds: int = 16) -> np.ndarray:
    """Per second ``0..seconds``, how much more than on average over the track the model recognises ``source``
    entering (``kind`` "enter") or stopping ("exit") there: LTR's question asked at every second with the change,
    its inverse and "No noticeable change" as options (:func:`scan_scores`), the change's mean log-probability per
    token less its mean over the seconds."""
    from bench.tasks.phrasing import NO_CHANGE, moment_option
    from must.annotation import Event

    options = [moment_option([Event(0.0, k, source)]) for k in (kind, "exit" if kind == "enter" else "enter")]
    options.append(NO_CHANGE)
    scores = scan_scores(model, processor, prompt_of, options, [f"{options[0]}."], features, seconds,
                         batch_seconds)[:, 0]
    return scores - scores.mean()


def scanned_hit_second(probs: torch.Tensor, scan: np.ndarray, pointer_weight: float = TSG_POINTER_WEIGHT,
                       scan_weight: float = TSG_SCAN_WEIGHT) -> int:
    """:func:`hit_window_second` of ``probs^pointer_weight · exp(scan_weight · scan)`` renormalised: the pointer's
    distribution over seconds weighed by :func:`scanned_change_scores` (seconds past the scan's end get its lowest
    score)."""
    extra = len(probs) - len(scan)
    scan = np.concatenate([scan, np.full(extra, scan.min())]) if extra > 0 else scan[: len(probs)]
    logits = pointer_weight * torch.log(probs.double().clamp(min=1e-12)) + scan_weight * torch.from_numpy(scan).double()
    return hit_window_second(torch.softmax(logits, 0).to(probs.dtype))


def source_change(text: str, sources: list[str]) -> tuple[str, str] | None:
    """``(kind, source)`` of the first clause of a change's text that is one of ``sources`` entering or stopping, in
    the benchmark's wording (``"The tuba enters and the tempo speeds up"`` → ``("enter", "tuba")``); ``None`` when no
    clause is (the music getting louder, the tempo changing)."""
    from bench.tasks.phrasing import event_option
    from must.annotation import Event

    wordings = {event_option(Event(0.0, kind, s)): (kind, s) for s in sources for kind in ("enter", "exit")}
    return next((wordings[c] for c in option_clauses(text) if c in wordings), None)


@torch.no_grad()
def grounded_time_probs(model, processor: MusTProcessor, prompt_of: Callable[[str], str], changes: dict[str, str],
                        features: torch.Tensor, seconds: int) -> dict[str, np.ndarray]:
    """For each of ``changes`` (label → text: a GTO question's ``(X)``, ``(Y)``, ``(Z)``, an LTR question's options)
    that is a source entering or stopping (:func:`source_change`), the model's distribution over the seconds
    ``0..seconds`` for the first token of its answer to TSG's question about that source ("When does the tuba first
    start to play?" / "… finally stop playing?"; a TSG answer is a bare ``M:SS``), its time tokens' logits
    renormalised: where the source first enters (last stops), which TSG trains on many more questions than GTO and
    LTR have. ``prompt_of``: a question's prompt. Changes of the music as a whole get no distribution."""
    asked = {}
    for label, text in changes.items():
        if found := source_change(text, list(model.config.sources)):
            asked[label] = _tsg_questions(*found)[0]
    if not asked:
        return {}
    rows = processor.tokenizer([prompt_of(q) for q in asked.values()], add_special_tokens=False)["input_ids"]
    start = shared_audio_prefix(rows, model.config.audio_eos_token_id)
    ids, mask, ends = _right_padded([r[start:] for r in rows], processor.tokenizer.pad_token_id)
    logits = _logits_after_prefix(model, rows[0][:start], ids, mask, features)
    lo = model.config.time_token_offset
    return {label: torch.softmax(logits[i, end - 1, lo : lo + seconds + 1].float(), -1).cpu().numpy()
            for i, (label, end) in enumerate(zip(asked, ends))}


def grounding_bonus(probs: dict[str, np.ndarray], letters: list[str], question: str, window: int = 3) -> np.ndarray:
    """Per LTR option (in ``letters`` order), ``LTR_GROUNDING_WEIGHT · log(m / LTR_GROUNDING_PRIOR)``, ``m`` the
    probability (at least 1e-4) that its source's first entry (last exit) in ``probs`` (:func:`grounded_time_probs`)
    falls within ``window`` seconds of the question's time: a source entering at the asked moment is likelier when
    TSG's answer about it points there. 0 for options ``probs`` has no distribution for (no noticeable change, the
    music's own changes) and when the question names no time."""
    asked = _asked_time(question)
    bonus = np.zeros(len(letters))
    if asked is None:
        return bonus
    at = int(round(asked.seconds))
    for i, letter in enumerate(letters):
        if letter in probs:
            mass = float(probs[letter][max(0, at - window) : at + window + 1].sum())
            bonus[i] = LTR_GROUNDING_WEIGHT * (np.log(max(mass, 1e-4)) - np.log(LTR_GROUNDING_PRIOR))
    return bonus


def change_clauses(sources: list[str]) -> list[str]:
    """Every change a TAD description can open with, as MusT is taught to write it
    (:func:`bench.tasks.phrasing.description_opening`): each source entering and stopping ("the tuba enters"), the
    tempo speeding up and slowing down, the music getting noticeably louder and softer."""
    from bench.tasks.phrasing import description_opening
    from must.annotation import Event

    events = [Event(0.0, kind, s) for s in sources for kind in ("enter", "exit")]
    events += [Event(0.0, "tempo_change", None, {"from": a, "to": b}) for a, b in ((1, 2), (2, 1))]
    events += [Event(0.0, "dynamic_change", None, {"direction": d}) for d in ("louder", "softer")]
    return [description_opening(e) for e in events]


@torch.no_grad()
def tad_change_choice(model, processor: MusTProcessor, prompt: str, prompt_of: Callable[[str], str], question: str,
                      features: torch.Tensor, seconds: int) -> str:
    """The change a TAD description opens with: of :func:`change_clauses`, the one whose mean log-probability per
    token after ``prompt`` plus :func:`grounding_bonus` (for a source entering or stopping, as LTR's options;
    ``prompt_of``: a question's prompt, for TSG's question about each source) is highest. Greedy decoding names the
    first change of val's TAD moments 59.5 % of the time (d62); this choice 66.0 % (63.5 % without the bonus; LTR's
    calibration against other moments lowers it, 0.5: 64.0 %; docs/training-log.md)."""
    clauses = change_clauses(list(model.config.sources))
    labelled = {str(i): c for i, c in enumerate(clauses)}
    scores = options_loglik(model, processor, [prompt], features, clauses, closed=False)[0]
    return clauses[int(np.argmax(scores + grounding_bonus(
        grounded_time_probs(model, processor, prompt_of, labelled, features, seconds), list(labelled), question)))]


def _right_padded(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Token rows as one right-padded batch: ids, attention mask, and each row's length (its last real token is at
    ``length - 1``, whatever the tokenizer's padding side)."""
    n = max(len(r) for r in rows)
    ids = torch.full((len(rows), n), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask, [len(r) for r in rows]


def combine_time_probs(first: dict[str, np.ndarray], second: dict[str, np.ndarray], weight: float) -> dict[str, np.ndarray]:
    """Per label, ``first · second^weight`` renormalised over the seconds both cover (a product of experts); a label
    only one of them has keeps that one's distribution."""
    out = {}
    for label in set(first) | set(second):
        if label not in first or label not in second:
            out[label] = first.get(label, second.get(label))
            continue
        n = min(len(first[label]), len(second[label]))
        logp = np.log(np.maximum(first[label][:n], 1e-12)) + weight * np.log(np.maximum(second[label][:n], 1e-12))
        p = np.exp(logp - logp.max())
        out[label] = p / p.sum()
    return out


def ordering_probability(first: np.ndarray, second: np.ndarray, third: np.ndarray, min_gap: int = 1) -> float:
    """``P(t1 + min_gap <= t2, t2 + min_gap <= t3)`` for three independent distributions over the same seconds:
    the probability that they happen in this order, each at least ``min_gap`` seconds after the one before (with
    the default 1, ``P(t1 < t2 < t3)``: ties order nothing)."""
    if min_gap < 1:
        raise ValueError(f"min_gap must be at least 1 second, got {min_gap}")
    n = min(len(first), len(second), len(third))
    upto = np.clip(np.arange(n) - min_gap + 1, 0, n)  # P(t <= s - min_gap) is the cumulative sum up to this index
    before = np.concatenate([[0.0], np.cumsum(first[:n])])[upto]  # P(t1 <= s - min_gap)
    between = np.concatenate([[0.0], np.cumsum(before * second[:n])])[upto]  # P(t1 + gap <= t2 <= s - gap)
    return float((between * third[:n]).sum())


def order_from_time_probs(probs: dict[str, np.ndarray], options: dict[str, str], min_gap: int = 1) -> str | None:
    """The option letter whose order of ``(X)``, ``(Y)``, ``(Z)`` is most probable when each change's time is
    drawn from its distribution in ``probs``, consecutive changes at least ``min_gap`` seconds apart
    (:func:`ordering_probability`); ``None`` if a change has no distribution or no option orders all three."""
    if set(probs) != {"X", "Y", "Z"}:
        return None
    scored = {letter: ordering_probability(*(probs[x] for x in order), min_gap=min_gap) for letter, opt in options.items()
              if sorted(order := _OPTION_LABEL.findall(opt)) == ["X", "Y", "Z"]}
    return max(scored, key=scored.get) if scored else None
