"""Quiet hours in each recipient's own time zone, across midnight and DST changes."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsline.domain.quiet_hours import (
    Window,
    format_hhmm,
    is_known_zone,
    is_open,
    next_opening,
    parse_hhmm,
)

UTC = dt.UTC
DAY = Window(9 * 60, 22 * 60)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_parse_and_format() -> None:
    assert parse_hhmm("09:00") == 540
    assert parse_hhmm("9:30") == 570
    assert parse_hhmm("24:00") == 1440
    assert format_hhmm(1320) == "22:00"
    for bad in ("25:00", "9", "09:60", "24:01", "ab:cd"):
        with pytest.raises(ValueError, match="not a time of day"):
            parse_hhmm(bad)


def test_the_window_is_judged_in_the_recipients_zone() -> None:
    now = at("2026-03-10 22:30")  # Vladivostok 08:30, Moscow 01:30, Kaliningrad 00:30
    assert not is_open(DAY, "Asia/Vladivostok", now)
    assert next_opening(DAY, "Asia/Vladivostok", now) == at("2026-03-10 23:00")
    assert next_opening(DAY, "Europe/Kaliningrad", now) == at("2026-03-11 07:00")
    assert next_opening(DAY, "Europe/Moscow", now) == at("2026-03-11 06:00")
    assert is_open(DAY, "Asia/Vladivostok", at("2026-03-10 23:00"))
    assert not is_open(DAY, "Asia/Vladivostok", at("2026-03-11 12:00"))  # 22:00 there: closed


def test_an_unknown_zone_is_moscow() -> None:
    assert not is_known_zone("Mars/Olympus")
    assert is_known_zone("Asia/Vladivostok")
    now = at("2026-03-10 05:00")
    assert is_open(DAY, "Mars/Olympus", now) == is_open(DAY, "Europe/Moscow", now)


def test_a_window_across_midnight_and_an_always_open_one() -> None:
    night = Window(22 * 60, 6 * 60)
    assert is_open(night, "UTC", at("2026-01-01 23:00"))
    assert is_open(night, "UTC", at("2026-01-01 05:59"))
    assert not is_open(night, "UTC", at("2026-01-01 06:00"))
    assert next_opening(night, "UTC", at("2026-01-01 12:00")) == at("2026-01-01 22:00")
    always = Window(0, 0)
    assert always.always_open
    assert is_open(always, "UTC", at("2026-01-01 03:00"))
    assert Window(0, 24 * 60).always_open


def test_dst_days_have_their_real_length() -> None:
    # New York springs forward on 2026-03-08 at 02:00 local: 09:00 EDT is 13:00 UTC.
    assert next_opening(DAY, "America/New_York", at("2026-03-08 08:00")) == at("2026-03-08 13:00")
    # The day before, 09:00 EST is 14:00 UTC.
    assert next_opening(DAY, "America/New_York", at("2026-03-07 08:00")) == at("2026-03-07 14:00")
    # A window opening in the skipped hour opens when the clocks jump (03:00 EDT = 07:00 UTC).
    gap = Window(2 * 60 + 30, 5 * 60)
    assert next_opening(gap, "America/New_York", at("2026-03-08 05:00")) == at("2026-03-08 07:00")


ZONES = st.sampled_from(
    ["Europe/Moscow", "Asia/Vladivostok", "Europe/Kaliningrad", "America/New_York", "Europe/London",
     "Australia/Lord_Howe", "Asia/Kathmandu", "UTC"]
)
MINUTES = st.integers(min_value=0, max_value=24 * 60)
INSTANTS = st.datetimes(min_value=dt.datetime(2024, 1, 1), max_value=dt.datetime(2028, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC)
)


@settings(max_examples=300, deadline=None)
@given(start=MINUTES, end=MINUTES, zone=ZONES, now=INSTANTS)
def test_next_opening_is_open_and_nothing_earlier_is(
    start: int, end: int, zone: str, now: dt.datetime
) -> None:
    window = Window(start, end)
    opening = next_opening(window, zone, now)
    assert opening >= now
    assert is_open(window, zone, opening)
    assert opening - now <= dt.timedelta(days=2)
    if opening > now:
        # Every whole minute between now and the opening is closed.
        probe = now.replace(second=0, microsecond=0)
        step = dt.timedelta(minutes=1)
        checked = 0
        while probe + step < opening and checked < 3000:
            probe += step
            checked += 1
            assert not is_open(window, zone, probe), (probe, opening)


@settings(max_examples=300, deadline=None)
@given(start=MINUTES, end=MINUTES, zone=ZONES, now=INSTANTS)
def test_open_means_the_local_time_is_inside(start: int, end: int, zone: str, now: dt.datetime) -> None:
    window = Window(start, end)
    local = now.astimezone(ZoneInfo(zone))
    minute = local.hour * 60 + local.minute
    opens, closes = start % 1440, end % 1440
    if window.always_open:
        assert is_open(window, zone, now)
    elif opens < closes:
        assert is_open(window, zone, now) == (opens <= minute < closes)
    else:
        assert is_open(window, zone, now) == (minute >= opens or minute < closes)
