"""End-to-end training (slow): the smoke config runs all four stages under DeepSpeed, writes safetensors
checkpoints and metrics, resumes after a SIGKILL, and the result evaluates through ``must:``."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def train(out, *extra, stage="all", wait=True):
    env = {**os.environ, "DS_ACCELERATOR": "cpu"}
    cmd = [sys.executable, "-m", "must.cli", "train", "--stage", stage, "--config", "configs/stages/smoke.yaml",
           "--out", str(out), f"bench={out.parent / 'bench'}", *extra]
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "run"
    res = train(out)
    (out.parent / "train.log").write_text(res.stdout + res.stderr)
    return out


def test_all_stages_write_safetensors_and_metrics(smoke_run):
    for name in ("stage1_encoder", "stage2_lm", "stage3_sft", "stage4_grpo"):
        final = smoke_run / name / "final"
        assert (final / "model.safetensors").exists() and (final / "DONE").exists(), name
        assert not list(final.glob("*.bin"))
        lines = [json.loads(x) for x in (smoke_run / name / "metrics.jsonl").read_text().splitlines()]
        assert any("loss" in x or "train_loss" in x for x in lines), name
        assert list((smoke_run / name / "tensorboard").glob("events.out.tfevents.*")), name
    grpo = [json.loads(x) for x in (smoke_run / "stage4_grpo" / "metrics.jsonl").read_text().splitlines()]
    assert any("rewards/timestamp_exp/mean" in x for x in grpo)  # TRL logs our rewards by name
    # the module pass samples MTR alone: TRL logs the TSG reward as None there, which is dropped, not warned about
    module = [json.loads(x) for x in (smoke_run / "stage4_grpo" / "module_pass" / "metrics.jsonl").read_text().splitlines()]
    assert any("rewards/interval_iou/mean" in x for x in module)
    assert not any("rewards/timestamp_exp/mean" in x for x in module)
    assert 'log a value of "None"' not in (smoke_run.parent / "train.log").read_text()
    assert (smoke_run / "stage3_sft" / "adapter" / "adapter_config.json").exists()  # LoRA (peft)
    val = json.loads((smoke_run / "stage3_sft" / "val" / "scores.json").read_text())  # the real evaluate harness on val
    assert "overall" in val
    logged = [json.loads(x) for x in (smoke_run / "stage3_sft" / "metrics.jsonl").read_text().splitlines()]
    assert [x["val"]["overall"] for x in logged if "val" in x] == [val["overall"]]


def test_music_words_are_switched_on_and_learned(smoke_run):
    """The smoke config turns music words on: stage 2's and stage 3's configs hold one id slot per music word, and
    the zero-initialised read is learned in stage 2 and again, as a module LoRA keeps whole, in stage 3."""
    from safetensors.torch import load_file

    from must.model.processing import MUSIC_READ_WORDS

    norms = {}
    for name in ("stage2_lm", "stage3_sft"):
        final = smoke_run / name / "final"
        assert len(json.loads((final / "config.json").read_text())["music_word_ids"]) == len(MUSIC_READ_WORDS)
        norms[name] = float(load_file(final / "model.safetensors")["music_word_query.weight"].norm())
    assert norms["stage2_lm"] > 0 and norms["stage3_sft"] != norms["stage2_lm"]


def test_region_pointer_is_switched_on_and_learned(smoke_run):
    """The smoke config turns the region pointer on: stage 3's config holds the ids of the intensity words its
    tokenizer has, and the zero-initialised region query, which LoRA keeps whole, is learned on MTR's questions."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from must.model.processing import REGION_WORDS

    final = smoke_run / "stage3_sft" / "final"
    tok = AutoTokenizer.from_pretrained(str(final))
    ids = json.loads((final / "config.json").read_text())["region_word_ids"]
    assert ids and ids == [i for i in map(tok.convert_tokens_to_ids, REGION_WORDS) if i != tok.unk_token_id]
    norms = {n: float(load_file(smoke_run / n / "final" / "model.safetensors")["region_query.weight"].norm())
             for n in ("stage2_lm", "stage3_sft")}
    assert norms["stage3_sft"] > 0 and norms["stage3_sft"] != norms["stage2_lm"]


def test_rerun_skips_finished_stages(smoke_run):
    res = train(smoke_run)
    assert res.stdout.count("already done; skipping") + res.stderr.count("already done; skipping") == 4


