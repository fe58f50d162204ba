"""Reward library: TRL signature, registry, properties (bounded, max at the answer, monotone, format-invariant,
garbage-proof), composites from YAML, and the experimentation bench."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards import REWARDS, build_reward_funcs, composite_reward, load_reward_config, make_reward, needs_baseline
from rewards.experiment import padded_reference, run_experiment
from must.timecode import format_time

TRL_EXTRAS = dict(prompts=["p"], completion_ids=[[1, 2]], trainer_state=None, log_extra=None, log_metric=None)
GARBAGE = ["", "garbage", "\x00" * 50, "é" * 5000, "9" * 10000, "<answer></answer>", "1:99", "minus three", "NaN", "∞"]
ROW = {"TSG": dict(answer="1:05", answers=["1:05"], duration=200.0, question="When does the piano first start to play?"),
       "MTR": dict(answer="0:10-0:20", answers=["0:10-0:20"], duration=60.0, question="When is(are) the highest …?"),
       "LTR": dict(answer="C", answers=["C"], duration=60.0, question="Q?\n\nA: a\nB: b\nC: c\nD: d"),
       "GTO": dict(answer="F", answers=["F"], duration=60.0, question="Which order?"),
       "AVQA": dict(answer="two", answers=["two"], duration=60.0, question="How many instruments?"),
       "TAD": dict(answer="The drums enter.", answers=["The drums enter."], duration=60.0, question="Describe …")}


def call(name, completions, task, params=None, **over):
    row = {**ROW[task], **over}
    n = len(completions)
    return make_reward(name, **(params or {}))(completions, task=[task] * n, **{k: [v] * n for k, v in row.items()},
                         **{k: (v * n if isinstance(v, list) else v) for k, v in TRL_EXTRAS.items()})


def test_registry_names_and_signature():
    assert len(REWARDS) >= 12
    for name, fn in REWARDS.items():
        assert fn.__name__ == name
        for task in ROW:
            out = call(name, ["1:05", "C", "0:10-0:20", ""], task)
            assert len(out) == 4
            assert all(v is None or (isinstance(v, float) and math.isfinite(v)) for v in out), (name, task, out)


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_never_raises_on_garbage_and_is_bounded(name):
    for task in ROW:
        out = call(name, GARBAGE, task)
        assert all(v is None or -1.0 <= v <= 1.0 for v in out), (name, task, out)


@pytest.mark.parametrize("name", ["timestamp_exp", "timestamp_gauss", "timestamp_hit"])
def test_timestamp_rewards_properties(name):
    formats = ["1:05", "01:05", "65 s", "65 seconds", "1 minute 5 seconds", "<answer>1:05</answer>", "It starts at 1:05."]
    top = call(name, formats, "TSG")
    assert top == [1.0] * len(formats)
    ladder = call(name, [format_time(65 + d) for d in (0, 1, 2, 3, 5, 10, 30, 100)], "TSG")
    assert all(a >= b for a, b in zip(ladder, ladder[1:])) and ladder[0] > ladder[-1]
    assert call(name, GARBAGE, "TSG") == [0.0] * len(GARBAGE)
    assert call(name, ["1:05"], "MTR") == [None]  # not applicable to other tasks


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 599), st.integers(0, 599), st.integers(0, 599))
def test_timestamp_exp_monotone_in_error(ref, a, b):
    r = REWARDS["timestamp_exp"]([format_time(a), format_time(b)], answer=[format_time(ref)] * 2, task=["TSG"] * 2)
    if abs(a - ref) <= abs(b - ref):
        assert r[0] >= r[1]
    assert 0.0 <= min(r) and max(r) <= 1.0


def test_timestamp_values_by_hand():
    assert call("timestamp_exp", ["1:10"], "TSG") == [pytest.approx(math.exp(-1))]  # 5 s off, τ = 5
    assert call("timestamp_gauss", ["1:08"], "TSG") == [pytest.approx(math.exp(-0.5))]  # 3 s off, σ = 3
    assert call("timestamp_hit", ["1:08", "1:09"], "TSG") == [1.0, 0.0]
    assert make_reward("timestamp_exp", tau=10.0)(["1:15"], answer=["1:05"], task=["TSG"]) == [pytest.approx(math.exp(-1))]


def test_out_of_range():
    assert call("out_of_range", ["3:10", "3:30", "0:10-5:00", ""], "TSG") == [0.0, -1.0, 0.0, 0.0]
    assert call("out_of_range", ["0:10-0:50", "0:10-5:00"], "MTR") == [0.0, -1.0]
    assert call("out_of_range", ["9:00"], "LTR") == [None]


def test_interval_rewards_by_hand():
    assert call("interval_iou", ["0:10-0:20", "0:15-0:25", "0:00-1:00", "0:20-0:30", "garbage"], "MTR") == [
        1.0, pytest.approx(5 / 15), pytest.approx(10 / 60), 0.0, 0.0]
    # clipped to the track: 0:10-9:00 on a 60 s track is 0:10-1:00
    assert call("interval_iou", ["0:10-9:00"], "MTR") == [pytest.approx(10 / 50)]
    two = dict(answer="0:10-0:20, 0:40-0:50", answers=["0:10-0:20", "0:40-0:50"])
    assert call("interval_f1", ["0:10-0:20"], "MTR", **two) == [pytest.approx(2 / 3)]
    # IoU 0.6 passes the thresholds 0.1, 0.3, 0.5, not 0.7; the thresholds are the reward's parameter
    assert call("interval_f1", ["0:10-0:16"], "MTR") == [pytest.approx(0.75)]
    assert call("interval_f1", ["0:10-0:16"], "MTR", dict(thresholds=(0.7,))) == [0.0]
    assert call("interval_iou", ["0:10-0:20 and 0:40-0:50"], "MTR", **two) == [1.0]
    # tIoU: whole track IoU 1/6, times (1 - 10/60) * (1 - 40/60)
    assert call("interval_tiou", ["0:00-1:00"], "MTR") == [pytest.approx((10 / 60) * (5 / 6) * (1 / 3))]
    near = call("interval_soft_iou", ["0:21-0:31"], "MTR")[0]
    assert 0 < near < 0.2 and call("interval_iou", ["0:21-0:31"], "MTR") == [0.0]
    assert call("interval_soft_iou", ["0:10-0:20"], "MTR") == [pytest.approx(1.0)]


def test_interval_boundary_by_hand():
    e = math.exp
    # exact; start 5 s late (end exact); whole track: start 10 s and end 40 s off; garbage
    assert call("interval_boundary", ["0:10-0:20", "0:15-0:20", "0:00-1:00", "soon"], "MTR") == [
        1.0, pytest.approx((e(-1) + 1) / 2), pytest.approx((e(-2) + e(-8)) / 2), 0.0]
    # a boundary's score ignores the other boundary: widening past the reference only costs
    assert call("interval_boundary", ["0:12-0:20", "0:12-0:30"], "MTR", dict(tau=2.0)) == [
        pytest.approx((e(-1) + 1) / 2), pytest.approx((e(-1) + e(-5)) / 2)]
    two = dict(answer="0:10-0:20, 0:40-0:50", answers=["0:10-0:20", "0:40-0:50"])
    # listed in either order, matched one-to-one; one of two intervals earns half
    assert call("interval_boundary", ["0:40-0:50, 0:10-0:20", "0:40-0:50"], "MTR", **two) == [1.0, 0.5]
    # an extra interval costs its share
    assert call("interval_boundary", ["0:10-0:20, 0:40-0:50"], "MTR") == [0.5]
    # linear kernel: 1 − |Δ|/τ per boundary, 0 beyond τ
    assert call("interval_boundary", ["0:15-0:20", "0:00-1:00"], "MTR", dict(kernel="linear", tau=20.0)) == [
        pytest.approx((0.75 + 1) / 2), pytest.approx((0.5 + 0) / 2)]
    with pytest.raises(ValueError, match="kernel"):
        call("interval_boundary", ["0:10-0:20"], "MTR", dict(kernel="box"))


def test_interval_median_side_by_hand():
    # reference 0:10-0:20, the baseline (the median answer) 0:14-0:30: both its boundaries are late, so a sample
    # earlier than them is on the reference's side (+1 each), later is −1, on them 0; garbage −1; no baseline, None
    base = dict(baseline="0:14-0:30")
    assert call("interval_median_side", ["0:12-0:25", "0:16-0:35", "0:14-0:30", "0:00-0:20", "soon"], "MTR", **base) == [
        1.0, -1.0, 0.0, 1.0, -1.0]
    assert call("interval_median_side", ["0:12-0:25"], "MTR") == [None]
    assert call("interval_median_side", ["0:12-0:25"], "MTR", baseline="later") == [None]
    assert call("interval_median_side", ["0:12-0:25"], "TSG", baseline="0:14-0:30") == [None]
    # a boundary within `tolerance` of the reference gets no push: start 0:11 (1 s off) → only the end counts
    assert call("interval_median_side", ["0:05-0:25"], "MTR", baseline="0:11-0:30") == [0.5]
    assert call("interval_median_side", ["0:05-0:25"], "MTR", dict(tolerance=0.5), baseline="0:11-0:30") == [1.0]
    # two regions, the baseline's listed the other way round: 0:42-0:55 ↔ 0:40-0:50 (both boundaries late),
    # 0:08-0:20 ↔ 0:10-0:20 (start early, end right); the sample's 0:41-0:52 and 0:12-0:18 earn +1 +1 and +1 0 of 4;
    # a sample with the first region only, 2 of 4; the right regions plus an extra one, (3 − 2) of 6
    two = dict(answer="0:10-0:20, 0:40-0:50", answers=["0:10-0:20", "0:40-0:50"], baseline="0:42-0:55, 0:08-0:20")
    assert call("interval_median_side", ["0:12-0:18, 0:41-0:52", "0:41-0:52", "0:12-0:18, 0:41-0:52, 0:55-0:58"], "MTR",
                **two) == [0.75, 0.5, pytest.approx(1 / 6)]
    # one baseline region, a sample listing it twice: the copy is unmatched (−2 of 4)
    assert call("interval_median_side", ["0:12-0:25, 0:12-0:25"], "MTR", **base) == [0.0]
    assert needs_baseline(load_reward_config("rewards/median-side.yaml"))


def test_choice_and_text_rewards():
    assert call("choice_accuracy", ["C) c", "Answer: B", "c", "(C)", ""], "LTR") == [1.0, 0.0, 1.0, 1.0, 0.0]
    assert call("choice_accuracy", ["2", "There are two.", "three"], "AVQA") == [1.0, 1.0, 0.0]
    assert call("choice_accuracy", ["C"], "TSG") == [None]
    m = call("tad_meteor", ["The drums enter.", "the piano stops", ""], "TAD")
    assert m[0] > 0.9 and m[1] < m[0] and m[2] == 0.0


def test_format_and_length():
    assert call("format_answer_tag", ["<answer>1:05</answer>", "<think>hm</think><answer>1:05</answer>", "1:05",
                                      "<answer>1:05</answer><answer>1:06</answer>", "<answer> </answer>"], "TSG") == [1, 1, 0, 0, 0]
    assert call("format_parsable", ["1:05", "soon", "<answer>1:05</answer>"], "TSG") == [1.0, 0.0, 1.0]
    words = lambda k: " ".join(["w"] * k)  # noqa: E731
    assert call("length_penalty", [words(48), words(72), words(96), words(500)], "TSG") == [0.0, -0.5, -1.0, -1.0]


def test_conversational_completions():
    conv = [[{"role": "assistant", "content": "It starts at 1:05."}], [{"role": "assistant", "content": [{"type": "text", "text": "1:10"}]}]]
    assert call("timestamp_exp", conv, "TSG") == [1.0, pytest.approx(math.exp(-1))]


def test_make_reward_errors_and_names():
    with pytest.raises(KeyError, match="unknown reward"):
        make_reward("nope")
    with pytest.raises(TypeError, match="no parameter"):
        make_reward("timestamp_exp", sigma=3)
    assert make_reward("timestamp_exp", tau=2.0).__name__ == "timestamp_exp[tau=2.0]"


def test_improvement_over_baseline_by_hand():
    from rewards import improvement_over_baseline

    rel = improvement_over_baseline(make_reward("timestamp_exp", tau=5.0))
    got = rel(["1:05", "1:10", "1:30", "0:50"], answer=["1:05"] * 3 + ["0:40"], task=["TSG"] * 4,
              baseline=["1:10", "1:10", "1:10", "0:40"])
    # own rewards 1, e^-1, e^-5, e^-2 against the baselines' e^-1, e^-1, e^-1, 1
    assert got == pytest.approx([1 - math.exp(-1), 0.0, 0.0, 0.0])
    iou = improvement_over_baseline(REWARDS["interval_iou"])
    # IoU 1 and 1/2, against a baseline [0:10, 0:30] with IoU 1/3; [0:10, 0:40] (1/4) gains nothing; an LTR row stays out
    got = iou(["0:00-0:20", "0:00-0:10", "0:10-0:40", "B"], answer=["0:00-0:20"] * 3 + ["B"], task=["MTR"] * 3 + ["LTR"],
              baseline=["0:10-0:30"] * 3 + ["A"])
    assert got[:3] == pytest.approx([2 / 3, 1 / 6, 0.0]) and got[3] is None
    assert iou.__name__ == "interval_iou>baseline"
    # a row it leaves out needs no baseline; a row it scores does
    assert iou(["B", "0:00-0:20"], answer=["B", "0:00-0:20"], task=["LTR", "MTR"], baseline=[None, "0:10-0:30"]) == \
        [None, pytest.approx(2 / 3)]
    with pytest.raises(ValueError, match="baseline"):
        rel(["1:05"], answer=["1:05"], task=["TSG"])
    with pytest.raises(ValueError, match="baseline"):
        iou(["B", "0:00-0:20"], answer=["B", "0:00-0:20"], task=["LTR", "MTR"], baseline=["A", None])


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_a_reward_scores_exactly_the_tasks_it_declares(name):
    """``tasks`` (what the trainer reads to know which rows need a baseline) agrees with the rows the reward scores:
    each task's reference answer scored as a completion is ``None`` outside them, a value inside."""
    declared = REWARDS[name].tasks
    for task, row in ROW.items():
        got = call(name, [row["answer"]], task, baseline=row["answer"])[0]
        assert (got is not None) == (declared is None or task in declared), (name, task, got)


