"""Stage 1 — music-encoder adaptation: frame-level transition probability (BCE + Dice), source activity
(multi-label) and the Amuse rhythm-change and per-segment source labels as auxiliary targets."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import mir_eval
import numpy as np
import torch
from torch import nn
from transformers import TrainingArguments

from must.model import MusTProcessor
from must.model.modeling import LOG_MEL_FLOOR
from stages.common import (JsonlLogger, StageTrainer, append_metrics, barrier, mark_done, new_must_model, rank_world,
                           resume_point, save_any, stage_dir, trainer_kwargs)
from stages.config import TrainConfig
from stages.data import (CAPTION_QUESTION, EVENT_QUESTION, SOURCES, RepeatedTracks, TrainData, caption, frame_targets,
                         source_prevalence)

__all__ = ["EncoderObjective", "EncoderCrops", "EncoderStageRecipe"]

log = logging.getLogger(__name__)


def dice_loss(prob: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 − Dice over valid frames (robust to the rarity of transition frames)."""
    inter = (prob * target * mask).sum()
    return 1 - (2 * inter + 1) / ((prob * mask).sum() + (target * mask).sum() + 1)


class EncoderObjective(nn.Module):
    """The encoder with its stage-1 loss; ``forward`` returns ``{"loss", …}`` as the Trainer expects."""

    def __init__(self, encoder: nn.Module, n_sources: int, aux_weight: float,
                 activity_pos_weight: float | Sequence[float] = 1.0, transition_pos_weight: float = 1.0):
        super().__init__()
        self.encoder, self.n, self.aux = encoder, n_sources, aux_weight
        self.register_buffer("pw_act", torch.as_tensor(activity_pos_weight, dtype=torch.float32), persistent=False)
        self.register_buffer("pw_tr", torch.tensor(transition_pos_weight), persistent=False)

    def forward(self, mel, offset, transition, activity, rhythm, amuse, tempo, mask, pace=None):
        _, logits = self.encoder(mel, offset)
        logits = logits.float()  # the losses in float32 under autocast too
        t = min(logits.shape[1], transition.shape[1])
        logits, m = logits[:, :t], mask[:, :t]
        bce = nn.functional.binary_cross_entropy_with_logits

        def masked(x, y, pos_weight=None, where=m):
            per = bce(x, y.clamp(min=0), reduction="none", pos_weight=pos_weight)
            per = per.mean(-1) if per.dim() == 3 else per
            return (per * where).sum() / where.sum().clamp(min=1)

        n = self.n
        l_tr = masked(logits[..., 0], transition[:, :t], self.pw_tr) + dice_loss(torch.sigmoid(logits[..., 0]), transition[:, :t], m)
        l_act = masked(logits[..., 2 : 2 + n], activity[:, :t], self.pw_act)
        tempo = tempo[:, :t]
        l_aux = (masked(logits[..., 1], rhythm[:, :t]) + masked(logits[..., 2 + n : 2 + 2 * n], amuse[:, :t])
                 + masked(logits[..., 2 + 2 * n], tempo, where=m * (tempo >= 0)))
        loss = l_tr + l_act + self.aux * l_aux
        if pace is not None:  # the pace head (MusTConfig.pace_head), last; a main target: MTR's intensity reads it
            pace = pace[:, :t]
            loss = loss + masked(logits[..., 3 + 2 * n], pace, where=m * (pace >= 0))
        return {"loss": loss}


def activity_pos_weights(setting: float | str, prevalence: np.ndarray, max_weight: float = 10.0) -> float | list[float]:
    """The activity BCE's ``pos_weight``: a number as given, or for ``"auto"`` per source sqrt(absent / present)
    from the fraction of train time it plays (:func:`~stages.data.source_prevalence`), clipped to
    [1, ``max_weight``]; sources never heard get 1."""
    if not isinstance(setting, str):
        return float(setting)
    p = np.asarray(prevalence, float)
    w = np.where(p > 0, np.sqrt((1 - p) / np.maximum(p, 1e-9)), 1.0)
    return np.clip(w, 1.0, max_weight).round(3).tolist()


