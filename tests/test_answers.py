import pytest

from must.answers import option_texts, parse_choice, parse_interval_answer, parse_timestamp

QUESTION = (
    "What best describes the musical change at 1:07?\n\n"
    "A: The drums enter\nB: The piano stops\nC: The tempo speeds up\nD: No noticeable change"
)
LONG = (
    "The piece opens with a soft pad. Around the middle there is a build-up.\n\n"
    "The vocal enters at 1:32, after the drums, and continues to the end.\n\nOverall the arrangement is dense."
)


@pytest.mark.parametrize(
    "text,value,status",
    [("The vocal starts at 2:00.", 120, "ok"), ("around 1 minute 5 seconds", 65, "ok"), ("0:33", 33, "ok"),
     ("", None, "unparsed"), ("no idea", None, "unparsed"), ("23:76", None, "impossible"), (LONG, 92, "ok"),
     ("3 instruments, the first at 1:05", 65, "ok"), ("65", 65, "ok"), (None, None, "unparsed"),
     ("x" * 1_000_000, None, "unparsed"), ("\x00\x01 0:12 \x7f", 12, "ok")],
)
def test_timestamp(text, value, status):
    p = parse_timestamp(text)
    assert (p.value, p.status) == (value, status)


@pytest.mark.parametrize(
    "text,value,status",
    [("0:57–1:12", [(57, 72)], "ok"), ("16:48–23:76", None, "impossible"), ("", None, "unparsed"),
     ("From 0:10 to 0:20 and from 1:00 to 1:30.", [(10, 20), (60, 90)], "ok"), ("1:10-1:00", None, "impossible"),
     ("0:50-5:00", [(50, 100)], "ok"), ("4:00-5:00", [], "ok")],
)
def test_intervals_clipped_to_duration(text, value, status):
    p = parse_interval_answer(text, duration=100)
    assert (p.value, p.status) == (value, status)


@pytest.mark.parametrize(
    "text,letter",
    [("C) The male voice shifts", "C"), ("Answer: B", "B"), ("b", "B"), ("(d)", "D"), ("The answer is D.", "D"),
     ("B.", "B"), ("**C**", "C"), ("I think the piano stops here.", "B"), ("A piano enters", None),
     ("E", None), ("", None), ("A or B", None), ("Option C", "C")],
)
def test_choice(text, letter):
    assert parse_choice(text, 4, QUESTION).value == letter


def test_choice_six_options():
    assert parse_choice("Answer: F", 6).value == "F"
    assert parse_choice("Answer: F", 4).value is None


def test_option_texts():
    assert option_texts(QUESTION) == {"A": "The drums enter", "B": "The piano stops", "C": "The tempo speeds up",
                                      "D": "No noticeable change"}


def test_option_clauses_and_labelled_changes_split_what_the_questions_join():
    from must.answers import labelled_changes, option_clauses

    assert option_clauses("The drums enter, the bass stops and the music gets louder.") == [
        "the drums enter", "the bass stops", "the music gets louder"]
    assert option_clauses("No noticeable change") == ["no noticeable change"]
    q = "The following musical changes occur in this piece:\n(X) The tuba enters\n(Y) The drums stop\n\nA: (X) → (Y)"
    assert labelled_changes(q) == {"X": "The tuba enters", "Y": "The drums stop"}
    assert labelled_changes(None) == {}
