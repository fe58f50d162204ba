"""Stage 4 — GRPO with TRL's ``GRPOTrainer`` and rewards from ``rewards/`` (timestamp reward for TSG,
interval IoU for MTR, accuracy for the multiple-choice tasks, format …); group size, β and temperature
from the config. TRL has no audio input path: prompts name their audio with a key the model resolves from
a feature store (MusT: ``<|audio_key|> K``; an hf audio-LM: ``[K]`` before its audio placeholder), so prompts stay plain text."""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import types
from collections.abc import Callable, Iterable
from pathlib import Path

import datasets
import numpy as np
import torch
from transformers import LogitsProcessorList, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from must.model.heard import heard_for
from must.model.inference import CONSTRAINED_TIME_RULES, TimeChoice, answer_form_processors
from must.model.modeling import CACHE_ARG
from rewards import baseline_tasks, build_reward_funcs, load_reward_config, needs_baseline, reads_baseline
from rewards.base import column
from stages.common import (AutocastMixin, JsonlLogger, features_tag, finish_lora_stage, freeze_audio_encoder,
                           load_stage_model, lora_config, rank_world, resume_point, stage_dir, trainer_kwargs)
from stages.config import GRPOStage, ModulePass, TrainConfig
from stages.data import TrainData
from stages.shared_prompts import run_prompts_once
from stages.stage3_sft import balanced

__all__ = ["GRPOStageRecipe", "StageGRPOTrainer", "DropUnscoredMetrics", "PolicyBaseline", "score_with_full_logits",
           "sample_in_answer_form", "sample_prompts_once", "must_policy"]

log = logging.getLogger(__name__)


class StageGRPOTrainer(AutocastMixin, GRPOTrainer):
    """TRL's ``GRPOTrainer`` with the stage's ``autocast`` (the policy's loss pass; sampling stays float32)."""


class DropUnscoredMetrics(TrainerCallback):
    """Drop the metrics TRL logs as None — a reward that scored none of the logged steps' prompts (``choice_accuracy``
    on TSG/MTR prompts) — before the TensorBoard callback warns about each of them at every log."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in [k for k, v in (logs or {}).items() if v is None]:
            del logs[key]


def score_with_full_logits(model, temperature: float) -> None:
    """Undo TRL's fused LM head on a MusT model: TRL scores completions (``fused_lm_head=True``) by multiplying the
    backbone's hidden states with ``lm_head`` alone, which leaves out MusT's pointer term — the part of every time
    token's logit that chooses a second by its audio — so GRPO's gradient never reached the pointer and the time
    tokens it sampled were scored by another distribution. Here the log-probabilities come from MusT's own logits
    (vocabulary of ~1,300: materialising them is cheap), each distinct prompt run once (:func:`run_prompts_once`)."""
    from trl.trainer.utils import FusedCausalLMOutput

    original = type(model).forward

    @functools.wraps(original)
    def forward(self, *args, fused_lm_head: bool = False, labels=None, shift_labels=None, num_items_in_batch=None, **kwargs):
        if not fused_lm_head:
            extra = {} if num_items_in_batch is None else {"num_items_in_batch": num_items_in_batch}
            return original(self, *args, labels=labels, **extra, **kwargs)
        kwargs["use_cache"] = False
        if shift_labels is None:
            shift_labels = labels[:, 1:]
        logits, start = _completion_logits(functools.partial(original, self), self, shift_labels, args, kwargs)
        logits, target = logits.float() / temperature, shift_labels[:, start:]
        mask = target != -100
        logp = torch.log_softmax(logits, -1)
        log_probs = logp.gather(-1, target.clamp(min=0).unsqueeze(-1))[..., 0].masked_fill(~mask, 0)
        entropy = -(logp.exp() * logp).sum(-1).masked_fill(~mask, 0)
        loss = -log_probs.sum() / (mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch)

        def unscored(x: torch.Tensor) -> torch.Tensor:  # TRL reads the last columns of (B, L - 1)
            return torch.cat([x.new_zeros(x.shape[0], start), x], dim=1)

        return FusedCausalLMOutput(loss=loss, log_probs=unscored(log_probs), entropy=unscored(entropy),
                                   label_mask=unscored(mask))

    model.forward = types.MethodType(forward, model)


def _completion_logits(forward: Callable, model, shift_labels: torch.Tensor, args: tuple, kwargs: dict
                       ) -> tuple[torch.Tensor, int]:
    """``(logits, start)``: the logits predicting ``shift_labels[:, start:]``, from the first column any row scores
    on; the rows' shared prompts run once (:func:`run_prompts_once`) when they can be, else whole rows from 0."""
    ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
    scored = (shift_labels != -100).any(0).nonzero()
    if args or ids is None or mask is None or not len(scored):
        return forward(*args, **kwargs).logits[:, :-1], 0
    upto = int(scored[0]) + 1  # the first scored token's column in input_ids: the completions start there
    extra = {k: v for k, v in kwargs.items() if k not in ("input_ids", "attention_mask", "use_cache")}
    shared = run_prompts_once(forward, model, ids, mask, upto, logits_to_keep=1, **extra)
    if shared is None:
        return forward(**kwargs).logits[:, :-1], 0
    prompts, inverse = shared
    rest = forward(input_ids=ids[:, upto:], attention_mask=mask, use_cache=True,
                   **{CACHE_ARG: getattr(prompts, CACHE_ARG)}, **extra)
    return torch.cat([prompts.logits[inverse], rest.logits[:, :-1]], dim=1), upto - 1