class EncoderCrops(RepeatedTracks):
    """Random log-mel crops of the train tracks (seeded per index, so a resumed run sees the same data) with their
    frame targets. Each track's log-mel is computed once by the encoder's front end and cached."""

    def __init__(self, data: TrainData, encoder: nn.Module, crop_seconds: float, sigma: float, repeats: int, seed: int):
        super().__init__(data, repeats, seed)
        self.crop, self.sigma = crop_seconds, sigma
        cfg = encoder.config
        self.log_mel, self.fr, self.with_pace = encoder.log_mel, cfg.frame_rate, cfg.pace_head
        self.mel_rate = cfg.sample_rate / cfg.mel_hop
        self.mel_frames = int(crop_seconds * self.mel_rate) + 1  # what log_mel gives for a crop_seconds wave
        self.tag = f"{cfg.n_mels}x{cfg.mel_hop}at{cfg.sample_rate}"
        # per track, its log-mel's memory map and its whole frame targets, opened and computed at its first crop: a
        # crop took 2.0 ms when they were at every one, 0.38 ms now (docs/training-log.md, session 60)
        self._mels: dict[str, np.ndarray] = {}
        self._targets: dict[str, dict[str, np.ndarray]] = {}

    def _mel(self, r: dict) -> np.ndarray:
        """The track's cached log-mel; its memory map is kept (the first call, which computes it, returns an array)."""
        if r["track_id"] in self._mels:
            return self._mels[r["track_id"]]
        mel = self.data.log_mel(r["track_id"], r["audio"], self.log_mel, self.tag)
        if isinstance(mel, np.memmap):
            self._mels[r["track_id"]] = mel
        return mel

    def _track_targets(self, track_id: str, total: float) -> dict[str, np.ndarray]:
        """:func:`frame_targets` of the whole track (``total`` seconds) and a crop past its end, computed once."""
        if track_id not in self._targets:
            frames = int(np.ceil(total * self.fr)) + int(self.crop * self.fr)
            ann = self.data.annotation(track_id)
            self._targets[track_id] = frame_targets(ann, frames, self.fr, SOURCES, self.sigma, self.with_pace)
        return self._targets[track_id]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        r = self.track(i)
        mel = self._mel(r)
        total = (len(mel) - 1) / self.mel_rate
        rng = np.random.default_rng([self.seed, i])
        start = float(rng.uniform(0, max(0.0, total - self.crop)))
        start = round(start * self.fr) / self.fr
        a = int(round(start * self.mel_rate))
        seg = np.asarray(mel[a : a + self.mel_frames], dtype=np.float32)
        seg = np.pad(seg, ((0, self.mel_frames - len(seg)), (0, 0)), constant_values=LOG_MEL_FLOOR)
        n = int(self.crop * self.fr)
        full = self._track_targets(r["track_id"], total)
        a = int(start * self.fr)
        out = {k: torch.tensor(v[a : a + n]) for k, v in full.items()}
        valid = np.zeros(n, np.float32)
        valid[: max(0, min(n, int((total - start) * self.fr)))] = 1
        return {"mel": torch.from_numpy(seg.T.copy()), "offset": torch.tensor(start), "mask": torch.tensor(valid), **out}


def frame_f1(model, data: TrainData, n_tracks: int | None = None) -> dict[str, float]:
    """Validation on the val tracks (all by default, else the first ``n_tracks``): source-activity frame F1 (micro
    over all frames and sources, and the macro mean over the sources that play), recall per source, transition F1
    (peaks within ±1 s, mir_eval) and (pace head) the correlation of the pace head with its target over the frames."""
    enc = model.model.encoder
    # all of them: the first 20 of the standard build had one piano track, so piano's recall said nothing
    # (100 tracks take about 16 s on 2 cores)
    tracks = data.tracks("val")
    tracks = (tracks if n_tracks is None else tracks.head(n_tracks)).to_dict("records")
    tp, fp, fn = (np.zeros(len(SOURCES)) for _ in range(3))
    f_tr, pace_pred, pace_true = [], [], []
    with torch.no_grad():
        for r in tracks:
            feats = model.encode_audio(data.wave(r["track_id"], r["audio"]))
            probs = feats[:, enc.config.encoder_dim :].numpy()
            ann = data.annotation(r["track_id"])
            tgt = frame_targets(ann, len(probs), enc.config.frame_rate, SOURCES, 0.3, enc.config.pace_head)
            if enc.config.pace_head:
                known = tgt["pace"] >= 0
                pace_pred.append(probs[known, enc.config.pace_index])
                pace_true.append(tgt["pace"][known])
            act = probs[:, 2 : 2 + len(SOURCES)] > 0.5
            truth = tgt["activity"] > 0.5
            tp += (act & truth).sum(0)
            fp += (act & ~truth).sum(0)
            fn += (~act & truth).sum(0)
            p = probs[:, 0]
            peaks = [i for i in range(1, len(p) - 1) if p[i] > 0.5 and p[i] >= p[i - 1] and p[i] >= p[i + 1]]
            est = np.array(peaks, float) / enc.config.frame_rate
            ref = np.array(sorted({round(e.time, 3) for e in ann.transitions}), float)
            if len(ref):
                f_tr.append(mir_eval.onset.f_measure(ref, est, window=1.0)[0])
    heard = (tp + fn) > 0
    per_f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    recall = {f"val_recall/{s}": round(float(tp[i] / (tp[i] + fn[i])), 3) for i, s in enumerate(SOURCES) if heard[i]}
    return {"val_activity_f1": float(2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1)),
            "val_activity_macro_f1": float(per_f1[heard].mean()) if heard.any() else 0.0,
            "val_transition_f1": float(np.mean(f_tr)) if f_tr else 0.0, **recall,
            **({"val_pace_r": float(np.corrcoef(np.concatenate(pace_pred), np.concatenate(pace_true))[0, 1])}
               if pace_true else {})}


