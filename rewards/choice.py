"""Accuracy for the closed-answer tasks (LTR, GTO letters; AVQA vocabulary words), and TAD text rewards."""

from __future__ import annotations

from bench.metrics import avqa
from bench.metrics import text as text_metrics
from bench.scoring import n_options
from must.answers import parse_choice
from rewards.base import answer_text, column, completion_texts, register_reward

__all__ = ["choice_accuracy", "tad_meteor", "tad_semantic"]


@register_reward("choice_accuracy", tasks=("LTR", "GTO", "AVQA"))
def choice_accuracy(completions, **kwargs) -> list[float | None]:
    """1 when the parsed letter (LTR/GTO) or vocabulary word (AVQA) is the answer, else 0."""
    texts = completion_texts(completions)
    n = len(texts)
    tasks, answers, questions = column(kwargs, "task", n), column(kwargs, "answer", n), column(kwargs, "question", n, "")
    prompts = column(kwargs, "prompts", n, "")
    out: list[float | None] = []
    for text, task, ans, q, p in zip(texts, tasks, answers, questions, prompts):
        if task is None or ans is None:  # the task picks the parser
            out.append(None)
            continue
        a = answer_text(text)
        question = q or (p if isinstance(p, str) else "")
        if task == "AVQA":
            got = avqa.normalize_answer(a).value
            out.append(float(got is not None and got == avqa.normalize_answer(str(ans)).value))
        else:
            got = parse_choice(a, n_options(task, question or ""), question or None).value
            out.append(float(got == str(ans).strip()))
    return out


def _tad(completions, kwargs, fn) -> list[float | None]:
    texts = completion_texts(completions)
    n = len(texts)
    answers, answer = column(kwargs, "answers", n), column(kwargs, "answer", n)
    out: list[float | None] = []
    for text, refs, ref in zip(texts, answers, answer):
        if refs is None and ref is None:
            out.append(None)
            continue
        out.append(fn([str(r) for r in (list(refs) if refs is not None else [ref])], answer_text(text)))
    return out


@register_reward("tad_meteor", tasks=("TAD",))
def tad_meteor(completions, **kwargs) -> list[float | None]:
    """METEOR of the description against the references (as the scorer computes it)."""
    return _tad(completions, kwargs, text_metrics.meteor)


@register_reward("tad_semantic", tasks=("TAD",))
def tad_semantic(completions, *, encoder: str | None = None, **kwargs) -> list[float | None]:
    """Sentence-embedding cosine similarity to the references (as the scorer computes it)."""
    enc = text_metrics.load_encoder(encoder)
    return _tad(completions, kwargs, lambda refs, hyp: text_metrics.semantic_similarity(refs, hyp, enc))
