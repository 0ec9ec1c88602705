"""The token bucket and the sliding window behind the API's rate limits."""

from __future__ import annotations

import pytest

from smsline.domain.rates import SlidingWindow, TokenBucket


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    bucket = TokenBucket(rate=10.0, burst=3)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.1)
    assert bucket.take(0.1) == 0.0
    assert bucket.take(0.1) > 0


def test_a_bucket_never_holds_more_than_its_burst() -> None:
    bucket = TokenBucket(rate=1.0, burst=2)
    bucket.take(0.0)
    allowed = [bucket.take(1000.0) == 0.0 for _ in range(3)]
    assert allowed == [True, True, False]


def test_a_window_counts_attempts_and_says_when_the_next_may_go() -> None:
    window = SlidingWindow(limit=2, seconds=60.0)
    assert window.take(0.0) == 0.0
    assert window.take(10.0) == 0.0
    assert window.take(20.0) == pytest.approx(40.0)
    assert window.take(60.0) == 0.0
    assert not window.idle(60.0)
    assert window.idle(130.0)
