"""Durations: `500ms`, `30s`, `5m`, `1h`; negatives, zero and garbage get clear errors."""

from __future__ import annotations

import pytest

from loom.pipeline.durations import format_duration, parse_duration
from loom.pipeline.errors import ArgError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("5m", 300), ("1h", 3600), ("1.5s", 1.5), (" 2s ", 2)],
)
def test_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("-5s", "must not be negative"),
        ("0s", "must be longer than zero"),
        ("5", "must be a duration"),
        (5, "needs a unit: write '5s'"),
        ("5 minutes", "must be a duration"),
        ("1d", "must be a duration"),
        (True, "must be a duration"),
        (None, "must be a duration"),
        ("", "must be a duration"),
    ],
)
def test_rejections(value: object, problem: str) -> None:
    with pytest.raises(ArgError, match=problem) as info:
        parse_duration(value, key="timeout")
    assert info.value.key == "timeout"


def test_zero_where_it_is_meaningful() -> None:
    assert parse_duration("0ms", allow_zero=True) == 0


@pytest.mark.parametrize("seconds", [0.5, 30, 300, 3600, 90])
def test_format_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds
