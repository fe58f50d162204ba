"""must-bench evaluate: baselines, resume, shards, bad items, adapters (python, jsonl, openai stub, hf tiny), report."""

import json
import logging
import shutil

import numpy as np
import pandas as pd
import pytest

from bench.evaluate.report import write_report
from bench.evaluate.runner import EvalConfig, evaluate, merge_run, read_run_lines
from bench.io import load_bench
from must.cli import main
from must.models.base import load_model
from must.stub_server import StubServer


def run(bench, out, spec, **kw):
    model = load_model(spec, **kw.pop("model_args", {}))
    if getattr(model, "wants_train", False):
        model.fit(load_bench(bench, "train"))
    try:
        return evaluate(EvalConfig(model=spec, bench=str(bench), out=str(out), **kw), model, progress=False)
    finally:
        model.close()


def test_oracle_scores_100_and_constant_is_a_shortcut(tiny_bench, tmp_path):
    s = run(tiny_bench, tmp_path / "o", "oracle")
    for k in ("TSG", "LTR", "GTO", "MTR_IoU", "MTR_F1"):
        assert s[k] == 100.0
    assert s["TAD_METEOR"] > 99 and s["AVQA"]["overall"] == 100.0 and s["overall"] > 99
    c = run(tiny_bench, tmp_path / "c", "constant")
    lines = read_run_lines(tmp_path / "c" / "predictions.jsonl")
    mtr = [v for v in lines.values() if v["task"] == "MTR"]
    assert all(v["parsed"].startswith("0:00-") for v in mtr)  # the whole track
    assert c["MTR_IoU"] < 30


def test_random_is_deterministic_per_item(tiny_bench, tmp_path):
    run(tiny_bench, tmp_path / "a", "random", batch_size=3)
    run(tiny_bench, tmp_path / "b", "random", batch_size=7)
    a = {k: v["prediction"] for k, v in read_run_lines(tmp_path / "a" / "predictions.jsonl").items()}
    b = {k: v["prediction"] for k, v in read_run_lines(tmp_path / "b" / "predictions.jsonl").items()}
    assert a == b


