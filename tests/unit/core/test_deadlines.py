"""Per-event deadlines in event time."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamproc.core.deadlines import deadline_epoch, expired_on_arrival
from streamproc.core.events import decode_event

EVENT = decode_event(b'{"event_id":"e","occurred_at":"2026-11-28T18:04:15Z","amount":1}')
T0 = EVENT.occurred_at_epoch


def test_the_deadline_counts_from_event_time() -> None:
    """The deadline is occurred_at + sla, however late the event arrives."""
    assert deadline_epoch(T0, 0.5, T0 + 0.2, 2.0) == pytest.approx(T0 + 0.5)
    assert deadline_epoch(T0, 0.5, T0 + 30, 2.0) == pytest.approx(T0 + 0.5)


def test_small_future_skew_is_taken_at_face_value() -> None:
    """occurred_at up to the tolerance ahead of our clock still anchors the deadline."""
    assert deadline_epoch(T0, 0.5, T0 - 1.5, 2.0) == pytest.approx(T0 + 0.5)


def test_large_future_skew_counts_from_arrival() -> None:
    """occurred_at far in the future is not trusted: the deadline is now + sla."""
    now = T0 - 60
    assert deadline_epoch(T0, 0.5, now, 2.0) == pytest.approx(now + 0.5)


@pytest.mark.parametrize(
    ("now", "min_useful", "expected"),
    [
        (T0 + 0.1, 0.2, False),
        (T0 + 0.3, 0.2, False),  # exactly min_useful left
        (T0 + 0.31, 0.2, True),  # less than min_useful left
        (T0 + 0.5, 0.0, True),  # at the deadline
        (T0 + 30, 0.0, True),  # consumed after a long lag
    ],
)
def test_expired_on_arrival(now: float, min_useful: float, expected: bool) -> None:
    """Events past their deadline, or with less than min_useful_s left, are expired."""
    assert expired_on_arrival(T0 + 0.5, now, min_useful) is expected


@given(
    st.floats(min_value=1e9, max_value=2e9),
    st.floats(min_value=-100, max_value=100),
    st.floats(min_value=0.01, max_value=600),
    st.floats(min_value=0, max_value=10),
)
def test_the_deadline_is_never_before_arrival_plus_sla_beyond_the_tolerance(
    now: float, ahead: float, sla: float, tolerance: float
) -> None:
    """Whatever the producer's clock says, a deadline lies at most tolerance + sla ahead and,
    for an event in the past, exactly sla after it occurred."""
    deadline = deadline_epoch(now + ahead, sla, now, tolerance)
    assert deadline <= now + tolerance + sla + 1e-6
    if ahead <= 0:
        assert deadline == now + ahead + sla
