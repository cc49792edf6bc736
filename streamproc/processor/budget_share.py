"""One allocation budget shared by every consumer replica, without a coordinator.

The API Task's concurrencyLimit is per allocation, not per process: two replicas that each
used the whole budget would together run twice the limit, and the real-time endpoint answers
the excess with errors instead of queueing it. So each replica takes, of every budget, the slots
that go with the input partitions it owns (``core.budgets.replica_share``: ``limit // total``
per partition, the remainder spread over the partitions, at least 1 in all) and recomputes it
after every rebalance. Cooperative rebalancing revokes before it assigns, so shares shrink
before others grow. The cost: a replica
whose partitions carry more traffic than their share waits while another idles; with a single
replica nothing changes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

from streamproc.core.budgets import replica_share
from streamproc.kafka.records import TopicPartition
from streamproc.logs import get_logger
from streamproc.observability.metrics import ProcessorMetrics

log = get_logger("processor.budget_share")


class Shared(Protocol):
    """An allocation's budget as this replica holds it."""

    @property
    def limit(self) -> int: ...

    def set_limit(self, limit: int) -> None: ...


class BudgetSplitter:
    """Called with the new assignment after each rebalance; sets every budget's share.

    The input topic's partition count is read once, then refreshed in the background at most
    every ``refresh_s``: this runs inside a rebalance callback, which must not wait on the
    network while the group waits on it.
    """

    def __init__(
        self,
        budgets: Mapping[str, Shared],
        limits: Mapping[str, int],
        total_partitions: Callable[[], Awaitable[int]],
        metrics: ProcessorMetrics,
        *,
        refresh_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._budgets = budgets
        self._limits = limits
        self._read_total = total_partitions
        self._metrics = metrics
        self._refresh_s = refresh_s
        self._clock = clock
        self._total: int | None = None
        self._read_at = 0.0
        self._refreshing: asyncio.Task[None] | None = None

    async def prime(self) -> None:
        """Read the partition count now (at start, outside any rebalance)."""
        self._total = await self._read_total()
        self._read_at = self._clock()

    def _refresh_later(self) -> None:
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._refresh())

    async def _refresh(self) -> None:
        try:
            await self.prime()
        except Exception:  # keep the last count; the next rebalance tries again
            log.warning("partition_count_refresh_failed", exc_info=True)

    async def __call__(self, assignment: Sequence[TopicPartition]) -> None:
        if self._total is None:
            await self.prime()
        elif self._clock() - self._read_at > self._refresh_s:
            self._refresh_later()
        assert self._total is not None
        total = self._total
        # A partition beyond the count read last (the topic grew) gets slots once it is reread.
        owned = [tp.partition for tp in assignment if tp.partition < total]
        for name, budget in self._budgets.items():
            share = replica_share(self._limits[name], owned, total)
            if share != budget.limit:
                log.info(
                    "budget_share",
                    task=name,
                    limit=self._limits[name],
                    share=share,
                    owned_partitions=len(owned),
                    total_partitions=total,
                )
                budget.set_limit(share)
            self._metrics.allocation_budget.labels(name).set(share)
