"""The benchmarks entry point writes JSON and Markdown, and a failing part does not lose the others."""

import json

import pytest
import torch

from benchmarks.__main__ import main
from benchmarks.throughput import rewards


def test_reward_throughput_figures():
    out = rewards(2000)
    assert set(out["completions_per_s"]) >= {"timestamp_exp", "interval_iou"}
    assert all(v > 0 for v in out["completions_per_s"].values())


def test_entry_point_writes_json_and_markdown(tmp_path):
    rc = main(["quality", "nonsense", "--out", str(tmp_path)])
    assert rc == 1  # the unknown part failed …
    data = json.loads((tmp_path / "benchmarks.json").read_text())
    assert "error" in data["nonsense"] and "quality" in data and "meta" in data  # … and the other part is kept
    assert (tmp_path / "benchmarks.md").read_text().startswith("# must-bench benchmarks")


def test_ltr_readout_scores_clauses_from_the_heads_at_the_asked_second():
    import pytest
    import torch

    from benchmarks.ltr_readout import clause_evidence

    sources = ["piano", "drums"]
    probs = torch.zeros(6, 3 + 2 * len(sources))
    probs[:, 1] = torch.tensor([0.0, 0.0, 0.9, 0.0, 0.0, 0.0])  # rhythm-change head
    change = torch.zeros_like(probs)
    change[:, 3] = torch.tensor([0.0, 0.5, 1.0, 0.5, 0.0, 0.0])  # drums activity rises around 0:02
    ev = {"probs": probs, "change": change, "loudness_change": torch.tensor([0.0, 0.0, -0.25, 0.0, 0.0, 0.0])}
    assert clause_evidence("The drums enter", 2, ev, sources) == 1.0
    assert clause_evidence("the drums stop", 2, ev, sources) == -0.5  # best of −0.5, −1, −0.5 over 0:01–0:03
    assert clause_evidence("The drums enter", 5, ev, sources) == 0.0  # window 0:04–0:05 only
    assert clause_evidence("the tempo slows down", 3, ev, sources) == pytest.approx(0.6)
    assert clause_evidence("the music gets softer", 2, ev, sources) == 0.5
    assert clause_evidence("No noticeable change", 2, ev, sources) is None
    with pytest.raises(ValueError, match="unrecognised"):
        clause_evidence("the harp enters", 2, ev, sources)


def test_grpo_group_advantages_and_their_summary_by_hand():
    import pandas as pd
    import pytest

    from benchmarks.grpo_groups import advantage_summary, group_advantages

    # mean 0.5, std with Bessel's correction sqrt(1/3)
    assert group_advantages([1.0, 0.0, 0.0, 1.0]) == pytest.approx([0.5 / (3 ** -0.5 + 1e-4) * s for s in (1, -1, -1, 1)])
    assert group_advantages([0.3, 0.3]) == pytest.approx([0.0, 0.0])  # a dead group
    with pytest.raises(ValueError, match="at least two"):
        group_advantages([1.0])
    samples = pd.DataFrame({"question": ["q"] * 4, "start": [0.0, 10.0, 20.0, 0.0], "width": [30.0, 5.0, 20.0, 10.0],
                            "adv iou": [1.0, -1.0, -0.5, 0.5]})
    # starts at 0:00: (1 + 0.5) / 2; wider than the median width 15 s: 30 s and 20 s → (1 − 0.5) / 2
    assert advantage_summary(samples, "iou") == {"start 0:00": 0.75, "other starts": -0.75,
                                                 "wider than group median": 0.25, "not wider": -0.25}


def test_grpo_groups_medoid_and_pairing_by_hand():
    import pytest

    from benchmarks.grpo_groups import medoid, paired

    # IoU with the others: [0,10] 1/2 + 1/4 = 0.75; [0,20] 1/2 + 3/4 = 1.25; [5,20] 1/4 + 3/4 = 1.0; unparsed −1
    assert medoid([[(0.0, 10.0)], [(0.0, 20.0)], [(5.0, 20.0)], None]) == 1
    assert medoid([None, None]) == 0  # nothing parsed: the first
    with pytest.raises(ValueError, match="no answers"):
        medoid([])
    before = {"per question": [{"id": "a", "sample iou": 0.4, "greedy iou": 0.5, "medoid iou": 0.5},
                               {"id": "b", "sample iou": 0.2, "greedy iou": 0.3, "medoid iou": 0.1}]}
    after = {"per question": [{"id": "b", "sample iou": 0.3, "greedy iou": 0.3, "medoid iou": 0.3},
                              {"id": "a", "sample iou": 0.6, "greedy iou": 0.5, "medoid iou": 0.3},
                              {"id": "c", "sample iou": 1.0, "greedy iou": 1.0, "medoid iou": 1.0}]}
    # differences in points over a and b: sample +20, +10 (mean 15, sd 7.07, se 5.0); greedy 0, 0; medoid −20, +20
    assert paired(after, before) == {"questions": "2", "sample iou": "+15.0 ± 5.0", "greedy iou": "+0.0 ± 0.0",
                                     "medoid iou": "+0.0 ± 20.0"}
    with pytest.raises(ValueError, match="in common"):
        paired({"per question": [{"id": "c"}]}, before)


