"""Training configs (``configs/stages/*.yaml``): one block per stage, one key per field, unknown keys rejected."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

# LoopConfig.autocast's values (null: no autocast; "auto": bfloat16 where the hardware computes it natively)
AUTOCAST_DTYPES = (None, "auto", "bfloat16", "float16")

__all__ = ["AUTOCAST_DTYPES", "ModelConfig", "LoopConfig", "EncoderStage", "LMStage", "SFTStage", "GRPOStage",
           "TrainConfig"]


@dataclass
class ModelConfig:
    """Which model to train: MusT-small built locally, or an existing local audio-LM (``kind: hf``) adapted with LoRA."""

    kind: str = "must"  # must | hf
    path: str | None = None  # kind hf: local Qwen2-Audio-style checkpoint
    encoder_dim: int = 128
    encoder_layers: int = 2
    encoder_heads: int = 4
    encoder_channels: int = 32
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 512
    max_seconds: int = 300
    heard_events: bool = False  # prompts carry what the encoder's heads heard (must.model.heard)
    # prompts open with the audio and ask after it, so stages 2-3 can pack many questions on one audio prefix
    audio_first: bool = False
    # each second's projector input says whether each source played before / plays after it (widens the projector,
    # so stage 2, which first trains it, sets it; later stages keep the checkpoint's)
    source_context: bool = False
    # the features carry measured tempo signals (must.model.tempo): widens features and projector, set by stage 2
    tempo_signals: bool = False
    # the encoder learns a pace head (onsets per second x tempo, must.model.pace) and the intensity signal reads it
    # instead of flux: an encoder head, so stage 1, which builds the model, sets it
    pace_head: bool = False
    # each second's track signals say how much of it lies in the highest / lowest intensity region its heads give
    # (must.model.heard.region_seconds): widens the projector, set by stage 2
    region_signals: bool = False
    # source moments (MusTConfig.source_token_ids): in a turn that names a time, a source's name carries what that
    # source does then, and its logit points at it; a prompt-side choice with zero-initialised weights, so any stage
    # may switch it on
    source_moments: bool = False
    # music moments (MusTConfig.music_token_ids): the same for the words naming the music as a whole ("the music gets
    # louder", "the tempo slows down"), carrying its loudness, intensity and tempo change then
    music_moments: bool = False
    # music words (MusTConfig.music_word_ids): in such a turn, the logits of "music", "tempo" and the words saying how
    # it changes ("louder", "softer", "speeds", "slows", …) read the music's moment (zero-initialised, as above)
    music_words: bool = False
    # the region pointer (MusTConfig.region_word_ids): in a turn that names intensity ("intense", "intensity",
    # "calmest"), the time logits also read the intensity regions the heads give (zero-initialised, as above; unlike
    # region_signals, the other tasks' inputs are unchanged)
    region_pointer: bool = False


@dataclass
class LoopConfig:
    """What every stage's optimisation loop needs."""

    max_steps: int = 100
    learning_rate: float = 1e-3
    batch_size: int = 8
    grad_accum: int = 1
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    save_steps: int = 50
    logging_steps: int = 5
    # "bfloat16" / "float16": forward passes and losses under torch.autocast in that dtype (weights, gradients and the
    # optimizer stay float32); "auto": bfloat16 where the device computes it natively (stages.common.autocast_dtype),
    # else float32; null: float32 throughout
    autocast: str | None = None


@dataclass
class EncoderStage(LoopConfig):
    """Stage 1: frame-level transition / activity / Amuse targets on random crops."""

    crop_seconds: float = 60.0
    transition_sigma: float = 0.3  # seconds; width of the soft transition target
    aux_weight: float = 0.5  # weight of the Amuse rhythm and source targets
    # sources are absent most of the time; "auto": per source sqrt(absent / present time) over the train tracks,
    # so that rare instruments are not learned as "never playing"
    activity_pos_weight: float | str = 4.0
    transition_pos_weight: float = 10.0  # transition frames are rare

    def __post_init__(self) -> None:
        if isinstance(self.activity_pos_weight, str) and self.activity_pos_weight != "auto":
            raise ValueError(f"stage1.activity_pos_weight: a number or 'auto', got {self.activity_pos_weight!r}")


@dataclass
class LMStage(LoopConfig):
    """Stage 2: projector and LM on timestamped captions (encoder frozen)."""

    train_lm: bool = True
    # a second caption per track with each change before its time (stages.data.event_caption): source-conditioned
    # pointing, the skill TSG and MTR need, practised on every change of every track
    event_captions: bool = True
    pack_turns: int = 1  # captions of one track per sequence, sharing its audio (needs model.audio_first)


@dataclass
class SFTStage(LoopConfig):
    """Stage 3: LoRA on the five tasks + AVQA of the train split, answer-only loss, task-balanced."""

    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    tasks: list[str] = field(default_factory=lambda: ["TSG", "LTR", "TAD", "GTO", "MTR", "AVQA"])
    task_weights: dict[str, float] = field(default_factory=dict)  # relative share of a task's examples (default 1)
    generated_copies: int = 0  # extra question draws per train track from its annotations (0: the benchmark's only)
    reasoning: bool = True  # LTR/GTO targets name the change or write the three times before the letter (reasoned_answer)
    # TAD's target: "full", the fullest description of the moment (every entry's role, the sources that keep playing;
    # the references say each of these at random), or "reference", the benchmark's first reference
    tad_target: str = "full"
    # MusT: the source pointer's gate also learns which source each written time is about (the one the question names;
    # in GTO's reasoned answers, each listed change's: stages.sequences.answer_source_labels)
    source_labels: bool = True
    group_by_length: bool = True  # MusT: batches of similar length (tracks are 45-150 s), so less compute goes to padding
    # questions of one track per sequence, sharing its audio (needs model.audio_first): each answer costs its own
    # tokens, not another copy of the ~100-token audio span
    pack_turns: int = 1


