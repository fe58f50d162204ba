"""What the stage recipes share: paths, distributed info, model creation/loading, HF Trainer arguments with
DeepSpeed, JSONL metric logging, resume points, final checkpoints and generation-based validation."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from configs import config_path
from must.environment import environment
from must.model import MusTConfig, MusTForCausalLM, MusTProcessor
from stages.config import LoopConfig, TrainConfig
from stages.data import SOURCES

__all__ = ["rank_world", "stage_dir", "is_done", "done_info", "mark_done", "deepspeed_config", "trainer_kwargs",
           "JsonlLogger", "resume_point", "new_must_model", "load_must", "save_any", "validate", "barrier", "append_metrics",
           "finish_lora_stage", "load_stage_model", "lora_config", "freeze_audio_encoder", "features_tag",
           "PROJECTOR_OPTIONS", "native_bf16", "autocast_dtype", "AutocastMixin", "StageTrainer"]

log = logging.getLogger(__name__)
STAGES = {1: "stage1_encoder", 2: "stage2_lm", 3: "stage3_sft", 4: "stage4_grpo"}


def rank_world() -> tuple[int, int]:
    """This process's rank and the world size (0, 1 outside torchrun)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def stage_dir(out: str | Path, stage: int) -> Path:
    """``OUT/stageN_name``."""
    return Path(out) / STAGES[stage]


def is_done(out: str | Path, stage: int) -> bool:
    """Whether a stage finished (its final checkpoint is complete)."""
    return (stage_dir(out, stage) / "final" / "DONE").exists()