def test_grpo_groups_keeps_its_figures_when_pairing_fails(tmp_path, monkeypatch):
    import json

    import pytest

    from benchmarks import grpo_groups

    fake = {"per question": [{"id": "a", "sample iou": 0.5, "greedy iou": 0.5, "medoid iou": 0.5}]}
    monkeypatch.setattr(grpo_groups, "run", lambda *a, **k: dict(fake))
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"sample IoU": 40.0}))  # written before per-question figures existed
    with pytest.raises(SystemExit, match="cannot pair.*KeyError"):
        grpo_groups.main(["ckpt", "--bench", "b", "--against", str(old), "--out", str(tmp_path / "out")])
    assert json.loads((tmp_path / "out" / "grpo_groups.json").read_text()) == fake


def test_mtr_pace_regions_from_the_annotated_pace_reproduce_the_references(tiny_bench):
    import pandas as pd

    from benchmarks.mtr_pace import run

    questions = pd.concat(pd.read_parquet(p) for p in (tiny_bench / "parquet").glob("*.parquet")).query("task == 'MTR'")
    split = questions.split.value_counts().index[0]
    result = run(str(tiny_bench), split)
    table = result["regions_from_rms_times"]
    assert result["questions"] == int((questions.split == split).sum()) > 0
    assert set(table) == {"annotated pace (check)", "annotated onset density, no tempo", "onset strength (librosa)",
                          "detected onsets (librosa)"}
    # the reference is RMS × onset density × tempo, found by the same rule: re-deriving it from the audio at 16 kHz
    # only moves the RMS by resampling
    assert table["annotated pace (check)"]["IoU"] >= 95.0 and table["annotated pace (check)"]["F1"] >= 95.0


def test_tad_ceiling_splits_a_description_into_its_change_and_what_keeps_playing():
    from benchmarks.tad_ceiling import split_description

    assert split_description("The drums enter, adding a steady beat, while the piano keeps playing.") == (
        "The drums enter, adding a steady beat", ", while the piano keeps playing")
    assert split_description("the music gets noticeably louder.") == ("the music gets noticeably louder", "")


def test_tad_ceiling_scores_predictions_and_their_repairs(tiny_bench, tmp_path):
    from bench.io import load_bench
    from benchmarks.tad_ceiling import run

    asked = load_bench(tiny_bench, "test").query("task == 'TAD'")
    n, first = len(asked), asked.id.iloc[0]
    # every prediction is its question's first reference, except the first one, which names no change at all
    preds = [{"id": i, "prediction": "No noticeable change." if i == first else str(a[0])} for i, a in zip(asked.id, asked.answers)]
    path = tmp_path / "predictions.jsonl"
    path.write_text("\n".join(json.dumps(p) for p in preds) + "\n")
    one = run(str(tiny_bench), "test", str(path), limit=1)["scores"]
    assert set(one) == {"the annotation's description", "as predicted", "the right change",
                        "the right sources still playing"}
    # the annotation's change put in front of the wrong prediction scores more than the prediction
    assert one["the right change"]["TAD"] > one["as predicted"]["TAD"]
    result = run(str(tiny_bench), "test", str(path))
    assert result["questions"] == n > 1 and all(row["n"] == n for row in result["scores"].values())
    # the other predictions are a reference of their own question: semantic similarity 100 each
    expected = (100 * (n - 1) + one["as predicted"]["semantic"]) / n
    assert abs(result["scores"]["as predicted"]["semantic"] - expected) < 0.15


def test_tad_ceiling_names_change_reads_only_the_change_in_the_short_wording():
    from benchmarks.tad_ceiling import names_change
    from must.annotation import Event

    text = "The violin enters, adding a new melodic layer, while the piano keeps playing."
    assert names_change(text, Event(12.0, "enter", "violin"))
    assert not names_change(text, Event(12.0, "exit", "violin"))
    # the piano is named after ", while the": it keeps playing, it is not the change
    assert not names_change(text, Event(12.0, "enter", "piano"))
    assert names_change("At 0:12, the drums enter.", Event(12.0, "enter", "drums"))
    louder = Event(30.0, "dynamic_change", None, {"direction": "louder"})
    assert names_change("The music gets noticeably louder.", louder)
    assert names_change("The tempo speeds up and the music gets louder.", louder)
    assert not names_change("The music gets noticeably softer.", louder)
    slower = Event(40.0, "tempo_change", None, {"from": 120.0, "to": 90.0})
    assert names_change("The tempo slows down from about 120 to 90 BPM.", slower)
    assert not names_change("The tempo speeds up from about 90 to 120 BPM.", slower)


