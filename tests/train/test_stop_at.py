"""stop_at is the next occurrence of a UTC HH:MM after the run starts, also across midnight."""

from __future__ import annotations

import calendar

import pytest

from emostream.errors import UserError
from emostream.train.text import stop_deadline


def utc(hh: int, mm: int, day: int = 1) -> float:
    return float(calendar.timegm((2026, 12, day, hh, mm, 0, 0, 0, 0)))


def test_stop_after_midnight_is_tomorrow_not_already_past() -> None:
    assert stop_deadline("01:30", utc(23, 50)) == utc(1, 30, day=2)


def test_stop_later_today_stays_today() -> None:
    assert stop_deadline("22:50", utc(20, 41)) == utc(22, 50)


def test_a_stop_time_just_passed_means_tomorrow() -> None:
    assert stop_deadline("23:49", utc(23, 50)) == utc(23, 49, day=2)


def test_unset_never_stops_and_bad_times_fail_with_the_format() -> None:
    assert stop_deadline("", utc(12, 0)) is None
    for bad in ("25:00", "1230", "ab:cd", "12:60"):
        with pytest.raises(UserError, match="HH:MM"):
            stop_deadline(bad, utc(12, 0))
