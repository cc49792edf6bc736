"""Per-event deadlines in event time: a fraud decision is only useful within its window.

An event's deadline is ``occurred_at + sla``, not "arrival + sla": an event that waited in
Kafka behind a lag has less time left, and one already past its deadline is decided by the
fallback policy at once ("expired_on_arrival") instead of spending an execute call whose
answer would come too late. The same holds when less than ``min_useful_s`` (about the
expected execute latency) is left.

Clock skew: a producer clock running ahead puts ``occurred_at`` in the future. Up to
``tolerance_s`` ahead is taken at face value (the deadline is then slightly later than
``now + sla``); beyond it the timestamp is not trusted and the deadline is counted from
arrival, ``now + sla``. A producer clock running
behind cannot be told apart from lag and shortens the window, which is the safe direction.
"""

from __future__ import annotations


def deadline_epoch(occurred_at_epoch: float, sla_s: float, now: float, tolerance_s: float) -> float:
    """The event's deadline in epoch seconds: ``occurred_at + sla_s``, or ``now + sla_s`` when
    occurred_at lies more than ``tolerance_s`` ahead of ``now``."""
    if occurred_at_epoch - now > tolerance_s:
        return now + sla_s
    return occurred_at_epoch + sla_s


def expired_on_arrival(deadline: float, now: float, min_useful_s: float) -> bool:
    """Whether an event is past ``deadline``, or too close to it (less than ``min_useful_s``
    left) for an execute to answer in time."""
    return now >= deadline or deadline - now < min_useful_s