def test_tad_ceiling_counts_the_first_change_named_by_kind(tiny_bench, tmp_path):
    from bench.annotate.jams_io import read_jams
    from bench.io import load_bench
    from bench.tasks.phrasing import describe_moment
    from benchmarks.tad_ceiling import run
    from must.annotation import Event
    from must.schema import row_events

    asked = load_bench(tiny_bench, "test").query("task == 'TAD'")
    # the annotation's own description names every first change; "No noticeable change." names none
    rows = []
    for q in asked.to_dict("records"):
        events = [Event(**e) for e in row_events(q["events"])]
        text = describe_moment(events, read_jams(tiny_bench / "jams" / f"{q['track_id']}.jams"), None)
        rows.append({"id": q["id"], "prediction": text})
    path = tmp_path / "predictions.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    kinds = run(str(tiny_bench), "test", str(path))["first_change_named"]
    assert kinds["all"] == {"n": len(asked), "named": 100.0}
    assert sum(v["n"] for k, v in kinds.items() if k != "all") == len(asked)
    path.write_text("\n".join(json.dumps({"id": r["id"], "prediction": "No noticeable change."}) for r in rows) + "\n")
    assert run(str(tiny_bench), "test", str(path))["first_change_named"]["all"]["named"] == 0.0
    assert run(str(tiny_bench), "test")["first_change_named"] == {}


def test_tad_ceiling_command_prints_and_saves_its_table(tiny_bench, tmp_path, capsys):
    from benchmarks.tad_ceiling import main

    main(["--bench", str(tiny_bench), "--split", "test", "--limit", "2", "--out", str(tmp_path)])
    table = (tmp_path / "tad_ceiling.md").read_text()
    assert table.startswith("| description | questions | METEOR | semantic | TAD |")
    assert "| the annotation's description | 2 |" in table
    assert json.loads((tmp_path / "tad_ceiling.json").read_text())["questions"] == 2
    assert capsys.readouterr().out.startswith("2 TAD questions (test)\n| description |")


def test_encoder_step_variants_run_and_channels_last_computes_the_same_encoder():
    from benchmarks.encoder_step import VARIANTS, _encoder, run, step_seconds

    result = run(steps=1, batch=2, seconds=2.0)
    assert set(result["step_s"]) == set(VARIANTS) and all(t > 0 for t in result["step_s"].values())
    assert result["speedup"]["float32"] == 1.0
    with pytest.raises(ValueError, match="variant must be one of"):
        step_seconds("float16")
    mel, offset = torch.randn(2, 64, 100), torch.zeros(2)
    with torch.no_grad():
        plain, fast = _encoder(False).eval()(mel, offset)[1], _encoder(True).eval()(mel, offset)[1]
    assert torch.allclose(plain, fast, atol=1e-4)


def test_pair_max_benchmark_times_both_poolings_on_the_encoders_three_maps(tmp_path, capsys):
    from benchmarks.pair_max import main, pooled_shapes

    assert pooled_shapes(16, 15.0) == [(16, 32, 64, 150), (16, 64, 32, 150), (16, 64, 16, 150)]
    main(["--repeats", "1", "--batch", "2", "--seconds", "1", "--out", str(tmp_path)])
    rows = json.loads((tmp_path / "pair_max.json").read_text())["rows"]
    assert len(rows) == 12  # 2 dtypes x 2 passes x 3 maps
    assert {(r["dtype"], r["pass"]) for r in rows} == {(d, p) for d in ("float32", "bfloat16")
                                                       for p in ("forward", "forward + backward")}
    assert all(r["max_pool2d"] > 0 and r["pair_max"] > 0 for r in rows)
    assert "| float32 | forward | (2, 32, 64, 10) |" in (tmp_path / "pair_max.md").read_text()
    assert capsys.readouterr().out.startswith("the encoder's frequency pooling,")


def test_packed_step_times_both_attentions_over_stage3_like_packings(tmp_path):
    from benchmarks.packed_step import VARIANTS, main, packings, step_seconds

    batches = packings(steps=2, batch=3, turns=4)
    assert len(batches) == 2 and all(len(rows) == 3 and all(len(r) == 4 for r in rows) for rows in batches)
    for rows in batches:
        for spans in rows:
            assert 60 <= spans[0][0] <= 170  # the audio prefix
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # turns follow one another
            assert all(20 <= e - s <= 50 or 150 <= e - s <= 166 for s, e in spans)
    assert packings(steps=2, batch=3, turns=4) == batches  # seeded
    with pytest.raises(ValueError, match="variant must be one of"):
        step_seconds("eager", batches)
    main(["--steps", "1", "--batch", "2", "--turns", "3", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "packed_step.json").read_text())
    assert set(result["step_s"]) == set(VARIANTS) and all(t > 0 for t in result["step_s"].values())
    assert "| must_packed blocks |" in (tmp_path / "packed_step.md").read_text()


