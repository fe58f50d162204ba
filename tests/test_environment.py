"""The environment recorded beside builds, evaluations and training stages, and the report's table of it."""

import importlib.metadata
import json
import logging
import subprocess
from types import SimpleNamespace

import torch

from bench.evaluate.report import environment_section
from must.cli import main
from must.environment import environment, environment_changes, package_versions, source_commit
from stages.common import mark_done, stage_dir

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false"]


def _repo(path):
    path.mkdir()
    subprocess.run([*GIT, "init", "-q", str(path)], check=True)
    (path / "a.txt").write_text("one\n")
    subprocess.run([*GIT, "-C", str(path), "add", "a.txt"], check=True)
    subprocess.run([*GIT, "-C", str(path), "commit", "-q", "-m", "first"], check=True)
    return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_package_versions_are_the_installed_ones():
    v = package_versions(("torch", "numpy", "no-such-distribution-here"))
    assert v["torch"] == importlib.metadata.version("torch") == torch.__version__
    assert v["numpy"] == importlib.metadata.version("numpy")
    assert v["no-such-distribution-here"] is None


def test_source_commit_clean_dirty_and_outside(tmp_path):
    head = _repo(tmp_path / "repo")
    assert len(head) == 40
    assert source_commit(tmp_path / "repo") == head
    (tmp_path / "repo" / "new.txt").write_text("untracked files do not make a checkout dirty\n")
    assert source_commit(tmp_path / "repo") == head
    (tmp_path / "repo" / "a.txt").write_text("two\n")
    assert source_commit(tmp_path / "repo") == head + "+dirty"
    (tmp_path / "repo" / "sub").mkdir()
    assert source_commit(tmp_path / "repo" / "sub") is None  # inside a checkout, not its top: not ours
    (tmp_path / "plain").mkdir()
    assert source_commit(tmp_path / "plain") is None


def test_evaluate_and_build_record_the_environment(tiny_bench, tmp_path):
    assert main(["evaluate", "--model", "random", "--bench", str(tiny_bench), "--out", str(tmp_path / "r"),
                 "--no-progress"]) == 0
    env = json.loads((tmp_path / "r" / "run.json").read_text())["environment"]
    assert env["packages"]["torch"] == importlib.metadata.version("torch")
    assert env["packages"]["must-bench"] == importlib.metadata.version("must-bench")
    assert env["must_bench_commit"] == source_commit() and env["cpu_count"] >= 1 and env["cpu"]
    built = json.loads((tiny_bench / "summary.json").read_text())["environment"]
    assert built["packages"] == env["packages"] and built["python"] == env["python"]


def test_a_finished_stage_records_its_environment(tmp_path):
    (stage_dir(tmp_path, 2) / "final").mkdir(parents=True)
    mark_done(tmp_path, 2, {"train_loss": 1.5})
    done = json.loads((stage_dir(tmp_path, 2) / "final" / "DONE").read_text())
    assert done["train_loss"] == 1.5
    assert done["environment"]["packages"]["transformers"] == importlib.metadata.version("transformers")


def test_report_tabulates_only_what_differs():
    def run(name, transformers, commit):
        return {"name": name, "meta": {"environment": {
            "must_bench_commit": commit, "cpu": "CPU X",
            "packages": {"torch": "2.13.0+cpu", "transformers": transformers, "tinysoundfont": None}}}}

    runs = [run("a", "5.23.0", "0123456789abcdef"), run("b", "5.25.0", "fedcba9876543210+dirty"),
            {"name": "old", "meta": {}}]
    md = "\n".join(environment_section(runs))
    assert "| model | commit | transformers |" in md
    assert "| a | 0123456789 | 5.23.0 |" in md
    assert "| b | fedcba9876+dirty | 5.25.0 |" in md
    assert "Every run: cpu CPU X, torch 2.13.0+cpu." in md  # a package no run has is not named
    assert "Not recorded (run.json written before it held the environment): old." in md
    assert environment_section([{"name": "old", "meta": {}}]) == []
    same = "\n".join(environment_section(runs[:1] * 2))
    assert "| model |" not in same and "Every run: commit 0123456789, cpu CPU X, torch 2.13.0+cpu, transformers 5.23.0.\n" in same


def test_environment_is_json():
    env = environment()
    assert json.loads(json.dumps(env)) == env
    assert env["torch_threads"] == torch.get_num_threads()


def test_environment_changes_by_hand():
    before = {"must_bench_commit": "aaa", "cpu": "X", "packages": {"torch": "2.13.0", "peft": "0.21.2"}}
    now = {"must_bench_commit": "aaa", "cpu": "Y", "packages": {"torch": "2.13.0", "peft": "0.22.0", "trl": "1.16.0"}}
    assert environment_changes(before, now) == ["cpu X -> Y", "peft 0.21.2 -> 0.22.0", "trl None -> 1.16.0"]
    assert environment_changes(now, now) == [] and environment_changes({}, now) == []


def test_a_stage_started_from_another_environments_checkpoint_says_so(tmp_path, monkeypatch, caplog):
    from stages import run as stages_run

    class Recipe:  # stands in for stage 2's recipe: the warning comes before any work
        def __init__(self, cfg, out):
            pass

        setup = save_checkpoint = cleanup = lambda self: None

    monkeypatch.setitem(stages_run.RECIPES, 1, Recipe)
    monkeypatch.setitem(stages_run.RECIPES, 2, Recipe)
    cfg = SimpleNamespace(seed=0, stage1=SimpleNamespace(max_steps=0), stage2=SimpleNamespace(max_steps=0))
    stages_run.run_stages(cfg, tmp_path, [1])  # the first stage has no checkpoint before it to compare with
    (stage_dir(tmp_path, 1) / "final").mkdir(parents=True)
    mark_done(tmp_path, 1, {})
    done = stage_dir(tmp_path, 1) / "final" / "DONE"
    info = json.loads(done.read_text())
    with caplog.at_level(logging.WARNING, logger="stages"):
        stages_run.run_stages(cfg, tmp_path, [2])
    assert "another environment" not in caplog.text  # the same environment: nothing to say
    info["environment"]["packages"]["transformers"] = "5.23.0"
    done.write_text(json.dumps(info))
    with caplog.at_level(logging.WARNING, logger="stages"):
        stages_run.run_stages(cfg, tmp_path, [2])
    now = importlib.metadata.version("transformers")
    assert f"stage 2 starts from stage 1's checkpoint, trained in another environment: transformers 5.23.0 -> {now}" \
        in caplog.text