@dataclass
class ModulePass:
    """A GRPO pass at the start of stage 4 that trains only ``modules`` (no LoRA adapters), on ``tasks``' prompts, for
    ``max_steps`` at ``learning_rate`` (everything else as stage 4); merged, then the adapters' pass follows."""

    max_steps: int = 0  # 0: no module pass
    learning_rate: float = 1e-3
    tasks: list[str] = field(default_factory=lambda: ["MTR"])
    modules: list[str] = field(default_factory=lambda: ["region_query"])


@dataclass
class GRPOStage(LoopConfig):
    """Stage 4: TRL GRPO with rewards from ``rewards/``."""

    rewards: str = "rewards/default.yaml"
    num_generations: int = 4
    beta: float = 0.0
    temperature: float = 1.0
    max_completion_length: int = 24
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    tasks: list[str] = field(default_factory=lambda: ["TSG", "MTR", "LTR", "GTO"])
    # the benchmark split its prompts come from
    split: str = "train"  # "train" or "val"
    # MusT: sample under the constraints answers are written under (an interval's end after its start)
    sample_in_answer_form: bool = True
    # how relative rewards' baseline answer is decoded: "greedy" (evaluate's default) or "constrained" (TSG and MTR
    # times as ``choices=constrained`` writes them; MusT)
    baseline: str = "greedy"
    # modules trained fully beside the LoRA adapters (MusT: e.g. ``time_query``, the pointer's query, which decides
    # every written time; empty: the LM's LoRA adapters only)
    modules_to_save: list[str] = field(default_factory=list)
    # false: GRPO trains ``modules_to_save`` alone and leaves the LM's LoRA adapters at zero
    train_adapters: bool = True
    # MusT only: a pass training only the region query on MTR's prompts before the adapters' pass. A few thousand weights
    # every MTR question shares learn how far to trust the heads' intensity regions, where the adapters learn per
    # question (docs/training-log.md, session 51)
    module_pass: ModulePass = field(default_factory=ModulePass)
    # TRL turns it on by default to save memory on large policies; MusT-small needs none and would recompute every
    # layer's forward in the backward pass
    gradient_checkpointing: bool = False


@dataclass
class TrainConfig:
    """A whole training run: data, model, launcher and the four stages."""

    bench: str = "runs/standard/bench"
    build_config: str | None = None  # build the benchmark into `bench` first when it is missing
    model: ModelConfig = field(default_factory=ModelConfig)
    deepspeed: str | None = "deepspeed/zero2.json"  # null: plain PyTorch (no DeepSpeed)
    nproc: int = 1
    seed: int = 0
    max_train_tracks: int | None = None
    val_items: int = 60  # generation-based validation after stages 3 and 4
    stage1: EncoderStage = field(default_factory=EncoderStage)
    stage2: LMStage = field(default_factory=LMStage)
    stage3: SFTStage = field(default_factory=SFTStage)
    stage4: GRPOStage = field(default_factory=GRPOStage)

    def __post_init__(self) -> None:
        for name, stage in (("stage2", self.stage2), ("stage3", self.stage3)):
            if stage.pack_turns < 1:
                raise ValueError(f"{name}.pack_turns: at least 1, got {stage.pack_turns}")
            if stage.pack_turns > 1 and self.model.kind == "must" and not self.model.audio_first:
                raise ValueError(f"{name}.pack_turns > 1 packs questions after one audio prefix: it needs "
                                 "model.audio_first true")
        for name in ("stage1", "stage2", "stage3", "stage4"):
            if getattr(self, name).autocast not in AUTOCAST_DTYPES:
                raise ValueError(f"{name}.autocast: null, 'auto', 'bfloat16' or 'float16', got "
                                 f"{getattr(self, name).autocast!r}")
        if self.stage3.tad_target not in ("full", "reference"):
            raise ValueError(f"stage3.tad_target: 'full' or 'reference', got {self.stage3.tad_target!r}")
        if self.stage4.split not in ("train", "val"):
            raise ValueError(f"stage4.split: 'train' or 'val', got {self.stage4.split!r}")
        if not self.stage4.train_adapters and not self.stage4.modules_to_save:
            raise ValueError("stage4.train_adapters false trains stage4.modules_to_save alone: name at least one module")
        if self.stage4.module_pass.max_steps > 0 and not self.stage4.module_pass.modules:
            raise ValueError("stage4.module_pass trains stage4.module_pass.modules alone: name at least one module")
        if self.stage4.baseline not in ("greedy", "constrained"):
            raise ValueError(f"stage4.baseline: 'greedy' or 'constrained', got {self.stage4.baseline!r}")
        if self.model.kind != "must":
            # the same config serves both kinds: what shapes MusT's prompts or trains MusT's own modules is left out
            warn = logging.getLogger(__name__).warning
            if self.model.audio_first or self.stage2.pack_turns > 1 or self.stage3.pack_turns > 1:
                # an hf audio-LM keeps its own chat template, one question per sequence
                warn("model.audio_first and stage2/3.pack_turns shape MusT's prompts; model.kind %s trains one question "
                     "per sequence", self.model.kind)
            if self.stage4.module_pass.max_steps > 0:
                warn("stage4.module_pass trains MusT's own modules (%s); model.kind %s runs stage 4 without it",
                     ", ".join(self.stage4.module_pass.modules), self.model.kind)