class EncoderStageRecipe:
    """setup → train → save_checkpoint → cleanup."""

    def __init__(self, cfg: TrainConfig, out: Path):
        self.cfg, self.out, self.sdir = cfg, out, stage_dir(out, 1)

    def setup(self) -> None:
        """Data, the model (a fresh MusT-small with a tokenizer trained on the suite's text, or the hf audio-LM),
        the stage-1 objective and the Trainer."""
        self.sdir.mkdir(parents=True, exist_ok=True)
        self.data = TrainData(self.cfg.bench, self.out, self.cfg.max_train_tracks, self.cfg.seed)
        st = self.cfg.stage1
        repeats = max(1, int(np.ceil(st.max_steps * st.batch_size * rank_world()[1] / max(len(self.data.tracks("train")), 1))))
        if self.cfg.model.kind == "must":
            texts = list(self.data.train.question) + list(self.data.train.answer) + [CAPTION_QUESTION, EVENT_QUESTION] + [
                caption(self.data.annotation(t)) for t in self.data.tracks("train").track_id]
            self.processor = MusTProcessor.build(texts, self.cfg.model.max_seconds)
            self.model = new_must_model(self.cfg, self.processor)
            prevalence = source_prevalence([self.data.annotation(t) for t in self.data.tracks("train").track_id], SOURCES)
            pos_weight = activity_pos_weights(st.activity_pos_weight, prevalence)
            log.info("stage 1 activity pos_weight: %s", pos_weight if isinstance(pos_weight, float)
                     else dict(zip(SOURCES, pos_weight)))
            objective = EncoderObjective(self.model.model.encoder, len(SOURCES), st.aux_weight, pos_weight,
                                         st.transition_pos_weight)
            dataset = EncoderCrops(self.data, self.model.model.encoder, st.crop_seconds, st.transition_sigma, repeats, self.cfg.seed)
        else:
            from stages.hf_audio import TowerCrops, TowerObjective, load_hf

            self.model, self.processor = load_hf(self.cfg.model.path)
            tower = self.model.model.audio_tower
            window = float(self.processor.feature_extractor.chunk_length)
            with torch.no_grad():
                probe = self.processor.feature_extractor(np.zeros(int(window * 16000), np.float32), sampling_rate=16000,
                                                         return_tensors="pt")["input_features"]
                frames = tower(probe).last_hidden_state.shape[1]
            objective = TowerObjective(tower, tower.config.d_model, 3 + 2 * len(SOURCES), len(SOURCES), st.aux_weight)
            dataset = TowerCrops(self.data, self.processor, frames, window, SOURCES, st.transition_sigma, repeats, self.cfg.seed)
        self.trainer = StageTrainer(model=objective, args=TrainingArguments(**trainer_kwargs(st, self.sdir, self.cfg)),
                                    train_dataset=dataset, callbacks=[JsonlLogger(self.sdir / "metrics.jsonl", 1)],
                                    autocast=st.autocast)

    def train(self) -> None:
        """Train (resuming from the last checkpoint if one exists)."""
        self.trainer.train(resume_from_checkpoint=resume_point(self.sdir))

    def save_checkpoint(self) -> None:
        """The whole model with the trained encoder as ``final/`` (+ frame-level validation for MusT)."""
        trained = self.trainer.accelerator.unwrap_model(self.trainer.model)
        scores: dict = {}
        if self.cfg.model.kind == "must":
            self.model.model.encoder.load_state_dict(trained.encoder.state_dict())
        else:
            self.model.model.audio_tower.load_state_dict(trained.tower.state_dict())
        save_any(self.cfg.model.kind, self.model, self.processor, self.sdir / "final")
        if rank_world()[0] == 0:
            if self.cfg.model.kind == "must":
                scores = frame_f1(self.model.eval(), self.data)
                log.info("stage 1 validation: %s", scores)
            else:
                from safetensors.torch import save_file

                save_file({k: v.contiguous() for k, v in trained.heads.state_dict().items()}, str(self.sdir / "final" / "frame_heads.safetensors"))
            append_metrics(self.sdir / "metrics.jsonl", {"stage": 1, "step": self.cfg.stage1.max_steps, **scores})
        mark_done(self.out, 1, scores)
        barrier()

    def cleanup(self) -> None:
        """Release the trainer."""
        del self.trainer
