"""The replay's rate limit."""

from __future__ import annotations

import pytest

from streamproc.dlq.pacing import Pacer


def sends_within(pacer: Pacer, seconds: float) -> int:
    """How many records a caller that waits as told gets out in ``seconds``."""
    now, sent = 0.0, 0
    while now < seconds:
        wait = pacer.delay(now)
        if wait > 0:
            now += wait
            continue
        pacer.take(now)
        sent += 1
    return sent


@pytest.mark.parametrize(("rate", "burst"), [(20.0, 1), (100.0, 1), (3.0, 5)])
def test_the_rate_holds_over_time(rate: float, burst: int) -> None:
    """Over ten seconds a caller gets out rate x 10 records, plus at most the burst."""
    pacer = Pacer(rate, 0.0, burst=burst)
    sent = sends_within(pacer, 10.0)
    assert rate * 10 <= sent <= rate * 10 + burst


def test_the_delay_is_until_the_next_token() -> None:
    """With the bucket empty the delay is the time one token takes; none once it has come."""
    pacer = Pacer(4.0, 0.0)
    assert pacer.delay(0.0) == 0.0
    pacer.take(0.0)
    assert pacer.delay(0.0) == pytest.approx(0.25)
    assert pacer.delay(0.1) == pytest.approx(0.15)
    assert pacer.delay(0.25) == 0.0


def test_idle_time_does_not_save_up_beyond_the_burst() -> None:
    """After a long pause only ``burst`` records go at once."""
    pacer = Pacer(10.0, 0.0, burst=2)
    pacer.take(0.0)
    for _ in range(2):
        assert pacer.delay(100.0) == 0.0
        pacer.take(100.0)
    assert pacer.delay(100.0) > 0


def test_a_clock_going_back_mints_nothing() -> None:
    """A clock that steps backwards neither adds tokens nor breaks the delay."""
    pacer = Pacer(10.0, 5.0)
    pacer.take(5.0)
    assert pacer.delay(1.0) == pytest.approx(0.1)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_bad_settings_are_refused(rate: float, burst: int) -> None:
    """A rate that is not positive or a burst under one is a ValueError."""
    with pytest.raises(ValueError, match="must be"):
        Pacer(rate, 0.0, burst=burst)
