"""Concurrency budgets: how many execute calls may be in flight per API Task allocation.

A real-time (hotbot) allocation refuses work beyond its concurrency with a 429 rather than
queueing it, so sending more than the allocation allows only buys errors and retries. The
budget is therefore a plain counter the processor consults before each call: acquire a slot
or wait (or pause the partition), release it when the call ends.

The limit comes from configuration, from the allocation read from the Control Room, or both
(the lower wins: see :func:`resolve_limit`). :func:`replica_share` optionally splits one
allocation across consumer replicas by the input partitions each owns.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from streamproc.errors import ConfigError

BudgetSource = Literal["configured", "allocation"]


@dataclass(frozen=True, slots=True)
class BudgetResolution:
    """The limit in force for one task, where it came from, and anything worth warning about."""

    limit: int
    source: BudgetSource
    warning: str | None = None


def resolve_limit(
    task_name: str,
    *,
    configured: int | None,
    allocation: int | None,
    config_key: str | None = None,
) -> BudgetResolution:
    """The concurrency limit for ``task_name``: the lower of the configured and allocated ones.

    Configuring more than the allocation allows would only produce 429s, so the allocation
    caps it, with a warning naming both numbers. Configuring less is a deliberate throttle
    and needs no warning. Neither, or a value below 1, is a :class:`ConfigError` naming
    ``config_key`` (default ``tasks.<task_name>.concurrency``).
    """
    key = config_key or f"tasks.{task_name}.concurrency"
    if configured is not None and configured < 1:
        raise ConfigError(key, f"must be at least 1, got {configured}")
    if allocation is not None and allocation < 1:
        raise ConfigError(
            key, f"the allocation for {task_name!r} allows {allocation} concurrent calls"
        )
    if allocation is None:
        if configured is None:
            raise ConfigError(
                key, "not configured and no allocation was found to read it from; set it"
            )
        return BudgetResolution(configured, "configured")
    if configured is None:
        return BudgetResolution(allocation, "allocation")
    if configured <= allocation:
        return BudgetResolution(configured, "configured")
    return BudgetResolution(
        allocation,
        "allocation",
        f"{key} = {configured} exceeds the allocation's {allocation} concurrent calls; "
        f"using {allocation}, since calls beyond it would be refused with 429",
    )


def partition_slots(limit: int, partition: int, total_partitions: int) -> int:
    """The slots of ``limit`` that go with input ``partition``: ``limit // total`` each, and one
    more for ``limit % total`` partitions spread evenly over the range, so that the slots of
    all partitions add up to ``limit`` exactly."""
    if not 0 <= partition < total_partitions:
        raise ValueError(f"partition must be in 0..{total_partitions - 1}, got {partition}")
    base, spare = divmod(limit, total_partitions)
    n = total_partitions
    return base + (partition + 1) * spare // n - partition * spare // n


def replica_share(limit: int, owned: Iterable[int], total_partitions: int) -> int:
    """This replica's share of ``limit``: the slots of the input partitions it owns, at least 1.

    Opt-in: for one allocation shared by several consumer replicas without a coordinator, each
    replica takes the slots that go with its partitions (:func:`partition_slots`) and
    recomputes them on every rebalance. A partition has one owner at a time, so the shares
    never add up to more than the limit, and with every partition owned they use all of it;
    a proportional floor would leave slots unused (3 replicas of 2 of 6 partitions: 2 + 2 + 2
    of 8). The floor of 1 (so a replica that owns partitions can make progress) can exceed the
    limit when there are more replicas than slots, which the endpoint answers with 429s.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if total_partitions < 1:
        raise ValueError(f"total_partitions must be at least 1, got {total_partitions}")
    return max(1, sum(partition_slots(limit, p, total_partitions) for p in set(owned)))


class Budget:
    """A concurrency limit and the calls in flight against it.

    ``set_limit`` may shrink the limit below what is in flight: running calls are never
    revoked; new acquires simply fail until enough have been released.
    """

    __slots__ = ("_in_flight", "_limit")

    def __init__(self, limit: int) -> None:
        self._limit = _positive(limit)
        self._in_flight = 0

    def try_acquire(self) -> bool:
        """Take a slot if one is free."""
        if self._in_flight >= self._limit:
            return False
        self._in_flight += 1
        return True

    def release(self) -> None:
        """Give a slot back; ValueError when none is held (a double release is a bug)."""
        if self._in_flight == 0:
            raise ValueError("release without a matching acquire")
        self._in_flight -= 1

    def set_limit(self, limit: int) -> None:
        """Change the limit, e.g. after re-reading the allocation or a rebalance."""
        self._limit = _positive(limit)

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def available(self) -> int:
        """Free slots; 0 (never negative) while a shrunk limit is still over-subscribed."""
        return max(0, self._limit - self._in_flight)

    def __repr__(self) -> str:
        return f"Budget(limit={self._limit}, in_flight={self._in_flight})"


def _positive(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"a concurrency limit is an integer >= 1, got {limit!r}")
    return limit