def test_grpo_step_times_whole_rows_and_prompts_once(tmp_path):
    """The GRPO-step benchmark builds stage-4-like batches (each prompt repeated, left-padded) and times both ways."""
    from benchmarks.grpo_step import VARIANTS, _batches, _policy, main, step_seconds

    model, proc = _policy()
    batches = _batches(proc, model, steps=2, prompts=2, generations=3)
    for b in batches:
        ids, mask = b["input_ids"], b["attention_mask"]
        assert ids.shape[0] == 6 and torch.equal(ids[0], ids[2]) and torch.equal(ids[3], ids[5])
        assert not torch.equal(ids[0], ids[3]) and (mask[:, -1] == 1).all()  # two tracks; padded on the left
        assert 200 < int(mask.sum(1).max()) < 400  # audio span of 90-150 s, heard line, question
    with pytest.raises(ValueError, match="variant must be one of"):
        step_seconds("vllm")
    main(["--steps", "1", "--prompts", "2", "--generations", "2", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "grpo_step.json").read_text())
    assert set(result["step_s"]) == set(VARIANTS) and all(t > 0 for t in result["step_s"].values())
    assert "| prompts once |" in (tmp_path / "grpo_step.md").read_text()


def _peaked(n: int, at: int, height: float = 0.9):
    probs = torch.full((n,), (1 - height) / (n - 1), dtype=torch.float64)
    probs[at] = height
    return probs


def test_tsg_weights_grid_rechooses_each_time_by_hand():
    """One onset question whose pointer peaks at 0:10 and whose scan peaks at the reference 0:20, one offset question
    without a scan (its written hit stands): the scan's weight 0 keeps the pointer's second (TSG 50: onset 0, offset
    100), a weight of 6 moves it to the scan's (TSG 100)."""
    import numpy as np

    from benchmarks.tsg_weights import grid_scores

    scan = np.zeros(40)
    scan[20] = 1.0
    records = [{"kind": "onset", "hit": 0.0, "refs": [20.0], "probs": _peaked(40, 10).numpy(), "scan": scan},
               {"kind": "offset", "hit": 1.0, "refs": [5.0]}]
    grid = grid_scores(records, pointer_weights=(1.0,), scan_weights=(0.0, 6.0))
    assert grid == {(1.0, 0.0): 50.0, (1.0, 6.0): 100.0}


def test_tsg_weights_records_what_each_written_time_was_chosen_from(tiny_bench, monkeypatch, tmp_path):
    """``record`` answers every val TSG question through the adapter and keeps the pointer's distribution and the scan
    its time was chosen from; re-scored at the default weights they give the written answers' score again."""
    import numpy as np

    from bench.io import load_bench
    from benchmarks import tsg_weights
    from must.answers import parse_timestamp
    from must.model import inference
    from must.models import must_model
    from must.timecode import format_time

    class Chooser:
        """Answers like answer_batch under tsg_scan: the pointer peaks 8 s from the reference, the scan (far more) at
        it."""

        def __init__(self, path, choices):
            assert choices == "constrained"

        def generate(self, requests):
            out = []
            for r in requests:
                ref = int(round(parse_timestamp(r.item["answer"]).value))
                scan = np.zeros(int(r.duration) + 1)
                scan[ref] = 2.0
                pointer = _peaked(len(scan), ref + 8 if ref + 8 < len(scan) else ref - 8)
                # looked up on the module, as answer_batch's rule does, so that record() sees the choice
                second = inference.scanned_hit_second(pointer, scan, pointer_weight=0.5, scan_weight=3.0)
                out.append(format_time(second))
            return out

        def close(self):
            pass

    monkeypatch.setattr(must_model, "MusTAdapter", Chooser)
    records = tsg_weights.record("ckpt/final", str(tiny_bench), "val")
    assert len(records) == (load_bench(tiny_bench, "val").task == "TSG").sum() > 0
    assert all("probs" in r and len(r["scan"]) == len(r["probs"]) for r in records)
    grid = tsg_weights.grid_scores(records, pointer_weights=(0.5, 1.0), scan_weights=(0.0, 3.0))
    written = tsg_weights._tsg(records, np.array([r["hit"] for r in records]))
    assert grid[(0.5, 3.0)] == written == 100.0  # the recorded choice, re-made: the scan's second
    assert grid[(1.0, 0.0)] == 0.0  # the pointer alone is 8 s off everywhere
    assert inference.scanned_hit_second.__name__ == "scanned_hit_second"  # restored
