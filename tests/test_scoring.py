"""End-to-end scoring: adversarial outputs, missing predictions, MUSIC-AVQA on the official file."""

import json

import pandas as pd
import pytest

from bench.io import load_bench, read_avqa_json, read_predictions
from bench.scoring import score_item, score_predictions
from must.cli import main
from must.schema import BenchFormatError

OPTS = "\n\nA: x\nB: y\nC: z\nD: w"
ROWS = [  # id, task, qa_type, question, answer, answers, prediction
    ("t1", "TSG", "onset", "When does the vocal first start to play?", "2:00", ["2:00"], "The vocal starts at 2:00."),
    ("t2", "TSG", "onset", "When does the piano first start to play?", "1:00", ["1:00"], "0:33"),
    ("t3", "TSG", "offset", "When does the bass finally stop playing?", "1:30", ["1:30"], "around 1 minute 32 seconds"),
    ("t4", "TSG", "offset", "When does the drums finally stop playing?", "0:10", ["0:10"], ""),
    ("l1", "LTR", None, "What best describes the musical change at 1:07?" + OPTS, "C", ["C"], "C) The male voice shifts"),
    ("l2", "LTR", None, "What best describes the musical change at 0:07?" + OPTS, "A", ["A"], "Answer: B"),
    ("g1", "GTO", None, "Which of the following options represents the correct chronological order?", "F", ["F"], "F"),
    ("m1", "MTR", None, "When is(are) the highest arousal duration(s) in this audio?", "0:57-1:12", ["0:57-1:12"], "0:57–1:12"),
    ("m2", "MTR", None, "When is(are) the highest arousal duration(s) in this audio?", "0:10-0:20", ["0:10-0:20"], "16:48–23:76"),
    ("m3", "MTR", None, "When is(are) the lowest arousal duration(s) in this audio?", "0:00-0:10, 0:40-0:50",
     ["0:00-0:10", "0:40-0:50"], "0:00-0:10"),
    ("d1", "TAD", None, "Describe the musical change at 0:30 in detail.", "The drums enter at once",
     ["The drums enter at once"], "the drums enter at once"),
    ("d2", "TAD", None, "Describe the musical change at 0:50 in detail.", "The bass stops", ["The bass stops"], ""),
]


@pytest.fixture
def fixture_files(tmp_path):
    df = pd.DataFrame([dict(id=r[0], track_id="trk" + r[0], task=r[1], category=None, qa_type=r[2], question=r[3],
                            answer=r[4], answers=r[5], split="test") for r in ROWS])
    df.to_parquet(tmp_path / "bench.parquet")
    with open(tmp_path / "pred.jsonl", "w") as f:
        for r in ROWS[:-1]:  # d2 has no prediction at all
            f.write(json.dumps({"id": r[0], "prediction": r[6]}) + "\n")
    return tmp_path


def test_adversarial_outputs_hand_computed(fixture_files):
    bench = load_bench(fixture_files / "bench.parquet")
    preds = read_predictions(fixture_files / "pred.jsonl")
    results, s = score_predictions(bench, preds)
    assert s["TSG_onset"] == 50.0 and s["TSG_offset"] == 50.0 and s["TSG"] == 50.0
    assert s["LTR"] == 50.0 and s["GTO"] == 100.0
    # m1 exact (1, 1), m2 impossible (0, 0), m3 one of two regions: IoU 10/20, F1 2/3
    assert s["MTR_IoU"] == pytest.approx(100 * (1 + 0 + 0.5) / 3)
    assert s["MTR_F1"] == pytest.approx(100 * (1 + 0 + 2 / 3) / 3)
    assert s["TAD_METEOR"] == pytest.approx(100 * (0.996 + 0) / 2)
    assert s["TAD_semantic"] == pytest.approx(50.0, abs=0.01)
    assert s["unparsed"] == {"TSG": 1, "LTR": 0, "GTO": 0, "MTR": 1, "TAD": 0}
    assert s["missing"]["TAD"] == 1
    assert s["n"]["total"] == len(ROWS)
    sub = [s[k] for k in ("TSG_onset", "TSG_offset", "LTR", "TAD_METEOR", "TAD_semantic", "GTO", "MTR_IoU", "MTR_F1")]
    assert s["overall"] == pytest.approx(sum(sub) / 8)
    by_id = {r.id: r for r in results}
    assert by_id["t3"].scores["error"] == 2.0 and by_id["t3"].parsed == "1:32"
    assert by_id["m2"].status == "impossible"


def test_score_item_never_raises_on_garbage():
    items = [dict(id="x", task="MTR", question="q", answers=["0:10-0:20"], duration=60.0),
             dict(id="y", task="AVQA", question="How many?", answers=["two"], category="Audio", qa_type="Counting"),
             dict(id="z", task="TSG", question="When does it first start?", answers=["0:10"], qa_type="onset"),
             dict(id="w", task="LTR", question="Q?\n\nA: a\nB: b\nC: c\nD: d", answers=["A"])]
    for item in items:
        for garbage in ["\x00" * 50, "é" * 10_000, "9" * 100_000, b"\xff\xfe bytes", 12345, "x" * 1_000_000]:
            r = score_item(item, garbage)
            assert max(r.scores.values(), default=0.0) == 0.0 or item["task"] == "TSG", (item["task"], garbage[:20])


