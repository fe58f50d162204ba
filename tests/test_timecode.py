import pytest

from must.timecode import (
    ImpossibleTimeError, find_intervals, format_interval, format_intervals, format_time, parse_interval,
    parse_intervals, parse_time,
)


@pytest.mark.parametrize(
    "text,seconds",
    [("1:05", 65), ("01:05", 65), ("10:00", 600), ("1:02:03", 3723), ("1:05.5", 65.5), ("65", 65), ("65.25", 65.25),
     ("65 s", 65), ("65s", 65), ("65 seconds", 65), ("1 minute 5 seconds", 65), ("1 min 5 sec", 65), ("1m05s", 65),
     ("2 minutes", 120), ("1 hour 2 minutes", 3720), ("1 minute and 5 seconds", 65)],
)
def test_parse_time_forms(text, seconds):
    assert parse_time(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["23:76", "1:60", "1:61:00", "1 minute 75 seconds"])
def test_impossible_times(text):
    with pytest.raises(ImpossibleTimeError):
        parse_time(text)


@pytest.mark.parametrize("text", ["", "abc", "1:05 and 1:10", "1:5"])
def test_not_a_time(text):
    with pytest.raises(ValueError):
        parse_time(text)


@pytest.mark.parametrize("sep", ["-", "–", "—", " to ", " - ", "~"])
def test_interval_separators(sep):
    assert parse_interval(f"0:57{sep}1:12") == (57, 72)


def test_interval_lists():
    assert parse_intervals("0:10-0:20, 0:40-0:50; 1:00 to 1:10 and 1:20—1:30") == [(10, 20), (40, 50), (60, 70), (80, 90)]
    assert parse_intervals("between 0:10 and 0:20") == [(10, 20)]
    # "and" joins two times into an interval only after "between"
    assert [(a.seconds, b.seconds) for a, b in find_intervals("0:10 and 0:40-0:50")] == [(40, 50)]


def test_impossible_intervals():
    with pytest.raises(ImpossibleTimeError):
        parse_interval("16:48–23:76")
    with pytest.raises(ImpossibleTimeError):
        parse_interval("1:10-1:00")


def test_format():
    assert format_time(0) == "0:00"
    assert format_time(65.4) == "1:05"
    assert format_time(59.6) == "1:00"
    assert format_time(3723) == "1:02:03"
    assert format_interval(57, 72) == "0:57-1:12"
    assert format_intervals([(57, 72), (100, 130)]) == "0:57-1:12, 1:40-2:10"
    with pytest.raises(ValueError):
        format_time(-1)


def test_round_trip():
    for s in (0, 9, 61, 599, 3599, 3600, 7265):
        assert parse_time(format_time(s)) == s
