"""Admission: arrival order while the queue drains, newest first under a standing queue,
and shedding of what can no longer finish in time, early rather than at the deadline."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from streamproc.core.admission import AdmissionPolicy, AdmissionQueue, Plan

# Executes take 20 ms (p95: 25 ms) on 2 slots: one slot frees every 10 ms.
PLAN = Plan(quantile_s=0.025, typical_s=0.020, slots=2)


@dataclass
class Item:
    name: str
    deadline: float
    waiting: bool = True


def queue(*, lifo: bool = True) -> AdmissionQueue[Item]:
    return AdmissionQueue(AdmissionPolicy(adaptive_lifo=lifo, standing_ms=100), now=0.0)


def test_a_short_queue_is_served_in_arrival_order() -> None:
    """While the queue has been empty within standing_ms, the oldest event goes first."""
    q = queue()
    for i, name in enumerate("abc"):
        q.push(Item(name, deadline=10.0), now=0.001 * i)
    shed: list[Item] = []
    assert [q.pop(0.01, PLAN, shed).name for _ in range(3)] == ["a", "b", "c"]  # type: ignore[union-attr]
    assert shed == []


def test_a_standing_queue_is_served_newest_first() -> None:
    """A queue not empty for standing_ms serves the newest event: it has the most time left."""
    q = queue()
    q.push(Item("old", deadline=10.0), now=0.0)
    q.push(Item("mid", deadline=10.0), now=0.05)
    q.push(Item("new", deadline=10.0), now=0.12)
    assert q.standing(0.12)
    shed: list[Item] = []
    item = q.pop(0.12, PLAN, shed)
    assert item is not None
    assert item.name == "new"


def test_without_adaptive_lifo_a_standing_queue_stays_in_arrival_order() -> None:
    """adaptive_lifo = false: arrival order, always."""
    q = queue(lifo=False)
    q.push(Item("old", deadline=10.0), now=0.0)
    q.push(Item("new", deadline=10.0), now=0.2)
    item = q.pop(0.2, PLAN, [])
    assert item is not None
    assert item.name == "old"


def test_an_event_that_cannot_finish_in_time_is_shed_not_started() -> None:
    """A waiting event with less than the service quantile left is shed, not executed."""
    q = queue()
    q.push(Item("late", deadline=0.02), now=0.0)
    q.push(Item("fine", deadline=1.0), now=0.0)
    shed: list[Item] = []
    item = q.pop(0.0, PLAN, shed)
    assert item is not None
    assert item.name == "fine"
    assert [i.name for i in shed] == ["late"]


def test_under_a_standing_queue_the_old_end_is_shed_as_soon_as_it_would_miss() -> None:
    """Under newest-first the oldest waits behind every other: it is shed once that wait
    plus an execute no longer fits, long before its deadline."""
    q = queue()
    for i in range(30):
        q.push(Item(f"e{i}", deadline=0.25 + 0.001 * i), now=0.001 * i)
    shed: list[Item] = []
    q.sweep(0.15, PLAN, shed)  # standing: not empty for 150 ms
    # Behind k others the wait is k * 10 ms: the oldest ones cannot make 0.25 s any more.
    expected, remaining = [], [f"e{i}" for i in range(30)]
    while remaining:
        ahead = len(remaining) - 1
        if 0.15 + ahead * 0.010 + 0.025 <= 0.25 + 0.001 * int(remaining[0][1:]):
            break
        expected.append(remaining.pop(0))
    assert expected  # the standing queue holds more than can be served in time
    assert [i.name for i in shed] == expected
    assert all(item.deadline > 0.15 for item in shed)  # shed before their deadline
    assert len(q) == 30 - len(expected)


def test_a_long_deadline_backlog_is_not_shed() -> None:
    """A backlog whose deadline is far off is kept whole: every event can still be scored."""
    q = queue()
    for i in range(1000):
        q.push(Item(f"e{i}", deadline=600.0), now=0.0)
    shed: list[Item] = []
    q.sweep(5.0, PLAN, shed)
    assert shed == []
    assert len(q) == 1000


def test_items_no_longer_waiting_are_skipped() -> None:
    """An item decided meanwhile (its deadline passed, or its partition revoked) is dropped."""
    q = queue()
    gone = Item("gone", deadline=10.0)
    q.push(gone, now=0.0)
    q.push(Item("here", deadline=10.0), now=0.0)
    gone.waiting = False
    shed: list[Item] = []
    item = q.pop(0.0, PLAN, shed)
    assert item is not None
    assert item.name == "here"
    assert shed == []
    assert q.pop(0.0, PLAN, shed) is None


def test_feasibility_at_arrival_counts_the_events_ahead() -> None:
    """Behind k others an arrival starts after about (k + 1) typical / slots; in arrival
    order that can already be too late, newest first it is not."""
    fifo = queue(lifo=False)
    for i in range(20):
        fifo.push(Item(f"e{i}", deadline=10.0), now=0.0)
    # 20 ahead on 2 slots of 20 ms: starts after 210 ms, done after 235 ms.
    assert not fifo.feasible(0.2, 0.0, PLAN)
    assert fifo.feasible(0.3, 0.0, PLAN)
    lifo = queue()
    for i in range(20):
        lifo.push(Item(f"e{i}", deadline=10.0), now=0.0)
    assert lifo.standing(0.2)
    assert lifo.feasible(0.2 + 0.05, 0.2, PLAN)


@given(
    st.lists(
        st.tuples(st.floats(0, 0.02), st.floats(0.0, 1.0), st.booleans()),
        min_size=1,
        max_size=200,
    )
)
def test_nothing_popped_is_already_predicted_to_miss_and_nothing_is_lost(
    steps: list[tuple[float, float, bool]],
) -> None:
    """Every item pushed is popped, shed, or still queued, exactly once; a popped item always
    had the service quantile left before its deadline."""
    q = queue()
    now = 0.0
    pushed: list[Item] = []
    popped: list[Item] = []
    shed: list[Item] = []
    for gap, slack, pop in steps:
        now += gap
        if pop:
            item = q.pop(now, PLAN, shed)
            if item is not None:
                assert now + PLAN.quantile_s <= item.deadline
                popped.append(item)
        else:
            item = Item(str(len(pushed)), deadline=now + slack)
            pushed.append(item)
            q.push(item, now)
    rest = q.drain()
    ids = [id(i) for i in popped + shed + rest]
    assert sorted(ids) == sorted(id(i) for i in pushed)