def sample_in_answer_form(model, tokenizer) -> None:
    """Make GRPO sample under the constraints the model answers under (:func:`answer_form_processors`): unconstrained,
    a sampled MTR end before its start is an unparsable answer (reward 0) of a kind the model never writes when it
    answers (7.8 % of the sampled TSG/MTR answers over 200 steps from f26's SFT; 0.1 % with the constraint)."""
    original = model.generate

    @functools.wraps(original)
    def generate(self, *args, logits_processor=None, **kwargs):
        ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
        processors = answer_form_processors(self, tokenizer, ids.shape[1])
        processors.extend(logits_processor or [])
        return original(*args, logits_processor=processors, **kwargs)

    model.generate = types.MethodType(generate, model)


def sample_prompts_once(model) -> None:
    """Make ``generate`` run each distinct prompt of a batch once (:func:`run_prompts_once`; GRPO repeats each
    ``num_generations`` times) and continue every row from its prompt's cache: the same samples as whole rows."""
    original = model.generate

    @functools.wraps(original)
    def generate(self, *args, **kwargs):
        ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
        if not args and ids is not None and mask is not None and kwargs.get(CACHE_ARG) is None:
            # numbered as generate numbers a left-padded prompt; the last token is left for generate's first step
            positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
            with torch.no_grad():
                shared = run_prompts_once(self, self, ids, mask, ids.shape[1] - 1, position_ids=positions, logits_to_keep=1)
            if shared is not None:
                kwargs[CACHE_ARG] = getattr(shared[0], CACHE_ARG)
        return original(*args, **kwargs)

    model.generate = types.MethodType(generate, model)


def must_policy(model, temperature: float, tokenizer=None) -> None:
    """Stage 4's MusT policy: scored with its full logits, sampling each distinct prompt once and (given the
    ``tokenizer``) in answer form. Each is installed once, also on a model merged after the module pass, which still
    carries that pass's."""
    model.__dict__.pop("forward", None)
    model.__dict__.pop("generate", None)
    score_with_full_logits(model, temperature)
    sample_prompts_once(model)
    if tokenizer is not None:
        sample_in_answer_form(model, tokenizer)


# stage4.baseline: how the answer a relative reward is measured against is decoded — as `must-bench evaluate`
# writes it by default ("greedy"), or under `choices=constrained` (TSG: the ±3 s window with the most probability,
# MTR: each boundary at its median)
BASELINE_TIME_RULES: dict[str, dict[str, Callable[[torch.Tensor], int]]] = {
    "greedy": {}, "constrained": CONSTRAINED_TIME_RULES}