def test_checkpoint_evaluates_through_the_must_adapter(smoke_run, tmp_path):
    from must.cli import main

    assert main(["evaluate", "--model", f"must:{smoke_run / 'stage4_grpo' / 'final'}", "--bench", str(smoke_run.parent / "bench"),
                 "--out", str(tmp_path / "ev"), "--no-progress", "--limit", "2"]) == 0
    assert json.loads((tmp_path / "ev" / "scores.json").read_text())["n"]["total"] >= 6
    assert main(["evaluate", "--model", f"must:{smoke_run / 'stage4_grpo' / 'final'}", "--model-args", "choices=scored",
                 "--bench", str(smoke_run.parent / "bench"), "--out", str(tmp_path / "scored"), "--no-progress", "--tasks",
                 "LTR,GTO", "--limit", "2"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "scored" / "predictions.jsonl").read_text().splitlines()]
    assert {r["task"] for r in rows} == {"LTR", "GTO"}
    assert all("Answer: " in r["prediction"] for r in rows if r["task"] == "LTR")  # the chosen option, then its letter


STAGE_DIRS = {1: "stage1_encoder", 2: "stage2_lm", 3: "stage3_sft", 4: "stage4_grpo"}
# longer than the smoke config, with a checkpoint early on, so the kill lands mid-stage; "4m" kills stage 4 inside its
# module pass (which checkpoints under stage4_grpo/module_pass/ with stage 4's save_steps)
KILL_RUNS = {1: ("stage1.max_steps=24", "stage1.save_steps=6"), 2: ("stage2.max_steps=24", "stage2.save_steps=6"),
             3: ("stage3.max_steps=40", "stage3.save_steps=8"), 4: ("stage4.max_steps=8", "stage4.save_steps=2"),
             "4m": ("stage4.module_pass.max_steps=8", "stage4.save_steps=2")}


def _copy_earlier_stages(src, dst, stage):
    dst.mkdir()
    shutil.copytree(src / "cache", dst / "cache")
    for n in range(1, stage):
        shutil.copytree(src / STAGE_DIRS[n], dst / STAGE_DIRS[n])


def _leave_a_checkpoint_half_saved(ckdir, save_steps):
    """Make the newest checkpoint look killed while saving (weights written, no trainer_state.json), so every run of
    the test resumes past one, whenever the kill landed."""
    def step(p):
        return int(p.name.split("-")[-1])

    newest = max(ckdir.glob("checkpoint-*"), key=step)
    if step(newest) > save_steps:
        (newest / "trainer_state.json").unlink(missing_ok=True)
    else:
        half = ckdir / f"checkpoint-{2 * save_steps}"
        half.mkdir()
        for weights in newest.glob("*.safetensors"):  # model.safetensors, or adapter_model.safetensors under LoRA
            shutil.copy(weights, half / weights.name)


