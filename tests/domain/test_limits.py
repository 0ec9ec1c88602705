from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsline.domain.commands import Command
from smsline.domain.limits import RecentRequests, RequestLimits, limit_exceeded

DEFAULT = RequestLimits()


def recent(hour: int = 0, day: int = 0, any_day: int = 0) -> RecentRequests:
    return RecentRequests(info_last_hour=hour, info_last_day=day, any_last_day=any_day)


def test_defaults_follow_the_spec() -> None:
    assert (DEFAULT.info_per_hour, DEFAULT.info_per_day, DEFAULT.any_per_day) == (3, 10, 20)


def test_first_request_is_allowed() -> None:
    for command in Command:
        assert limit_exceeded(command, recent(), DEFAULT) is None


def test_third_info_in_an_hour_is_allowed_fourth_is_not() -> None:
    assert limit_exceeded(Command.INFO, recent(hour=2, day=2, any_day=2), DEFAULT) is None
    assert (
        limit_exceeded(Command.INFO, recent(hour=3, day=3, any_day=3), DEFAULT)
        == "more than 3 CLIENT info an hour"
    )


def test_eleventh_info_in_a_day_is_refused() -> None:
    assert limit_exceeded(Command.INFO, recent(hour=0, day=9, any_day=9), DEFAULT) is None
    assert (
        limit_exceeded(Command.INFO, recent(hour=0, day=10, any_day=10), DEFAULT)
        == "more than 10 CLIENT info a day"
    )


def test_twenty_first_request_of_any_kind_in_a_day_is_refused() -> None:
    assert limit_exceeded(Command.SMS_STOP, recent(any_day=19), DEFAULT) is None
    assert limit_exceeded(Command.SMS_START, recent(any_day=20), DEFAULT) == "more than 20 requests a day"
    assert (
        limit_exceeded(Command.INFO, recent(hour=0, day=0, any_day=20), DEFAULT)
        == "more than 20 requests a day"
    )


def test_info_limits_do_not_apply_to_sms_stop_and_start() -> None:
    busy = recent(hour=3, day=10, any_day=10)
    assert limit_exceeded(Command.SMS_STOP, busy, DEFAULT) is None
    assert limit_exceeded(Command.SMS_START, busy, DEFAULT) is None


def test_configured_limits_are_used() -> None:
    limits = RequestLimits(info_per_hour=1, info_per_day=2, any_per_day=5)
    assert limit_exceeded(Command.INFO, recent(hour=1, day=1, any_day=1), limits) == (
        "more than 1 CLIENT info an hour"
    )
    assert limit_exceeded(Command.SMS_STOP, recent(any_day=5), limits) == ("more than 5 requests a day")


@pytest.mark.parametrize("field", ["info_per_hour", "info_per_day", "any_per_day"])
def test_limits_below_one_are_rejected(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RequestLimits(**{field: 0})


counts = st.integers(0, 30)


@settings(max_examples=150)
@given(st.sampled_from(list(Command)), counts, counts, counts)
def test_request_is_refused_exactly_when_a_count_reached_its_limit(
    command: Command, hour: int, day: int, any_day: int
) -> None:
    reason = limit_exceeded(command, recent(hour, day, any_day), DEFAULT)
    over = any_day >= 20 or (command is Command.INFO and (hour >= 3 or day >= 10))
    assert (reason is not None) == over
