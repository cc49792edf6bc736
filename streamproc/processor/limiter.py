"""Per-allocation concurrency limiter: the asyncio face of the pure ``core.budgets.Budget``.

Real-time API Tasks never queue: an execute over the allocation's concurrencyLimit fails at
once. So the queue lives here instead, in arrival order (FIFO, so no event starves), and a
waiter gives up when its event's deadline leaves no time for an execute.
"""

from __future__ import annotations

import asyncio
from collections import deque

from streamproc.core.budgets import Budget


class AsyncBudget:
    """Acquire a slot of an allocation's budget, waiting in FIFO order with a timeout."""

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self._budget = Budget(limit)
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def limit(self) -> int:
        return self._budget.limit

    @property
    def in_flight(self) -> int:
        return self._budget.in_flight

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    @property
    def high_water_mark(self) -> int:
        return self._budget.high_water_mark

    async def acquire(self, timeout_s: float | None) -> bool:
        """True once a slot is held; False if none came within ``timeout_s``."""
        if not self._waiters and self._budget.try_acquire():
            return True
        if timeout_s is not None and timeout_s <= 0:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            # Not wait_for: on 3.11 it swallows a cancellation that lands once the result is
            # on its way, and the cancelled caller would go on to execute for a decided event.
            async with asyncio.timeout(timeout_s):
                await waiter
        except TimeoutError:
            self._abandon(waiter)
            return False
        except asyncio.CancelledError:
            self._abandon(waiter)
            raise
        return True

    def _abandon(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done() and not waiter.cancelled():
            # The slot was handed over just as we gave up: pass it on.
            self.release()
        else:
            waiter.cancel()

    def release(self) -> None:
        self._budget.release()
        self._wake()

    def set_limit(self, limit: int) -> None:
        """Apply a new budget (e.g. a re-split after a rebalance); running work is kept."""
        self._budget.set_limit(limit)
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters[0]
            if waiter.done():
                self._waiters.popleft()
                continue
            if not self._budget.try_acquire():
                return
            self._waiters.popleft()
            waiter.set_result(None)