def test_resume_after_a_torn_write_gives_the_same_run(tiny_bench, tmp_path):
    full = run(tiny_bench, tmp_path / "full", "prior")
    out = tmp_path / "resumed"
    out.mkdir()
    lines = (tmp_path / "full" / "predictions.jsonl").read_text().splitlines(keepends=True)
    # a kill after 10 items, in the middle of writing the 11th line
    (out / "predictions.jsonl").write_text("".join(lines[:10]) + lines[10][: len(lines[10]) // 2])
    resumed = run(tiny_bench, out, "prior")
    got = read_run_lines(out / "predictions.jsonl")
    text = (out / "predictions.jsonl").read_text().splitlines()
    assert len(text) == len(got) == len(lines)  # no duplicate, no torn line left
    want = read_run_lines(tmp_path / "full" / "predictions.jsonl")
    assert {k: v["prediction"] for k, v in got.items()} == {k: v["prediction"] for k, v in want.items()}
    assert {k: v for k, v in resumed.items() if k != "errors"} == {k: v for k, v in full.items() if k != "errors"}


def test_resume_answers_again_what_a_rebuilt_benchmark_asks_differently(tiny_bench, tmp_path, caplog):
    out = tmp_path / "run"
    run(tiny_bench, out, "oracle")
    bench = load_bench(tiny_bench)
    ltr = bench.index[bench.task == "LTR"][0]
    gto = bench.index[bench.task == "GTO"][0]
    # the same ids, rebuilt: one LTR answer moved to another letter, one GTO question lists other changes
    bench.loc[ltr, "answer"] = "D" if bench.loc[ltr, "answer"] != "D" else "A"
    bench.loc[ltr, "answers"] = [bench.loc[ltr, "answer"]]
    bench.loc[gto, "question"] = bench.loc[gto, "question"].replace("(X)", "(X) Then", 1)
    bench.to_parquet(tmp_path / "rebuilt.parquet")
    assert merge_run(out, bench) is None  # the stored lines answer the old questions: not finished
    caplog.set_level(logging.WARNING)
    s = run(tmp_path / "rebuilt.parquet", out, "oracle")
    assert "2 items ask something other than" in caplog.text
    text = (out / "predictions.jsonl").read_text().splitlines()
    assert len(text) == len(bench) + 2  # only the two changed items were answered again
    lines = read_run_lines(out / "predictions.jsonl")
    assert lines[bench.loc[ltr, "id"]]["prediction"] == bench.loc[ltr, "answer"]
    assert lines[bench.loc[gto, "id"]]["question"] == bench.loc[gto, "question"]
    assert s["LTR"] == s["GTO"] == 100.0


def test_shards_merge_into_the_unsharded_scores(tiny_bench, tmp_path):
    whole = run(tiny_bench, tmp_path / "whole", "random")
    partial = run(tiny_bench, tmp_path / "sharded", "random", shard=(0, 2))
    assert partial.get("partial") and not (tmp_path / "sharded" / "scores.json").exists()
    merged = run(tiny_bench, tmp_path / "sharded", "random", shard=(1, 2))
    assert merged == whole


def test_tasks_and_limit(tiny_bench, tmp_path):
    s = run(tiny_bench, tmp_path / "l", "oracle", tasks=["TSG", "MTR"], limit=2)
    assert s["n"] == {"TSG": 2, "MTR": 2, "total": 4}


def test_bad_audio_is_recorded_and_the_run_completes(tiny_bench, tmp_path, caplog):
    bench = load_bench(tiny_bench)
    tracks = sorted(bench.track_id.unique())
    broken = tmp_path / "broken.flac"
    broken.write_bytes(b"fLaC garbage")
    bench.loc[bench.track_id == tracks[0], "audio"] = str(tmp_path / "missing.flac")
    bench.loc[bench.track_id == tracks[1], "audio"] = str(broken)
    bench.to_parquet(tmp_path / "b.parquet")
    s = run(tmp_path / "b.parquet", tmp_path / "r", "python:tests.test_evaluate:echo_model")
    lines = read_run_lines(tmp_path / "r" / "predictions.jsonl")
    bad = set(bench[bench.track_id.isin(tracks[:2])].id)
    errs = {k: v for k, v in lines.items() if v["status"] == "error" and "cannot order" not in v["error"]}
    assert set(errs) == bad and len(lines) == len(bench)
    assert any("audio file not found" in e["error"] for e in errs.values())
    assert any("unreadable" in e["error"] for e in errs.values())
    n_gto_ok = int(((bench.task == "GTO") & ~bench.id.isin(bad)).sum())
    assert sum(s["errors"].values()) == len(bad) + n_gto_ok


def echo_model(audio_path, question, item):
    """A python: model for tests — answers TSG with 0:10 and raises on GTO."""
    if item["task"] == "GTO":
        raise RuntimeError("this model cannot order")
    return "0:10" if item["task"] == "TSG" else "A"


def test_python_and_jsonl_adapters(tiny_bench, tmp_path):
    s = run(tiny_bench, tmp_path / "py", "python:tests.test_evaluate:echo_model")
    lines = read_run_lines(tmp_path / "py" / "predictions.jsonl")
    gto = [v for v in lines.values() if v["task"] == "GTO"]
    assert gto and all(v["status"] == "error" and "cannot order" in v["error"] for v in gto)
    assert s["GTO"] == 0.0
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": k, "prediction": v["prediction"] or ""}) + "\n" for k, v in lines.items()))
    j = run(tiny_bench, tmp_path / "js", f"jsonl:{preds}")
    assert j["TSG"] == s["TSG"] and j["LTR"] == s["LTR"]


def test_openai_adapter_against_the_stub(tiny_bench, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MUST_TEST_KEY", "sk-secret-123")
    caplog.set_level(logging.DEBUG)
    bench = load_bench(tiny_bench)
    one_track = bench[bench.track_id == sorted(bench.track_id)[0]]
    one_track.to_parquet(tmp_path / "b.parquet")
    with StubServer(reply="0:42", slow_delay=2.0, flaky_failures=2, hang_seconds=5.0) as stub:
        args = dict(api_key_env="MUST_TEST_KEY", timeout=1.0, retries=2, backoff=0.01, concurrency=4)
        ok = run(tmp_path / "b.parquet", tmp_path / "ok", f"openai:{stub.url('ok')}#tiny", model_args=args, tasks=["TSG"])
        assert ok["n"]["TSG"] == len(one_track[one_track.task == "TSG"]) and sum(ok["errors"].values()) == 0
        req = stub.requests[0]
        parts = req["messages"][-1]["content"]
        assert req["model"] == "tiny" and parts[1]["type"] == "input_audio" and parts[1]["input_audio"]["format"] == "wav"
        assert stub.auth[0] == "Bearer sk-secret-123"
        flaky = run(tmp_path / "b.parquet", tmp_path / "fl", f"openai:{stub.url('flaky')}#tiny", model_args=args, tasks=["TSG"], limit=1)
        assert sum(flaky["errors"].values()) == 0  # two 500s, then an answer on the third try
        for mode, reason in (("error500", "HTTP 500"), ("slow", "timed out"), ("hang", "timed out"), ("garbage", "unusable")):
            r = run(tmp_path / "b.parquet", tmp_path / mode, f"openai:{stub.url(mode)}#tiny", model_args=args, tasks=["TSG"], limit=2)
            lines = read_run_lines(tmp_path / mode / "predictions.jsonl")
            assert r["errors"]["TSG"] == 2 and all(reason in v["error"] for v in lines.values()), (mode, lines)
    for f in tmp_path.rglob("*"):
        if f.is_file() and f.suffix in (".json", ".jsonl"):
            assert "sk-secret-123" not in f.read_text()
    assert "sk-secret-123" not in caplog.text


def test_hf_adapter_with_a_tiny_local_model(tiny_bench, tmp_path):
    from must.tiny_models import build_tiny_qwen2_audio

    path = build_tiny_qwen2_audio(tmp_path / "tiny-qwen2-audio", ["When does the piano first start to play?"])
    s = run(tiny_bench, tmp_path / "hf", f"hf:{path}", model_args={"max_new_tokens": 6}, tasks=["TSG", "LTR"], limit=2)
    lines = read_run_lines(tmp_path / "hf" / "predictions.jsonl")
    assert len(lines) == 4 and all(v["status"] != "error" for v in lines.values())
    assert all(isinstance(v["prediction"], str) for v in lines.values())
    assert s["n"]["total"] == 4


def test_report_and_cli(tiny_bench, tmp_path):
    for m in ("oracle", "random"):
        assert main(["evaluate", "--model", m, "--bench", str(tiny_bench), "--out", str(tmp_path / m), "--no-progress"]) == 0
    shutil.copytree(tmp_path / "random", tmp_path / "random2")  # the same model twice: told apart by run directory
    assert main(["report", str(tmp_path / "oracle"), str(tmp_path / "random"), str(tmp_path / "random2"),
                 "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| oracle | 100.0 | 100.0 | 100.0 |" in md and "random" in md
    for png in ("tasks.png", "tsg_errors.png", "mtr_iou.png", "letters.png"):
        assert (tmp_path / "rep" / png).stat().st_size > 5000
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert [r["name"] for r in data["runs"]] == ["oracle", "random (random)", "random (random2)"]
    assert "## Paired with oracle — random (random2)" in md
    tsg = next(x for x in data["paired_with_first"]["random (random)"] if x["metric"] == "TSG")
    assert tsg["difference"] < 0 and tsg["higher"] == 0  # the oracle hits every time
    # two "seeds" of random against the oracle: the same answers twice, so every seed differs by the same amount
    assert main(["report", "--pair", str(tmp_path / "random"), str(tmp_path / "oracle"), "--pair",
                 str(tmp_path / "random2"), str(tmp_path / "oracle"), "--out", str(tmp_path / "seeds")]) == 0
    md = (tmp_path / "seeds" / "report.md").read_text()
    assert "## Paired over 2 seeds" in md and "## Paired with" not in md
    data = json.loads((tmp_path / "seeds" / "report.json").read_text())
    assert len(data["runs"]) == 3 and data["paired_over_seeds"]["pairs"][1][0].endswith("random2")
    tsg = next(x for x in data["paired_over_seeds"]["rows"] if x["metric"] == "TSG")
    assert tsg["seeds"] == 2 and tsg["difference"] > 0 and tsg["per_seed"] == [tsg["difference"]] * 2
    assert main(["report", "--out", str(tmp_path / "none")]) == 2


def test_mean_difference_by_hand():
    import math

    from bench.evaluate.paired import mean_difference

    mean, se = mean_difference([0.1, 0.3])  # std (n − 1) √0.02, over √2: 0.1
    assert math.isclose(mean, 0.2) and math.isclose(se, 0.1)
    mean, se = mean_difference([0.5])
    assert mean == 0.5 and math.isnan(se)


def test_paired_differences_by_hand():
    from bench.evaluate.paired import paired_differences

    def run(tsg_hits, ious):
        items = [{"id": f"t{k}", "task": "TSG", "kind": "onset", "scores": {"hit": h}} for k, h in enumerate(tsg_hits)]
        items.append({"id": "off", "task": "TSG", "kind": "offset", "scores": {"hit": 0.0}})
        return {"items": items + [{"id": f"m{k}", "task": "MTR", "scores": {"iou": v, "f1": v}} for k, v in enumerate(ious)]}

    a, b = run([1, 0, 0, 1], [0.5, 0.2]), run([1, 1, 0, 0], [0.7, 0.2])
    b["items"].append({"id": "t9", "task": "TSG", "kind": "onset", "scores": {"hit": 1.0}})  # one run only: left out
    b["items"][4]["scores"]["hit"] = 1.0  # the offset question: +1 (one question, no standard error)
    rows = {r["metric"]: r for r in paired_differences(a, b)}
    # onset differences 0, +1, 0, -1: mean 0, sample std sqrt(2/3), SE sqrt(2/3)/2
    se = round(100 * (2 / 3) ** 0.5 / 2, 2)
    assert rows["TSG onset"] == {"metric": "TSG onset", "n": 4, "difference": 0.0, "standard_error": se, "higher": 1, "lower": 1}
    assert rows["TSG offset"]["difference"] == 100.0 and rows["TSG"]["difference"] == 50.0  # TSG: their mean
    assert rows["TSG"]["n"] == 5 and rows["TSG"]["higher"] == 2
    # IoU differences +0.2, 0: mean 0.1, SE 0.1
    assert rows["MTR IoU"]["difference"] == 10.0 and rows["MTR IoU"]["standard_error"] == 10.0
    assert list(rows) == ["TSG onset", "TSG offset", "TSG", "MTR IoU", "MTR F1"]


def test_crossed_mean_difference_by_hand():
    import math

    from bench.evaluate.paired import crossed_mean_difference, mean_difference

    # seed means 1.5, 3.5 (variance 2, over 2 seeds: 1); question means 2, 3 (0.5, over 2: 0.25); no interaction
    mean, se = crossed_mean_difference([np.array([[1.0, 2.0], [3.0, 4.0]])], [1.0])
    assert mean == 2.5 and math.isclose(se, math.sqrt(1.25))
    # interaction alone: residuals ±0.5, MS_residual 1 over 1 degree of freedom, Var(mean) = 1 / (2 · 2)
    mean, se = crossed_mean_difference([np.array([[1.0, 0.0], [0.0, 1.0]])], [1.0])
    assert mean == 0.5 and math.isclose(se, 0.5)
    # one seed: the paired standard error
    d = np.array([0.1, 0.3, -0.2, 0.4])
    assert np.allclose(crossed_mean_difference([d[None]], [1.0]), mean_difference(d))
    # two strata sharing the seeds (TSG onset, offset): the seed term from the per-seed mean, 1 and 3 (variance 2 / 2)
    mean, se = crossed_mean_difference([np.array([[1.0, 1.0], [3.0, 3.0]]), np.array([[1.0], [3.0]])], [0.5, 0.5])
    assert mean == 2.0 and math.isclose(se, 1.0)
    with pytest.raises(ValueError, match="same seeds"):
        crossed_mean_difference([np.zeros((2, 3)), np.zeros((3, 3))], [0.5, 0.5])
    with pytest.raises(ValueError, match="one weight per stratum"):
        crossed_mean_difference([np.zeros((2, 3))], [0.5, 0.5])
    with pytest.raises(ValueError, match="finite"):
        crossed_mean_difference([np.array([[np.nan, 1.0]])], [1.0])


def test_crossed_standard_error_matches_the_spread_of_simulated_experiments():
    """Under d_iq = μ + a_i + b_q + e_iq (seed sd 0.5, question sd 1, noise sd 1; 5 seeds, 300 questions) the variance
    of the grand mean is 0.25/5 + 1/300 + 1/1500 = 0.054; the estimated variance averages to it over 400 simulated
    experiments, while the paired error that ignores the seeds (over the per-question means) gives about 0.004."""
    from bench.evaluate.paired import crossed_mean_difference, mean_difference

    rng = np.random.default_rng(0)
    k, q = 5, 300
    means, variances, naive = [], [], []
    for _ in range(400):
        d = rng.normal(0, 0.5, (k, 1)) + rng.normal(0, 1, (1, q)) + rng.normal(0, 1, (k, q))
        mean, se = crossed_mean_difference([d], [1.0])
        means.append(mean)
        variances.append(se ** 2)
        naive.append(mean_difference(d.mean(axis=0))[1] ** 2)
    truth = 0.25 / k + 1 / q + 1 / (k * q)
    assert abs(np.mean(variances) / truth - 1) < 0.12
    assert abs(np.var(means) / truth - 1) < 0.2
    assert np.mean(naive) < 0.1 * truth


def test_paired_over_seeds_by_hand():
    from bench.evaluate.paired import paired_over_seeds

    def run(hits, offset, iou):
        items = [{"id": f"t{k}", "task": "TSG", "kind": "onset", "scores": {"hit": h}} for k, h in enumerate(hits)]
        items.append({"id": "off", "task": "TSG", "kind": "offset", "scores": {"hit": offset}})
        return {"items": items + [{"id": "m", "task": "MTR", "scores": {"iou": iou, "f1": iou}}]}

    seed1 = (run([0, 0], 0, 0.5), run([1, 0], 1, 0.5))  # onset +0.5, offset +1: TSG +0.75
    seed2 = (run([1, 1, 1], 1, 0.2), run([1, 1, 0], 1, 0.4))  # onset t0, t1 only (t2 is not in seed 1): 0; TSG 0
    rows = {r["metric"]: r for r in paired_over_seeds([seed1, seed2])}
    assert rows["TSG onset"]["n"] == 2 and rows["TSG onset"]["per_seed"] == [50.0, 0.0]
    assert rows["TSG"]["per_seed"] == [75.0, 0.0] and rows["TSG"]["difference"] == 37.5 and rows["TSG"]["n"] == 3
    assert rows["MTR IoU"]["per_seed"] == [0.0, 20.0] and rows["MTR IoU"]["seeds"] == 2
    assert rows["TSG"]["higher"] == 2 and rows["TSG"]["lower"] == 0  # seed-question cells
    with pytest.raises(ValueError, match="no pairs"):
        paired_over_seeds([])


def test_letter_confusion_counts_unparsed_answers_apart():
    from bench.evaluate.report import letter_confusion

    items = [{"task": "LTR", "answer": "B", "parsed": "B"}, {"task": "LTR", "answer": "B", "parsed": None},
             {"task": "LTR", "answer": "A", "parsed": ""}, {"task": "LTR", "answer": "A", "parsed": "AB"},
             {"task": "LTR", "answer": "C", "parsed": "D"}, {"task": "GTO", "answer": "A", "parsed": "A"}]
    m = letter_confusion(items, "LTR")
    assert m.shape == (4, 5) and m.sum() == 5  # the GTO item is not counted
    assert m[1, 1] == 1 and m[1, 4] == 1  # B right once, once unparsed (None)
    assert m[0, 4] == 2 and m[0, 0] == 0  # "" and "AB" are unparsed, not A
    assert m[2, 3] == 1


def test_unknown_model_spec():
    with pytest.raises(ValueError, match="unknown model spec"):
        load_model("gpt-17")