def done_info(out: str | Path, stage: int) -> dict[str, Any]:
    """What a finished stage recorded in its ``DONE`` marker (``{}`` for a marker without JSON)."""
    try:
        return json.loads((stage_dir(out, stage) / "final" / "DONE").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def mark_done(out: str | Path, stage: int, info: dict[str, Any]) -> None:
    """Record a finished stage (written last, after the checkpoint) with the environment that trained it."""
    if rank_world()[0] == 0:
        done = {**info, "environment": environment()}
        (stage_dir(out, stage) / "final" / "DONE").write_text(json.dumps(done, indent=2))


def deepspeed_config(cfg: TrainConfig) -> dict | None:
    """The DeepSpeed JSON (a shipped name like ``deepspeed/zero2.json`` or a path), or ``None``."""
    if not cfg.deepspeed:
        return None
    p = Path(cfg.deepspeed)
    p = p if p.exists() else config_path(cfg.deepspeed)
    if not p.exists():
        raise FileNotFoundError(f"DeepSpeed config not found: {cfg.deepspeed}")
    return json.loads(p.read_text())


def trainer_kwargs(loop: LoopConfig, sdir: Path, cfg: TrainConfig, **extra) -> dict[str, Any]:
    """Keyword arguments shared by ``TrainingArguments`` and TRL configs (TensorBoard logs go to ``sdir/tensorboard``)."""
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(sdir / "tensorboard")
    return dict(output_dir=str(sdir / "checkpoints"), max_steps=max(1, loop.max_steps), learning_rate=loop.learning_rate,
                per_device_train_batch_size=loop.batch_size, gradient_accumulation_steps=loop.grad_accum,
                warmup_steps=max(0, int(loop.warmup_ratio * loop.max_steps)), weight_decay=loop.weight_decay,
                lr_scheduler_type="cosine", logging_steps=loop.logging_steps, save_steps=loop.save_steps,
                save_total_limit=2, save_strategy="steps", report_to=["tensorboard"],
                use_cpu=not torch.cuda.is_available(), deepspeed=deepspeed_config(cfg), seed=cfg.seed, data_seed=cfg.seed,
                dataloader_num_workers=0, remove_unused_columns=False, disable_tqdm=rank_world()[0] != 0, **extra)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU that supports it, or a CPU with AVX512-BF16, AMX-BF16
    or Arm's BF16 extension (elsewhere bfloat16 is emulated, and slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return any(v for k, v in torch.cpu.get_capabilities().items() if "bf16" in k)
    return False


def autocast_dtype(setting: str | None, device: torch.device) -> torch.dtype | None:
    """The dtype a stage's ``autocast`` setting asks for on ``device``: ``None`` for none, bfloat16 for ``"auto"`` where
    :func:`native_bf16`, else the named dtype."""
    if setting == "auto":
        return torch.bfloat16 if native_bf16(device) else None
    return getattr(torch, setting) if setting else None


class AutocastMixin:
    """A Trainer whose loss computations (forward passes and losses) run under ``torch.autocast`` in the dtype of a
    stage's ``autocast`` (:func:`autocast_dtype`); weights, gradients and the optimizer stay float32."""

    # Trainer's own bf16=True hands mixed precision to DeepSpeed, whose bf16 mode casts the weights themselves; this
    # autocasts under any backend, the same way on CPU and GPU
    def __init__(self, *args, autocast: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.autocast_dtype = autocast_dtype(autocast, self.args.device)
        if autocast:
            log.info("autocast %s on %s: %s", autocast, self.args.device, self.autocast_dtype or "off (float32)")

    def autocast_smart_context_manager(self, cache_enabled: bool | None = True):
        """``torch.autocast`` on the training device in the stage's dtype, else the Trainer's own."""
        if self.autocast_dtype is None:
            return super().autocast_smart_context_manager(cache_enabled)
        return torch.autocast(self.args.device.type, dtype=self.autocast_dtype, cache_enabled=cache_enabled)


class StageTrainer(AutocastMixin, Trainer):
    """The HF ``Trainer`` with the stage's ``autocast``."""


def append_metrics(path: Path, record: dict[str, Any]) -> None:
    """Append one metrics record to a JSONL file (rank 0 only)."""
    if rank_world()[0] == 0:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


def _step_of(line: str) -> float:
    """The step of one metrics.jsonl record; a line cut short by a kill counts as after every step."""
    try:
        return json.loads(line).get("step", 0)
    except (json.JSONDecodeError, AttributeError):
        return float("inf")


class JsonlLogger(TrainerCallback):
    """Appends every logged metric dict, with step and wall time, to ``metrics.jsonl``."""

    def __init__(self, path: Path, stage: int):
        self.path, self.stage, self.t0, self.started = path, stage, time.time(), False

    def on_step_begin(self, args, state, control, **kwargs):
        # a resumed run replays the steps after its checkpoint: drop their old records so the curve stays clean
        # (checked at the first step: the Trainer loads the checkpoint's state after on_train_begin)
        if self.started:
            return
        self.started = True
        if state.global_step > 0 and self.path.exists() and rank_world()[0] == 0:
            keep = [x for x in self.path.read_text().splitlines() if _step_of(x) <= state.global_step]
            self.path.write_text("".join(x + "\n" for x in keep))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            append_metrics(self.path, {"stage": self.stage, "step": state.global_step,
                                       "time_s": round(time.time() - self.t0, 2), **logs})


def lora_config(kind: str, r: int, alpha: int, dropout: float = 0.05):
    """LoRA on the LM's attention and MLP projections; the audio projector is trained fully (and, for MusT, whose
    LM is small and learnt from scratch, the token embeddings and output head, where the time tokens live)."""
    from peft import LoraConfig

    keep = (["projector", "time_key", "time_key_change", "time_key_context", "time_query", "source_key", "source_gate",
             "source_query", "source_moment", "moment_embed", "moment_query", "music_moment", "music_embed", "music_word_query",
             "region_query", "time_embed", "embed_tokens", "lm_head"]
            if kind == "must" else ["multi_modal_projector"])
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, task_type="CAUSAL_LM", modules_to_save=keep,
                      target_modules=r"(.*language_model.*)\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)")


def freeze_audio_encoder(kind: str, model) -> None:
    """Stages 2–4 keep the stage-1 encoder as it is."""
    enc = model.model.encoder if kind == "must" else model.model.audio_tower
    for p in enc.parameters():
        p.requires_grad_(False)


def resume_point(sdir: Path) -> str | None:
    """The last complete Trainer checkpoint of a stage (to resume after a kill), if any."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    ck = sdir / "checkpoints"
    if not ck.exists():
        return None
    found = sorted((p for p in ck.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if p.is_dir() and p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for path in found:
        # the Trainer writes trainer_state.json last, so a kill while saving leaves a folder without it (or with a
        # truncated one); transformers' get_last_checkpoint would pick that folder and the resume would fail
        try:
            json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            log.warning("removing the incomplete checkpoint %s (killed while saving)", path)
            if rank_world()[0] == 0:  # so the Trainer's rotation of old checkpoints does not count it
                shutil.rmtree(path, ignore_errors=True)
            continue
        return str(path)
    return None


# options that change the projector's input width: fixed by stage 2, which first trains the projector
PROJECTOR_OPTIONS = ("source_context", "tempo_signals", "region_signals")


def features_tag(model) -> str:
    """The ``cache/features`` folder for a model's encoder features: their width depends on ``tempo_signals`` and
    ``pace_head``."""
    # "tempo2": the third tempo signal became the metrical tempo change, so features cached before are not reused
    tag = "stage1-tempo2" if getattr(model.config, "tempo_signals", False) else "stage1"
    return tag + ("-pace" if getattr(model.config, "pace_head", False) else "")


def new_must_model(cfg: TrainConfig, processor: MusTProcessor) -> MusTForCausalLM:
    """A freshly initialised MusT-small with the processor's vocabulary."""
    m = cfg.model
    text = dict(vocab_size=len(processor.tokenizer), hidden_size=m.hidden_size, intermediate_size=m.intermediate_size,
                num_hidden_layers=m.num_layers, num_attention_heads=m.num_heads, num_key_value_heads=m.num_heads,
                max_position_embeddings=1024, pad_token_id=processor.tokenizer.pad_token_id,
                eos_token_id=processor.tokenizer.convert_tokens_to_ids("<|im_end|>"), bos_token_id=processor.tokenizer.bos_token_id)
    config = MusTConfig(encoder_dim=m.encoder_dim, encoder_layers=m.encoder_layers, encoder_heads=m.encoder_heads,
                        encoder_channels=m.encoder_channels, encoder_window=cfg.stage1.crop_seconds,
                        max_seconds=m.max_seconds, sources=SOURCES, text_config=text, source_context=m.source_context,
                        tempo_signals=m.tempo_signals, pace_head=m.pace_head, region_signals=m.region_signals,
                        **processor.config_ids(), **moment_ids(cfg, processor, SOURCES))
    torch.manual_seed(cfg.seed)
    return MusTForCausalLM(config)


def moment_ids(cfg: TrainConfig, processor: MusTProcessor, sources: list[str]) -> dict:
    """The config ids for source moments, music moments, music words and the region pointer, each when
    ``model.source_moments`` / ``model.music_moments`` / ``model.music_words`` / ``model.region_pointer`` asks for
    it, else empty ones (off)."""
    ids: dict = {"source_token_ids": [], "turn_token_ids": [], "music_token_ids": [], "music_word_ids": [],
                 "region_word_ids": []}
    if cfg.model.source_moments:
        ids.update(processor.moment_ids(sources))
    if cfg.model.music_moments:
        ids.update(processor.music_ids())
    if cfg.model.music_words:
        ids.update(processor.music_word_ids())
    if cfg.model.region_pointer:
        ids.update(processor.region_word_ids())
    return ids


def load_must(path: Path, **config) -> tuple[MusTForCausalLM, MusTProcessor]:
    """A MusT checkpoint and its processor (safetensors); ``config`` overrides saved options that change weight
    shapes (the weights they reshape start fresh)."""
    model = MusTForCausalLM.from_pretrained(str(path), **config, ignore_mismatched_sizes=bool(config))
    return model, MusTProcessor.from_pretrained(path, model.config.max_seconds, model.config.audio_first)


def load_stage_model(cfg: TrainConfig, path: Path, first_projector_stage: bool = False):
    """The previous stage's checkpoint: MusT, or the ``hf`` audio-LM with its processor. Stage 2
    (``first_projector_stage``) is where the projector starts training, so it takes the config's
    :data:`PROJECTOR_OPTIONS` even from a stage-1 checkpoint saved without them."""
    if cfg.model.kind == "must":
        saved = MusTConfig.from_pretrained(str(path))
        wanted = {k: getattr(cfg.model, k) for k in PROJECTOR_OPTIONS if getattr(saved, k) != getattr(cfg.model, k)}
        if wanted and not first_projector_stage:
            log.warning("model options %s ignored: %s was trained with %s (stage 2 sets them)", wanted, path,
                        {k: getattr(saved, k) for k in wanted})
            wanted = {}
        if wanted:
            torch.manual_seed(cfg.seed)  # the reshaped projector's fresh weights
        model, processor = load_must(path, **wanted)
        # prompt-format choices of stages 2-4, saved with them
        model.config.heard_events = cfg.model.heard_events
        model.config.audio_first = processor.audio_first = cfg.model.audio_first
        for key, value in moment_ids(cfg, processor, model.config.sources).items():
            setattr(model.config, key, value)
        return model, processor
    from stages.hf_audio import load_hf

    return load_hf(path)


def validate(kind: str, final: Path, cfg: TrainConfig, sdir: Path) -> dict[str, Any]:
    """Evaluate a saved checkpoint on the val split through the real harness (``must:`` / ``hf:``), capped at
    ``val_items`` questions spread over the tasks; the run is kept in ``sdir/val``."""
    from bench.evaluate.runner import EvalConfig, evaluate
    from must.models.base import load_model

    if not cfg.val_items:
        return {}
    spec = f"{'must' if kind == 'must' else 'hf'}:{final}"
    model = load_model(spec)
    try:
        summary = evaluate(EvalConfig(model=spec, bench=cfg.bench, out=str(sdir / "val"), split="val",
                                      limit=max(1, cfg.val_items // 6)), model, progress=False)
    finally:
        model.close()
    return summary


def save_any(kind: str, model, processor, path: Path) -> None:
    """Save a MusT or an ``hf`` model with its processor (rank 0), then sync ranks."""
    if rank_world()[0] == 0:
        if kind == "must":
            path.mkdir(parents=True, exist_ok=True)
            model.save_pretrained(str(path), safe_serialization=True)
            processor.save_pretrained(path)
        else:
            from stages.hf_audio import save_hf

            save_hf(model, processor, path)
    barrier()


def finish_lora_stage(stage: int, out: Path, trainer, processor, cfg: TrainConfig, check: bool = True) -> dict:
    """Save the adapter, merge it into the weights, save ``final/``, validate on val questions (``check``), mark done."""
    sdir = stage_dir(out, stage)
    peft_model = trainer.accelerator.unwrap_model(trainer.model)
    if rank_world()[0] == 0:
        peft_model.save_pretrained(str(sdir / "adapter"))
    merged = peft_model.merge_and_unload()
    save_any(cfg.model.kind, merged, processor, sdir / "final")
    scores: dict = {}
    if rank_world()[0] == 0 and check:
        scores = validate(cfg.model.kind, sdir / "final", cfg, sdir)
        if scores:
            append_metrics(sdir / "metrics.jsonl", {"stage": stage, "val": {k: v for k, v in scores.items() if isinstance(v, float)}})
            log.info("stage %d validation overall %.1f", stage, scores.get("overall", float("nan")))
    mark_done(out, stage, {"val_overall": scores.get("overall")})
    barrier()
    return scores
