"""Per-event deadlines in event time: a fraud decision is only useful within its window.

An event's deadline is ``occurred_at + sla``, not "arrival + sla": an event that waited in
Kafka behind a lag has less time left, and one already past its deadline is decided by the
fallback policy at once ("expired_on_arrival") instead of spending an execute call whose
answer would come too late. The same holds when less than ``min_useful_s`` (about the
expected execute latency) is left.

Clock skew: a producer clock running ahead puts ``occurred_at`` in the future. Up to
``future_tolerance_s`` ahead is taken at face value (the deadline is then slightly later
than ``now + sla``); beyond it the timestamp is not trusted and the deadline is counted from
arrival, ``now + sla``, and marked ``skewed`` so it can be counted. A producer clock running
behind cannot be told apart from lag and shortens the window, which is the safe direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from streamproc.core.events import TransactionEvent

ArrivalClass: TypeAlias = Literal["ok", "expired"]

DEFAULT_FUTURE_TOLERANCE_S: Final = 2.0


@dataclass(frozen=True, slots=True)
class Deadline:
    """An absolute deadline in epoch seconds."""

    at_epoch: float
    skewed: bool = False

    def remaining(self, now: float) -> float:
        """Seconds left; negative once passed."""
        return self.at_epoch - now

    def expired(self, now: float) -> bool:
        return now >= self.at_epoch

    def useful(self, now: float, min_useful_s: float) -> bool:
        """Whether at least ``min_useful_s`` is left: enough for a call to answer in time."""
        return self.at_epoch - now >= min_useful_s


def event_deadline(
    event: TransactionEvent,
    sla_s: float,
    now: float,
    *,
    future_tolerance_s: float = DEFAULT_FUTURE_TOLERANCE_S,
) -> Deadline:
    """``occurred_at + sla_s``, or ``now + sla_s`` when occurred_at is implausibly ahead."""
    if sla_s <= 0:
        raise ValueError(f"sla_s must be positive, got {sla_s}")
    if future_tolerance_s < 0:
        raise ValueError(f"future_tolerance_s cannot be negative, got {future_tolerance_s}")
    if event.occurred_at_epoch - now > future_tolerance_s:
        return Deadline(now + sla_s, skewed=True)
    return Deadline(event.occurred_at_epoch + sla_s)


def deadline_epoch(occurred_at_epoch: float, sla_s: float, now: float, tolerance_s: float) -> float:
    """:func:`event_deadline`'s moment alone, for the hot path: no object, no checks of the
    (validated once, at start) SLA and tolerance."""
    if occurred_at_epoch - now > tolerance_s:
        return now + sla_s
    return occurred_at_epoch + sla_s


def classify_on_arrival(
    event: TransactionEvent,
    sla_s: float,
    now: float,
    min_useful_s: float,
    *,
    future_tolerance_s: float = DEFAULT_FUTURE_TOLERANCE_S,
) -> ArrivalClass:
    """``"expired"`` when the event cannot be scored in time any more, else ``"ok"``."""
    if min_useful_s < 0:
        raise ValueError(f"min_useful_s cannot be negative, got {min_useful_s}")
    deadline = event_deadline(event, sla_s, now, future_tolerance_s=future_tolerance_s)
    return "ok" if deadline.useful(now, min_useful_s) and not deadline.expired(now) else "expired"