def test_a_scoped_reward_sees_only_its_tasks_rows_with_their_columns():
    """A reward declared for some tasks is called on those rows (and rows with no task) alone, every per-row column
    cut to them in order, scalars passed as they are; the other rows get ``None`` and the answers land in place."""
    import numpy as np

    from rewards.base import REWARDS as registry, register_reward

    seen = []

    @register_reward("_probe", tasks=("MTR",))
    def probe(completions, *, bonus: float = 0.0, **kwargs):
        seen.append({"completions": list(completions), **kwargs})
        return [float(len(c)) + bonus for c in completions]

    try:
        state = object()
        out = make_reward("_probe", bonus=0.5)(
            ["a", "bb", "ccc", "dddd"], task=["TSG", "MTR", None, "MTR"], answer=("1:05", "0:10-0:20", "x", "0:01-0:02"),
            duration=np.array([1.0, 2.0, 3.0, 4.0]), completion_ids=[[1], [2], [3], [4]], trainer_state=state)
        assert out == [None, 2.5, 3.5, 4.5]
        (call_,) = seen
        assert call_["completions"] == ["bb", "ccc", "dddd"] and call_["task"] == ["MTR", None, "MTR"]
        assert call_["answer"] == ["0:10-0:20", "x", "0:01-0:02"] and call_["completion_ids"] == [[2], [3], [4]]
        assert call_["duration"].tolist() == [2.0, 3.0, 4.0] and call_["trainer_state"] is state
        seen.clear()
        import pandas as pd

        series = pd.Series(["x", "y", "z"], index=[7, 8, 9])  # cut by position, whatever its index
        assert probe(["a", "bb", "c"], task=["MTR", "TSG", "MTR"], answer=series) == [1.0, None, 1.0]
        assert seen[0]["answer"] == ["x", "z"]
        seen.clear()
        assert probe(["a", "b"], task=["TSG", "LTR"]) == [None, None] and not seen  # nothing to score: never called
        assert probe(["a"], task="MTR") == [1.0] and seen[0]["task"] == "MTR"  # every row in scope: as given
    finally:
        registry.pop("_probe")


