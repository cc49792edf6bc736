"""Rebalances: partitions assigned, revoked or lost, as the consumer thread reports them.

The consumer thread calls ``on_*`` and waits while the work runs on the event loop. A revoked
partition's events still waiting for their lane are dropped (its next owner starts from the
committed position), its events being scored finish (each is bounded by its deadline), and its
safe prefix is committed before the partition moves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any, TypeVar

from streamproc.core.offsets import CommitPoint, TopicPartition, decode_completed
from streamproc.logs import get_logger
from streamproc.processor.commits import Commits
from streamproc.processor.partition import PartitionState
from streamproc.processor.ports import BUSY_TICK_S

log = get_logger("processor")

T = TypeVar("T")


class Rebalancing(Commits):
    """The group protocol side of :class:`~.engine.Processor`."""

    def on_assigned(
        self,
        partitions: Sequence[TopicPartition],
        committed: Mapping[TopicPartition, CommitPoint] | None = None,
    ) -> None:
        self._on_loop(self._assign(partitions, committed or {}), timeout_s=30)

    def on_revoked(
        self, partitions: Sequence[TopicPartition]
    ) -> Mapping[TopicPartition, CommitPoint]:
        result = self._on_loop(self._revoke(partitions), timeout_s=self._proc.drain_timeout_s + 5)
        return result or {}

    def on_lost(self, partitions: Sequence[TopicPartition]) -> None:
        self._on_loop(self._lose(partitions), timeout_s=30)

    def _on_loop(self, coro: Coroutine[Any, Any, T], *, timeout_s: float) -> T | None:
        loop = self._loop
        if loop is None or loop.is_closed():
            coro.close()
            return None
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(timeout_s)
        except FutureTimeoutError:
            log.error("rebalance_callback_timeout", timeout_s=timeout_s)
            future.cancel()
            return None

    async def _assign(
        self,
        partitions: Sequence[TopicPartition],
        committed: Mapping[TopicPartition, CommitPoint],
    ) -> None:
        for tp in partitions:
            point = committed.get(tp)
            done = decode_completed(point.offset, point.metadata) if point else frozenset()
            if done:
                log.info("completed_offsets_known", partition=tp.partition, count=len(done))
            self._partitions[tp] = part = PartitionState(done)
            part.committed = point
        await self._assignment_changed()

    async def _assignment_changed(self) -> None:
        # While stopping, the final revoke empties the assignment: nothing to re-split for.
        if self._on_assignment is not None and not self._stopping:
            try:
                await self._on_assignment(list(self._partitions))
            except Exception:  # a failed re-split keeps the previous shares; not fatal
                log.exception("assignment_listener_failed")

    async def _revoke(
        self, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, CommitPoint]:
        owned = [tp for tp in partitions if tp in self._partitions]
        for tp in owned:
            part = self._partitions[tp]
            part.revoking = True
            # Events still waiting for their lane never started: drop them; they stay
            # uncommitted for the next owner.
            for offset in self._gate.drop_partition(tp):
                flight = part.flights.pop(offset, None)
                if flight is not None:
                    flight.settled = True
                    self._in_flight -= 1
            if not part.flights:
                part.idle.set()
        if not await self._wait_idle(owned, self._proc.drain_timeout_s):
            log.warning("revoke_drain_timeout", partitions=len(owned))
        if self._exactly_once:
            # Their offsets go with the transaction that holds their outputs, now, before the
            # next owner reads from the committed positions; the consumer commits nothing.
            await self._commit_transaction()
            for tp in owned:
                self._forget(tp)
            await self._assignment_changed()
            await self._within_shares()
            return {}
        positions = self._positions(owned)
        for tp in owned:
            self._forget(tp)
        await self._assignment_changed()
        await self._within_shares()
        return positions

    async def _within_shares(self) -> None:
        """Wait until the executes in flight fit each allocation's (smaller) share.

        The partitions' next owner takes its share of the budget as soon as this revoke
        returns; executes still running here on the old share would then add up to more
        than the allocation allows, and the Control Room would refuse the excess."""
        give_up = time.monotonic() + self._proc.drain_timeout_s
        while any(a.in_flight > a.limit for a in self.allocations.values()):
            if time.monotonic() > give_up:
                log.warning("budget_share_not_reached", drain_timeout_s=self._proc.drain_timeout_s)
                return
            await asyncio.sleep(BUSY_TICK_S)

    async def _lose(self, partitions: Sequence[TopicPartition]) -> None:
        # Lost, not revoked: another member may already own them; commit nothing.
        lost = [tp for tp in partitions if tp in self._partitions]
        for tp in lost:
            self._gate.reset_partition(tp)
            self._forget(tp)
        if self._exactly_once and lost:
            async with self._commit_lock:
                if self._in_transaction or self._overflow:
                    # Their outputs can no longer commit with their offsets, and the next
                    # owner decides those events again: the open transaction must not commit.
                    await self._abort_transaction(
                        "partitions lost with outputs in the open transaction"
                    )
        await self._assignment_changed()

    def _forget(self, tp: TopicPartition) -> None:
        part = self._partitions.pop(tp)
        for flight in part.flights.values():
            flight.settled = True  # its works, queued or running, are no longer wanted
            self._in_flight -= 1
        # Events that leave with the partition never complete: without this, losing the
        # partitions that held the in-flight work would leave the others paused for good.
        self._maybe_resume()
        if part.committed is not None:
            self.metrics.commit_lag.remove(tp.topic, str(tp.partition))

    async def _wait_idle(self, tps: Sequence[TopicPartition], timeout_s: float) -> bool:
        waits = [self._partitions[tp].idle.wait() for tp in tps if tp in self._partitions]
        if not waits:
            return True
        try:
            await asyncio.wait_for(asyncio.gather(*waits), timeout_s)
        except TimeoutError:
            return False
        return True