def test_cli_writes_json_with_keys(fixture_files):
    out = fixture_files / "out.json"
    assert main(["score", str(fixture_files / "pred.jsonl"), "--bench", str(fixture_files / "bench.parquet"),
                 "--json", str(out)]) == 0
    s = json.loads(out.read_text())
    for key in ("TSG_onset", "TSG_offset", "TSG", "LTR", "TAD_METEOR", "TAD_semantic", "TAD", "GTO", "MTR_IoU",
                "MTR_F1", "MTR", "overall", "n", "unparsed"):
        assert key in s
    assert "AVQA" not in s
    assert s["meteor_matching"] in ("wordnet", "exact+stem")


def test_malformed_predictions_name_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"id": "a", "prediction": "1:00"}\n{"id": "b", "predict\n')
    with pytest.raises(BenchFormatError, match=r"bad.jsonl: line 2"):
        read_predictions(p)
    q = tmp_path / "cols.jsonl"
    q.write_text('{"id": "a", "answer": "1:00"}\n')
    with pytest.raises(BenchFormatError, match=r"line 1: needs 'id'"):
        read_predictions(q)


def test_bad_bench_files(tmp_path):
    base = dict(track_id="t", category=None, qa_type=None, question="q", answer="A", answers=["A"], split="test")
    pd.DataFrame([dict(id="1", task="LTR", **base), dict(id="1", task="LTR", **base)]).to_parquet(tmp_path / "dup.parquet")
    with pytest.raises(BenchFormatError, match=r"dup.parquet: row 1: duplicate id '1'"):
        load_bench(tmp_path / "dup.parquet")
    pd.DataFrame([dict(id="1", task="LTR", **base), dict(id="2", task="XYZ", **base)]).to_parquet(tmp_path / "task.parquet")
    with pytest.raises(BenchFormatError, match=r"row 1 \(id '2'\): unknown task 'XYZ'"):
        load_bench(tmp_path / "task.parquet")
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(BenchFormatError, match="not a readable Parquet"):
        load_bench(tmp_path / "corrupt.parquet")
    pd.DataFrame([dict(id="1")]).to_parquet(tmp_path / "cols.parquet")
    with pytest.raises(BenchFormatError, match="missing column"):
        load_bench(tmp_path / "cols.parquet")


def test_cli_reports_bad_file_and_exits_2(tmp_path, capsys):
    (tmp_path / "p.jsonl").write_text("{not json}\n")
    pd.DataFrame([dict(id="1", track_id="t", task="LTR", question="q", answer="A")]).to_parquet(tmp_path / "b.parquet")
    assert main(["score", str(tmp_path / "p.jsonl"), "--bench", str(tmp_path / "b.parquet")]) == 2


def test_avqa_placeholders_filled(avqa_test_file):
    df = read_avqa_json(avqa_test_file)
    row = df[df.id == "28"].iloc[0]
    assert row.question == "Is the violin in the video always playing?"
    assert (row.category, row.qa_type, row.answer) == ("Audio-Visual", "Existential", "no")


def test_avqa_always_yes_subset_by_hand(avqa_test_file, tmp_path):
    # First 16 questions of avqa-test.json, read off by hand:
    #   Audio Counting 1 (answer "one"); AV Existential 7 (4 yes); AV Counting 6 (0 yes);
    #   AV Location 1 ("violin"); AV Comparative 1 ("yes").
    bench = read_avqa_json(avqa_test_file).iloc[:16]
    _, s = score_predictions(bench, {i: "yes" for i in bench.id})
    a = s["AVQA"]
    assert a["Audio Counting"] == 0.0
    assert a["Audio-Visual Existential"] == pytest.approx(400 / 7)
    assert a["Audio-Visual Counting"] == 0.0
    assert a["Audio-Visual Location"] == 0.0
    assert a["Audio-Visual Comparative"] == 100.0
    assert a["Audio"] == 0.0
    assert a["Audio-Visual"] == pytest.approx(100 * 5 / 15)
    assert a["overall"] == pytest.approx(100 * 5 / 16)


def test_avqa_always_yes_full_file_via_cli(avqa_test_file, tmp_path):
    records = json.loads(avqa_test_file.read_text())
    with open(tmp_path / "yes.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps({"question_id": r["question_id"], "prediction": "Yes."}) + "\n")
    assert main(["score", str(tmp_path / "yes.jsonl"), "--bench", str(avqa_test_file), "--json", str(tmp_path / "o.json")]) == 0
    s = json.loads((tmp_path / "o.json").read_text())
    assert s["n"]["AVQA"] == 9129
    assert s["AVQA"]["overall"] == pytest.approx(100 * 2387 / 9129)  # 2387 "yes" answers in the file
    assert "overall" not in s  # no MusTBench task present