def test_composite_from_yaml(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("name: mix\nrewards:\n  - {name: timestamp_hit, weight: 2.0}\n  - {name: format_parsable, weight: 0.5}\n"
                 "  - {name: interval_iou, weight: 1.0}\n")
    cfg = load_reward_config(str(p))
    funcs, weights = build_reward_funcs(cfg)
    assert [f.__name__ for f in funcs] == ["timestamp_hit", "format_parsable", "interval_iou"] and weights == [2.0, 0.5, 1.0]
    f = composite_reward(cfg)
    out = f(["1:05", "garbage", "0:10-0:20"], task=["TSG", "TSG", "MTR"], answer=["1:05", "1:05", "0:10-0:20"],
            answers=[["1:05"], ["1:05"], ["0:10-0:20"]], duration=[200.0, 200.0, 60.0])
    assert out == [2.5, 0.0, 1.5]  # 2·1 + 0.5·1; 0; 0.5·1 + 1·1
    bad = tmp_path / "bad.yaml"
    bad.write_text("rewards:\n  - {name: timestamp_hit, wieght: 2.0}\n")
    with pytest.raises(Exception, match="unknown key"):
        load_reward_config(str(bad))
    assert load_reward_config("rewards/default.yaml").name == "default"
    over = load_reward_config("rewards/over-greedy.yaml")
    funcs, _ = build_reward_funcs(over)
    assert needs_baseline(over) and not needs_baseline(cfg)
    assert [f.__name__ for f in funcs][:2] == ["timestamp_exp[tau=5.0]>baseline", "interval_iou>baseline"]
    assert funcs[4].__name__ == "format_parsable"  # penalties stay absolute


def test_experiment_on_a_built_benchmark(tiny_bench):
    from bench.io import load_bench

    bench = load_bench(tiny_bench)
    completions = {str(r["id"]): [str(r["answer"]), "garbage", "garbage"] for r in bench.to_dict("records")}
    cfgs = [load_reward_config("rewards/default.yaml"), load_reward_config("rewards/sparse.yaml")]
    res = run_experiment(bench, completions, cfgs)
    d = res["configs"]["default"]
    assert res["n_completions"] == 3 * len(bench)
    assert d["per_task"]["TSG"]["spearman_vs_metric"] > 0.8
    assert d["per_task"]["TSG"]["zero_variance_groups"] == 0.0  # right vs garbage always differs
    assert d["probes"]["MTR"]["whole_track"] < d["probes"]["MTR"]["reference"]
    assert d["probes"]["LTR"]["every_letter"] < d["probes"]["LTR"]["reference"]
    assert d["probes"]["TSG"]["empty"] == 0.0
    assert d["probes"]["MTR"]["padded_reference"] < d["probes"]["MTR"]["reference"]


def test_padded_reference_hedges_around_the_reference():
    mtr = {"task": "MTR", "answer": "0:20-0:40", "duration": 60.0}
    # a 1 s interval at 0, 10, ..., 50 s, except where it would touch the reference (20, 30, 40)
    padded = padded_reference(mtr)
    assert padded == "0:20-0:40, 0:00-0:01, 0:10-0:11, 0:50-0:51"
    assert REWARDS["interval_iou"]([padded], answer=["0:20-0:40"], duration=[60.0])[0] == pytest.approx(20 / 23)
    assert padded_reference({"task": "TSG", "answer": "0:07", "duration": 25.0}) == "0:07, 0:00, 0:10, 0:20"
    assert padded_reference({"task": "LTR", "answer": "B"}) == "B A B C D E F"


def test_experiment_scores_relative_rewards_against_a_baseline(tiny_bench):
    from bench.io import load_bench

    bench = load_bench(tiny_bench)
    tsg = bench[bench.task == "TSG"].head(3)
    completions = {str(r["id"]): [str(r["answer"]), "garbage"] for r in tsg.to_dict("records")}
    over = load_reward_config("rewards/over-greedy.yaml")
    with pytest.raises(ValueError, match="over-greedy"):
        run_experiment(bench, completions, [over])
    # against a baseline that is already right, nothing gains: the right answer's reward is the format bonus alone
    right = {str(r["id"]): str(r["answer"]) for r in tsg.to_dict("records")}
    res = run_experiment(bench, completions, [over], baseline=right)
    vals = res["configs"]["over-greedy"]["per_task"]["TSG"]["values"]
    assert res["n_completions"] == 6 and max(vals) == pytest.approx(0.2)
    wrong = dict.fromkeys(right, "garbage")
    res = run_experiment(bench, completions, [over], baseline=wrong)
    assert max(res["configs"]["over-greedy"]["per_task"]["TSG"]["values"]) == pytest.approx(1.2)
    # over-greedy-mtr reads the baseline on MTR alone: TSG completions need none, MTR ones without one are left out
    mtr = bench[bench.task == "MTR"].head(2).to_dict("records")
    both = {**completions, **{str(r["id"]): [str(r["answer"])] for r in mtr}}
    res = run_experiment(bench, both, [load_reward_config("rewards/over-greedy-mtr.yaml")],
                         baseline={str(mtr[0]["id"]): "garbage"})
    per_task = res["configs"]["over-greedy-mtr"]["per_task"]
    assert res["n_completions"] == 7 and len(per_task["MTR"]["values"]) == 1
    assert per_task["MTR"]["values"][0] == pytest.approx(1.2)  # IoU 1 over an unparsed baseline's 0, plus the format bonus


def test_rewards_command_with_a_baseline_run(tiny_bench, tmp_path):
    import json

    from bench.io import load_bench
    from must.cli import main

    tsg = load_bench(tiny_bench).query("task == 'TSG'").head(4).to_dict("records")
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps({"id": r["id"], "completions": [r["answer"], "0:00"]}) + "\n"
                                                    for r in tsg))
    (tmp_path / "greedy.jsonl").write_text("".join(json.dumps({"id": r["id"], "prediction": "0:00"}) + "\n" for r in tsg))
    args = ["rewards", "--bench", str(tiny_bench), "--completions", str(tmp_path / "samples.jsonl"), "--config",
            "rewards/default.yaml", "rewards/over-greedy.yaml", "--out", str(tmp_path / "out")]
    assert main(args) == 2  # relative rewards without --baseline: a message, no traceback
    assert main([*args, "--baseline", str(tmp_path / "greedy.jsonl")]) == 0
    res = json.loads((tmp_path / "out" / "rewards.json").read_text())
    assert set(res["configs"]) == {"default", "over-greedy"} and res["n_completions"] == 8
    # a sample equal to the baseline "0:00" gains nothing: only the format bonus (0.2) and the range term remain
    assert min(res["configs"]["over-greedy"]["per_task"]["TSG"]["values"]) == pytest.approx(0.2)