@pytest.mark.parametrize("case", [1, 2, 3, 4, "4m"])
def test_sigkill_during_a_stage_then_resume_matches_an_uninterrupted_run(smoke_run, tmp_path, case):
    from safetensors.torch import load_file

    stage = int(str(case)[0])
    extra = (*KILL_RUNS[case], "val_items=0")
    name, save_steps = STAGE_DIRS[stage], int(KILL_RUNS[case][1].split("=")[1])
    watched = Path(name, "module_pass") if case == "4m" else Path(name)  # where the kill lands and the resume starts
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    _copy_earlier_stages(smoke_run, clean, stage)
    _copy_earlier_stages(smoke_run, killed, stage)
    train(clean, *extra, stage=str(stage))
    proc = train(killed, *extra, stage=str(stage), wait=False)
    first = killed / watched / "checkpoints" / f"checkpoint-{save_steps}" / "trainer_state.json"
    deadline = time.time() + 600
    while not first.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert first.exists(), "no checkpoint appeared"
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher's group; the torchrun worker follows via PR_SET_PDEATHSIG
    proc.wait()
    assert not (killed / name / "final" / "DONE").exists(), "the stage finished before the kill"
    if case == "4m":
        assert not (killed / watched / "adapter").exists(), "the module pass finished before the kill"
    _leave_a_checkpoint_half_saved(killed / watched / "checkpoints", save_steps)
    train(killed, *extra, stage=str(stage))
    assert (killed / name / "final" / "DONE").exists()
    for logged in {watched, Path(name)}:
        steps = [json.loads(x)["step"] for x in (killed / logged / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
        clean_steps = [json.loads(x)["step"] for x in (clean / logged / "metrics.jsonl").read_text().splitlines()
                       if '"loss"' in x]
        assert steps == clean_steps, f"resumed log {steps} differs from the uninterrupted one {clean_steps} ({logged})"
    a = load_file(str(clean / name / "final" / "model.safetensors"))
    b = load_file(str(killed / name / "final" / "model.safetensors"))
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst < 1e-4, f"resumed weights differ from the uninterrupted run by {worst}"


@pytest.fixture(scope="module")
def tiny_qwen2_audio(smoke_run, tmp_path_factory):
    """A tiny random Qwen2-Audio-style checkpoint with a tokenizer trained on the smoke bench's text."""
    import pandas as pd

    from must.tiny_models import build_tiny_qwen2_audio

    train_df = pd.read_parquet(smoke_run.parent / "bench" / "parquet" / "train.parquet")
    return build_tiny_qwen2_audio(tmp_path_factory.mktemp("hf") / "tiny-qwen2-audio",
                                  list(train_df.question) + list(train_df.answer))


def test_qwen2_audio_style_model_through_the_same_recipes(tiny_qwen2_audio, tmp_path):
    out = tmp_path / "hf-run"
    train(out, "model.kind=hf", f"model.path={tiny_qwen2_audio}", "val_items=6")
    for name in ("stage1_encoder", "stage2_lm", "stage3_sft", "stage4_grpo"):
        assert (out / name / "final" / "model.safetensors").exists(), name
    assert (out / "stage1_encoder" / "final" / "frame_heads.safetensors").exists()
    assert (out / "stage3_sft" / "adapter" / "adapter_config.json").exists()
    grpo = (out / "stage4_grpo" / "metrics.jsonl").read_text()
    assert "rewards/timestamp_exp/mean" in grpo


@pytest.mark.parametrize("kind", ["must", "hf"])
def test_two_processes_train_all_four_stages(smoke_run, tiny_qwen2_audio, kind):
    """Both model kinds through all four stages with two processes under ZeRO-2: every stage's checkpoint holds one
    optimizer shard and one RNG state per rank. (Two processes once failed for each kind: a module skipped on one
    rank put MusT's stage-3 gradient buckets out of step; an hf GRPO completion that sampled ``<|AUDIO|>`` broke
    its forward.)"""
    extra = ["nproc=2", "val_items=6"]
    if kind == "hf":
        extra += ["model.kind=hf", f"model.path={tiny_qwen2_audio}"]
    out = smoke_run.parent / f"two-processes-{kind}"  # beside smoke_run: the same built bench
    train(out, *extra)
    for name in STAGE_DIRS.values():
        assert (out / name / "final" / "DONE").exists(), name
        last = sorted((out / name / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
        assert {p.name for p in last.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}, name
        shards = sorted(p.name for p in last.glob("global_step*/*optim_states.pt"))
        assert len(shards) == 2 and "rank_0" in shards[0] and "rank_1" in shards[1], (name, shards)


def test_heard_events_in_the_prompt_through_stages_2_to_4(smoke_run, tmp_path):
    from must.cli import main
    from must.model import MusTConfig

    out = tmp_path / "run"
    _copy_earlier_stages(smoke_run, out, 2)
    bench = str(smoke_run.parent / "bench")
    # also: GRPO training the pointer's query fully beside its LoRA adapters (merged into the saved checkpoint)
    train(out, f"bench={bench}", "model.heard_events=true", "stage2.max_steps=4", "stage3.max_steps=4", "stage4.max_steps=2",
          "val_items=6", "stage4.modules_to_save=[time_query]", stage="2,3,4")
    for name in ("stage2_lm", "stage3_sft", "stage4_grpo"):
        assert MusTConfig.from_pretrained(out / name / "final").heard_events is True, name
    for spec in (f"must:{out / 'stage4_grpo' / 'final'}", f"heard:{out / 'stage1_encoder' / 'final'}"):
        assert main(["evaluate", "--model", spec, "--bench", bench, "--out", str(tmp_path / spec.split(":")[0]),
                     "--no-progress", "--tasks", "TSG,MTR", "--limit", "2"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "heard" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and not any(r["error"] for r in rows)


def test_grpo_group_diagnostic_runs_on_a_trained_checkpoint(smoke_run):
    from benchmarks.grpo_groups import ADVANTAGES, REWARD_SPECS, run

    out = run(str(smoke_run / "stage4_grpo" / "final"), str(smoke_run.parent / "bench"), split="val", limit=2, group=3)
    assert out["questions"] == 2 and 0 <= out["sample IoU"] <= 100 and 0 <= out["greedy IoU"] <= 100
    assert set(out["mean advantage"]) == set(ADVANTAGES) and set(REWARD_SPECS) < set(ADVANTAGES)
    assert all(0 <= v <= 1 for v in out["share starting at 0:00"].values())
    assert 0 <= out["medoid IoU"] <= 100 and len(out["per question"]) == 2


def test_grpo_with_rewards_relative_to_the_greedy_answer(smoke_run, tmp_path):
    """``rewards/over-greedy.yaml``: stage 4 fills the relative rewards' baseline column with the policy's greedy
    answers and TRL logs them under their own names."""
    out = tmp_path / "run"
    _copy_earlier_stages(smoke_run, out, 4)
    train(out, "stage4.rewards=rewards/over-greedy.yaml", "stage4.max_steps=3", "val_items=0", stage="4")
    logged = [json.loads(x) for x in (out / "stage4_grpo" / "metrics.jsonl").read_text().splitlines()]
    names = {k for row in logged for k in row}
    assert {"rewards/interval_iou>baseline/mean", "rewards/format_parsable/mean"} <= names, sorted(names)
    assert (out / "stage4_grpo" / "final" / "model.safetensors").exists()


def test_grpo_can_train_named_modules_alone(smoke_run, tmp_path):
    """``stage4.train_adapters=false``: GRPO trains ``modules_to_save`` alone — the stage-4 checkpoint differs from
    the SFT checkpoint in the region query's weight and in nothing else. (10 steps: the smoke model rarely writes a
    parsable interval, and a step whose samples all score alike changes nothing.)"""
    from safetensors.torch import load_file

    out = tmp_path / "run"
    _copy_earlier_stages(smoke_run, out, 4)
    train(out, "stage4.modules_to_save=[region_query]", "stage4.train_adapters=false", "stage4.tasks=[MTR]",
          "stage4.module_pass.max_steps=0", "stage4.max_steps=10", "stage4.learning_rate=0.01", "val_items=0", stage="4")
    sft = load_file(out / "stage3_sft" / "final" / "model.safetensors")
    grpo = load_file(out / "stage4_grpo" / "final" / "model.safetensors")
    assert sft.keys() == grpo.keys()
    assert [k for k in sft if not sft[k].equal(grpo[k])] == ["region_query.weight"]


def test_lm_stages_and_grpo_train_under_bf16_autocast(smoke_run, tmp_path):
    """``stageN.autocast=bfloat16`` on stages 2-4 (the smoke config sets stage 1's to ``auto``): the Trainer's and
    TRL's GRPOTrainer's loss passes run under autocast, every stage finishes with finite losses, and the checkpoints
    stay float32."""
    import math

    from safetensors.torch import load_file

    out = tmp_path / "run"
    _copy_earlier_stages(smoke_run, out, 2)
    res = train(out, *(f"stage{n}.autocast=bfloat16" for n in (2, 3, 4)), "stage4.module_pass.max_steps=2",
                "stage4.max_steps=2", "val_items=0", stage="2,3,4")
    said = re.findall(r"autocast bfloat16 on cpu\S*: torch.bfloat16", res.stdout + res.stderr)
    assert len(said) == 4, said  # stages 2 and 3, and stage 4's two passes
    for name in ("stage2_lm", "stage3_sft", "stage4_grpo"):
        losses = [json.loads(x)["loss"] for x in (out / name / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
        assert losses and all(math.isfinite(v) for v in losses), name
        weights = load_file(out / name / "final" / "model.safetensors")
        assert {str(v.dtype) for v in weights.values()} == {"torch.float32"}, name


def test_module_pass_trains_the_region_query_before_the_adapters(smoke_run, tmp_path):
    """``stage4.module_pass``: a first GRPO pass trains the region query alone on MTR's prompts, merged, then the
    adapters' pass; each pass keeps its own checkpoints, metrics and adapter, and the final weights hold both."""
    from safetensors.torch import load_file

    out = tmp_path / "run"
    _copy_earlier_stages(smoke_run, out, 4)
    train(out, "stage4.module_pass.max_steps=10", "stage4.module_pass.learning_rate=0.01", "stage4.lora_dropout=0.05",
          "val_items=0", stage="4")
    sdir = out / "stage4_grpo"
    assert (sdir / "adapter" / "adapter_config.json").exists()
    assert (sdir / "module_pass" / "adapter" / "adapter_config.json").exists()
    logged = [json.loads(x) for x in (sdir / "module_pass" / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in logged) == 10 and any(k.startswith("rewards/interval_iou") for r in logged for k in r)
    sft = load_file(out / "stage3_sft" / "final" / "model.safetensors")
    final = load_file(sdir / "final" / "model.safetensors")
    first = load_file(sdir / "module_pass" / "adapter" / "adapter_model.safetensors")
    region = [v for k, v in first.items() if "lora_" not in k]  # peft saves a fully trained module under its own name
    assert len(region) == 1 and final["region_query.weight"].equal(region[0])
    # the module pass's adapters stay inert (B at zero), so they run without dropout; the adapters' pass keeps the stage's
    assert all(not v.any() for k, v in first.items() if "lora_B" in k)
    passes = ("module_pass/adapter", "adapter")
    dropout = {p: json.loads((sdir / p / "adapter_config.json").read_text())["lora_dropout"] for p in passes}
    assert dropout == {"module_pass/adapter": 0.0, "adapter": 0.05}
    assert not final["region_query.weight"].equal(sft["region_query.weight"])
    changed = {k for k in sft if not sft[k].equal(final[k])}
    assert "region_query.weight" in changed and any(".q_proj." in k for k in changed)  # both passes reached the weights