class PolicyBaseline:
    """Each prompt's deterministic completion from the policy being trained, generated once per training step, as
    the ``baseline`` column of relative rewards (:mod:`rewards.relative`): the answer evaluation scores, as it
    stands. Greedy by default; ``time_rules`` (task → rule over the distribution of seconds, :class:`TimeChoice`)
    write that task's times as ``choices=constrained`` does instead of the most probable second. Only rows of
    ``tasks`` (``None``: every row), the ones the baseline-reading rewards score, get one; the rest get ``None``."""

    def __init__(self, time_rules: dict[str, Callable[[torch.Tensor], int]] | None = None,
                 tasks: Iterable[str] | None = None) -> None:
        self.trainer: StageGRPOTrainer | None = None
        self.time_rules = dict(time_rules or {})
        self.tasks = None if tasks is None else frozenset(tasks)
        self._step, self._answers = -1, {}

    def answers(self, prompts: list[str], step: int, tasks: list[str] | None = None) -> list[str]:
        """The policy's deterministic completion of each prompt (decoded as TRL decodes its samples)."""
        if step != self._step:
            self._step, self._answers = step, {}
        task_of = dict(zip(prompts, tasks or [None] * len(prompts)))
        todo = [p for p in dict.fromkeys(prompts) if p not in self._answers]
        if todo:
            self._answers.update(zip(todo, self._generate(todo, [task_of[p] for p in todo])))
        return [self._answers[p] for p in prompts]

    @torch.no_grad()
    def _generate(self, prompts: list[str], tasks: list[str | None]) -> list[str]:
        trainer = self.trainer
        tok = trainer.processing_class
        config = copy.deepcopy(trainer.generation_config)
        config.do_sample, config.temperature, config.top_p, config.top_k, config.min_p = False, None, None, None, None
        model, was_training = trainer.model, trainer.model.training
        model.eval()
        try:
            out, eos = [], set(trainer.eos_token_ids)
            for p, task in zip(prompts, tasks):  # one at a time: no padding to get right, and a step holds a few prompts
                enc = tok(text=[p], return_tensors="pt", add_special_tokens=False).to(trainer.accelerator.device)
                rule = self.time_rules.get(task)
                extra = {"logits_processor": LogitsProcessorList([TimeChoice({0: rule}, model.config)])} if rule else {}
                ids = model.generate(**enc, generation_config=config, **extra)[0, enc["input_ids"].shape[1]:].tolist()
                ends = [i for i, t in enumerate(ids) if t in eos]
                out.append(tok.decode(ids[: ends[0] + 1] if ends else ids, skip_special_tokens=True))
            return out
        finally:
            model.train(was_training)

    def wrap(self, fn: Callable) -> Callable:
        """``fn`` called with the ``baseline`` column filled from the prompts TRL passes."""

        @functools.wraps(fn)
        def with_baseline(completions, prompts, trainer_state=None, **kwargs):
            step = trainer_state.global_step if trainer_state is not None else 0
            tasks = column(kwargs, "task", len(prompts))
            wanted = [self.tasks is None or t is None or t in self.tasks for t in tasks]
            answers = iter(self.answers([p for p, w in zip(prompts, wanted) if w], step,
                                        [t for t, w in zip(tasks, wanted) if w]))
            baseline = [next(answers) if w else None for w in wanted]
            return fn(completions, prompts=prompts, baseline=baseline, **kwargs)

        return with_baseline


