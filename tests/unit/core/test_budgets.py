"""Concurrency budgets per API Task allocation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamproc.core.budgets import (
    Budget,
    BudgetResolution,
    partition_slots,
    replica_share,
    resolve_limit,
)
from streamproc.errors import ConfigError


def test_allocation_caps_a_larger_configured_limit_with_a_warning() -> None:
    """Configuring more than the allocation allows uses the allocation and says why."""
    resolution = resolve_limit("fraud", configured=20, allocation=8)
    assert (resolution.limit, resolution.source) == (8, "allocation")
    assert resolution.warning is not None
    assert "20" in resolution.warning
    assert "8" in resolution.warning


def test_lower_configured_limit_is_a_quiet_throttle() -> None:
    """Configuring less than the allocation is deliberate and needs no warning."""
    assert resolve_limit("fraud", configured=4, allocation=8) == BudgetResolution(4, "configured")
    assert resolve_limit("fraud", configured=8, allocation=8) == BudgetResolution(8, "configured")


def test_either_source_alone_is_used() -> None:
    """With only one of the two numbers, that one is the limit."""
    assert resolve_limit("t", configured=None, allocation=5) == BudgetResolution(5, "allocation")
    assert resolve_limit("t", configured=3, allocation=None) == BudgetResolution(3, "configured")


@pytest.mark.parametrize(
    ("configured", "allocation", "why"),
    [(None, None, "not configured"), (0, 5, "at least 1"), (None, 0, "allows 0")],
)
def test_missing_or_non_positive_limits_are_config_errors(
    configured: int | None, allocation: int | None, why: str
) -> None:
    """No limit at all, or a limit below 1, fails at start naming the config key."""
    with pytest.raises(ConfigError, match=why) as info:
        resolve_limit("fraud", configured=configured, allocation=allocation)
    assert info.value.key == "tasks.fraud.concurrency"
    with pytest.raises(ConfigError) as info:
        resolve_limit("x", configured=None, allocation=None, config_key="api_tasks.x.limit")
    assert info.value.key == "api_tasks.x.limit"


def test_budget_admits_up_to_the_limit() -> None:
    """try_acquire succeeds limit times, then fails until a release."""
    budget = Budget(2)
    assert budget.try_acquire()
    assert budget.try_acquire()
    assert not budget.try_acquire()
    assert (budget.in_flight, budget.available) == (2, 0)
    budget.release()
    assert budget.available == 1
    assert budget.try_acquire()


def test_release_without_acquire_raises() -> None:
    """The in-flight count never goes below zero."""
    budget = Budget(1)
    with pytest.raises(ValueError, match="without a matching acquire"):
        budget.release()
    budget.try_acquire()
    budget.release()
    with pytest.raises(ValueError, match="without a matching acquire"):
        budget.release()


def test_shrinking_the_limit_does_not_revoke_running_calls() -> None:
    """Below the in-flight count, new acquires wait until enough calls have ended."""
    budget = Budget(4)
    for _ in range(4):
        budget.try_acquire()
    budget.set_limit(2)
    assert budget.in_flight == 4
    assert budget.available == 0
    budget.release()
    budget.release()
    assert not budget.try_acquire()
    budget.release()
    assert budget.try_acquire()
    budget.set_limit(5)
    assert budget.available == 3


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_limits_are_positive_integers(bad: object) -> None:
    """A budget limit is an integer of at least 1."""
    with pytest.raises(ValueError, match="integer >= 1"):
        Budget(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="integer >= 1"):
        Budget(1).set_limit(bad)  # type: ignore[arg-type]


@given(st.lists(st.booleans(), max_size=200), st.integers(min_value=1, max_value=8))
def test_in_flight_never_exceeds_limit_or_goes_negative(ops: list[bool], limit: int) -> None:
    """Any sequence of acquires and (valid) releases keeps 0 <= in_flight <= limit."""
    budget = Budget(limit)
    held = 0
    for acquire in ops:
        if acquire:
            held += budget.try_acquire()
        elif held:
            budget.release()
            held -= 1
        assert 0 <= budget.in_flight == held <= limit
        assert budget.available == limit - held


@pytest.mark.parametrize(
    ("limit", "owned", "total", "expected"),
    [
        (10, range(4), 12, 3),  # 10 slots over 12 partitions: partitions 0 and 6 have none
        (10, range(12), 12, 10),
        (8, [0, 1], 6, 2),
        (8, [2, 3], 6, 3),  # partitions 2 and 5 carry the two spare slots
        (8, [4, 5], 6, 3),
        (2, [0], 12, 1),  # a partition without a slot still lets its owner make progress
        (8, [], 4, 1),
    ],
)
def test_replica_share_is_the_slots_of_its_partitions_with_a_floor_of_one(
    limit: int, owned: range | list[int], total: int, expected: int
) -> None:
    """A replica's share is the sum of its partitions' slots, but at least 1."""
    assert replica_share(limit, owned, total) == expected


@given(st.integers(min_value=1, max_value=500), st.integers(min_value=1, max_value=200))
def test_the_partitions_slots_add_up_to_the_limit(limit: int, total: int) -> None:
    """Every slot belongs to exactly one partition, and no two partitions' slots differ by
    more than one."""
    slots = [partition_slots(limit, p, total) for p in range(total)]
    assert sum(slots) == limit
    assert max(slots) - min(slots) <= 1


@given(
    st.integers(min_value=1, max_value=64),
    st.integers(min_value=1, max_value=48),
    st.data(),
)
def test_replica_shares_never_sum_past_the_limit_when_each_gets_one(
    limit: int, total: int, data: st.DataObject
) -> None:
    """However the partitions are dealt to replicas, the shares of all replicas fit in the
    limit when each replica's partitions carry a slot, and use all of it when every partition
    is owned."""
    replicas = data.draw(st.integers(min_value=1, max_value=total))
    owner = data.draw(st.lists(st.integers(0, replicas - 1), min_size=total, max_size=total))
    owned = [[p for p in range(total) if owner[p] == r] for r in range(replicas)]
    shares = [replica_share(limit, parts, total) for parts in owned]
    if all(sum(partition_slots(limit, p, total) for p in parts) >= 1 for parts in owned):
        assert sum(shares) == limit
    assert all(s >= 1 for s in shares)


@pytest.mark.parametrize(
    ("limit", "owned", "total"), [(0, [1], 2), (5, [3], 2), (5, [-1], 2), (5, [], 0)]
)
def test_replica_share_rejects_impossible_inputs(limit: int, owned: list[int], total: int) -> None:
    """Limits below 1, or owned partitions outside 0..total - 1, are errors."""
    with pytest.raises(ValueError, match="must be"):
        replica_share(limit, owned, total)
