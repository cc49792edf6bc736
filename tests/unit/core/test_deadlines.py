"""Per-event deadlines in event time."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamproc.core.deadlines import (
    Deadline,
    classify_on_arrival,
    deadline_epoch,
    event_deadline,
)
from streamproc.core.decisions import rfc3339_utc
from streamproc.core.events import TransactionEvent, decode_event

EVENT = decode_event(b'{"event_id":"e","occurred_at":"2026-11-28T18:04:15Z","amount":1}')
T0 = EVENT.occurred_at_epoch


def test_deadline_counts_from_event_time() -> None:
    """The deadline is occurred_at + sla, however late the event arrives."""
    deadline = event_deadline(EVENT, 0.5, now=T0 + 0.2)
    assert deadline == Deadline(T0 + 0.5)
    assert deadline.remaining(T0 + 0.2) == pytest.approx(0.3)
    assert not deadline.expired(T0 + 0.49)
    assert deadline.expired(T0 + 0.5)
    assert deadline.remaining(T0 + 1) == pytest.approx(-0.5)


def test_small_future_skew_is_taken_at_face_value() -> None:
    """occurred_at up to the tolerance ahead of our clock still anchors the deadline."""
    deadline = event_deadline(EVENT, 0.5, now=T0 - 1.5, future_tolerance_s=2.0)
    assert deadline == Deadline(T0 + 0.5)
    assert not deadline.skewed


def test_large_future_skew_counts_from_arrival() -> None:
    """occurred_at far in the future is not trusted: the deadline is now + sla, marked skewed."""
    now = T0 - 60
    deadline = event_deadline(EVENT, 0.5, now=now, future_tolerance_s=2.0)
    assert deadline.at_epoch == pytest.approx(now + 0.5)
    assert deadline.skewed


@pytest.mark.parametrize(
    ("now", "min_useful", "expected"),
    [
        (T0 + 0.1, 0.2, "ok"),
        (T0 + 0.3, 0.2, "ok"),  # exactly min_useful left
        (T0 + 0.31, 0.2, "expired"),  # less than min_useful left
        (T0 + 0.5, 0.0, "expired"),  # at the deadline
        (T0 + 30, 0.0, "expired"),  # consumed after a long lag
        (T0 - 60, 0.2, "ok"),  # skewed producer: counted from arrival
    ],
)
def test_classify_on_arrival(now: float, min_useful: float, expected: str) -> None:
    """Events past their deadline, or with less than min_useful_s left, are expired on arrival."""
    assert classify_on_arrival(EVENT, 0.5, now, min_useful) == expected


def test_useful_compares_remaining_with_the_minimum() -> None:
    """useful() holds while at least min_useful_s remain."""
    deadline = Deadline(10.0)
    assert deadline.useful(9.0, 1.0)
    assert not deadline.useful(9.5, 1.0)


@pytest.mark.parametrize(
    ("sla", "min_useful", "tolerance", "why"),
    [
        (0.0, 0.0, 1.0, "sla_s"),
        (-1.0, 0.0, 1.0, "sla_s"),
        (1.0, -0.1, 1.0, "min_useful_s"),
        (1.0, 0.0, -1.0, "tolerance"),
    ],
)
def test_invalid_arguments_are_rejected(
    sla: float, min_useful: float, tolerance: float, why: str
) -> None:
    """A non-positive SLA, or a negative minimum or tolerance, is an error."""
    event: TransactionEvent = EVENT
    with pytest.raises(ValueError, match=why):
        classify_on_arrival(event, sla, T0, min_useful, future_tolerance_s=tolerance)


@given(
    st.floats(min_value=1e9, max_value=2e9),
    st.floats(min_value=-100, max_value=100),
    st.floats(min_value=0.01, max_value=600),
    st.floats(min_value=0, max_value=10),
)
def test_the_hot_path_deadline_is_the_event_deadline(
    now: float, ahead: float, sla: float, tolerance: float
) -> None:
    """deadline_epoch (no object) gives the moment event_deadline gives."""
    event = decode_event(
        orjson.dumps({"event_id": "e", "occurred_at": rfc3339_utc(now + ahead), "amount": 1})
    )
    expected = event_deadline(event, sla, now, future_tolerance_s=tolerance).at_epoch
    assert deadline_epoch(event.occurred_at_epoch, sla, now, tolerance) == expected