class GRPOStageRecipe:
    """setup → train → save_checkpoint → cleanup."""

    def __init__(self, cfg: TrainConfig, out: Path):
        self.cfg, self.out, self.sdir = cfg, out, stage_dir(out, 4)
        self.kind = cfg.model.kind

    def _prompts(self, model, examples: list[dict]) -> tuple[list[str], object]:
        tracks = self.data.tracks(self.cfg.stage4.split)
        keys = {tid: k for k, tid in enumerate(tracks.track_id)}
        if self.kind == "must":
            feats = self.data.features(model, features_tag(model), tracks, *rank_world())
            model.audio_store.update({keys[t]: f for t, f in feats.items()})
            heard = {t: heard_for(model, f) for t, f in feats.items()}
            prompts = [self.processor.prompt(e["question"], e["duration"], e["instruction"], key=keys[e["track_id"]],
                                             heard=heard[e["track_id"]]) for e in examples]
            return prompts, self.processor.tokenizer
        from stages.hf_audio import attach_audio_store, audio_token_count, chat_prompt

        fe = self.processor.feature_extractor
        store, n_tokens = {}, {}
        for r in tracks.to_dict("records"):
            wave = np.asarray(self.data.wave_samples(r["track_id"], r["audio"], fe.sampling_rate)
                              [: int(fe.chunk_length * fe.sampling_rate)], dtype=np.float32)
            f = fe(wave, sampling_rate=fe.sampling_rate, return_tensors="pt", return_attention_mask=True, padding="max_length")
            store[keys[r["track_id"]]] = {"input_features": f["input_features"][0], "feature_attention_mask": f["attention_mask"][0]}
            n_tokens[r["track_id"]] = audio_token_count(f["attention_mask"][0])
        attach_audio_store(model, self.processor.tokenizer, store)
        prompts = [chat_prompt(self.processor, e["question"], e["instruction"], key=keys[e["track_id"]],
                               expanded=n_tokens[e["track_id"]]) for e in examples]
        return prompts, self.processor.tokenizer

    def _generation_kwargs(self) -> dict | None:
        """For an hf audio-LM, sampling never writes an audio placeholder token: scored again with the prompt, a
        completion holding one has more audio tokens than audio features and the forward fails (TRL does the same
        for image tokens when given a processor; here it gets the tokenizer, since prompts are text)."""
        if self.kind == "must":
            return None
        from stages.hf_audio import audio_token_ids

        return {"suppress_tokens": audio_token_ids(self.processor)}

    def setup(self) -> None:
        """Load stage 3, fill the audio store, build the prompt dataset, rewards and the first GRPO trainer."""
        self.sdir.mkdir(parents=True, exist_ok=True)
        model, self.processor = load_stage_model(self.cfg, stage_dir(self.out, 3) / "final")
        freeze_audio_encoder(self.kind, model)
        self.data = TrainData(self.cfg.bench, self.out, self.cfg.max_train_tracks, self.cfg.seed)
        mp = self.cfg.stage4.module_pass
        if mp.max_steps > 0 and self.kind == "must":  # the modules are MusT's (the config warns for other kinds)
            self.module_dir = self.sdir / "module_pass"
            self.module_dir.mkdir(exist_ok=True)
            log.info("stage 4: module pass, %s on %s prompts for %d steps", mp.modules, mp.tasks, mp.max_steps)
            self.trainer = self._trainer(model, self._module_pass_stage(), self.module_dir)
        else:
            self.module_dir = None
            self.trainer = self._trainer(model, self.cfg.stage4, self.sdir)

    def _module_pass_stage(self) -> GRPOStage:
        """Stage 4's settings for the module pass: its tasks, steps and rate, only its modules trained."""
        mp = self.cfg.stage4.module_pass
        return dataclasses.replace(self.cfg.stage4, max_steps=mp.max_steps, learning_rate=mp.learning_rate,
                                   tasks=list(mp.tasks), modules_to_save=list(mp.modules), train_adapters=False,
                                   module_pass=ModulePass())

    def _trainer(self, model, st: GRPOStage, sdir: Path) -> StageGRPOTrainer:
        """A GRPO trainer of ``model`` on ``st.tasks``' prompts, checkpointing and logging under ``sdir``."""
        examples = balanced(self.data.examples(st.split, st.tasks), self.cfg.seed)
        prompts, tok = self._prompts(model, examples)
        rows = [{"prompt": p, **{k: e[k] for k in ("task", "answer", "answers", "duration", "question", "qa_type")}}
                for p, e in zip(prompts, examples)]
        reward_cfg = load_reward_config(st.rewards)
        funcs, weights = build_reward_funcs(reward_cfg)
        baseline = (PolicyBaseline(BASELINE_TIME_RULES[st.baseline], baseline_tasks(reward_cfg))
                    if needs_baseline(reward_cfg) else None)
        if baseline is not None:
            funcs = [baseline.wrap(f) if reads_baseline(s) else f for f, s in zip(funcs, reward_cfg.rewards)]
        args = GRPOConfig(**trainer_kwargs(st, sdir, self.cfg), num_generations=st.num_generations, beta=st.beta,
                          temperature=st.temperature, max_completion_length=st.max_completion_length,
                          reward_weights=weights, log_completions=False, bf16=False,
                          gradient_checkpointing=st.gradient_checkpointing,
                          generation_kwargs=self._generation_kwargs())
        # frozen adapters (the module pass) stay at peft's zero-initialised B and add exactly nothing; dropout on their
        # inputs would only cost time (a quarter of a module-pass step on this CPU) and random draws
        lora = lora_config(self.kind, st.lora_r, st.lora_alpha, st.lora_dropout if st.train_adapters else 0.0)
        lora.modules_to_save = list(st.modules_to_save) or None
        trainer = StageGRPOTrainer(model=model, reward_funcs=funcs, args=args,
                                   train_dataset=datasets.Dataset.from_list(rows), processing_class=tok, peft_config=lora,
                                   callbacks=[JsonlLogger(sdir / "metrics.jsonl", 4)], autocast=st.autocast)
        trainer.callback_handler.callbacks.insert(0, DropUnscoredMetrics())  # before the TensorBoard callback sees them
        if not st.train_adapters:
            for name, p in trainer.model.named_parameters():
                if "lora_" in name:
                    p.requires_grad_(False)
        if baseline is not None:
            baseline.trainer = trainer
        if self.kind == "must":
            must_policy(trainer.model.get_base_model(), st.temperature, tok if st.sample_in_answer_form else None)
        return trainer

    def train(self) -> None:
        """Train (resuming from the last checkpoint if one exists): the module pass first, if configured, merged, then
        the adapters' pass."""
        if self.module_dir is not None:
            self.trainer.train(resume_from_checkpoint=resume_point(self.module_dir))
            peft_model = self.trainer.accelerator.unwrap_model(self.trainer.model)
            if rank_world()[0] == 0:
                peft_model.save_pretrained(str(self.module_dir / "adapter"))
            self.trainer = self._trainer(peft_model.merge_and_unload(), self.cfg.stage4, self.sdir)
        self.trainer.train(resume_from_checkpoint=resume_point(self.sdir))

    def save_checkpoint(self) -> None:
        """Merge LoRA into the weights, save ``final/``, validate on val questions."""
        finish_lora_stage(4, self.out, self.trainer, self.processor, self.cfg)

    def cleanup(self) -> None:
        """Release the trainer."""
        del self.trainer
