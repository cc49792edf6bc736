"""Commits: each partition's completed prefix, or, exactly once, the transaction holding
the outputs together with their offsets.

At least once, the commit loop commits every partition's contiguous completed prefix, with the
offsets completed above it in the commit's metadata so a restart skips them. Exactly once, each
commit is a transaction commit; one that fails is aborted and its partitions are read again
from their last commit.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping, Sequence

from streamproc.core.offsets import CommitPoint, TopicPartition, decode_completed, encode_completed
from streamproc.errors import KafkaTransactionError
from streamproc.logs import get_logger
from streamproc.processor.ports import BUSY_TICK_S
from streamproc.processor.state import EngineState

log = get_logger("processor")


class Commits(EngineState):
    """The commit loop and the transactions of :class:`~.engine.Processor`."""

    async def _commit_loop(self) -> None:
        interval = (
            self._proc.transaction_interval_ms
            if self._exactly_once
            else self._kafka.commit_interval_ms
        ) / 1000
        while True:
            await asyncio.sleep(interval)
            await self._commit()

    def _positions(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, CommitPoint]:
        """What to commit for ``tps``: each partition's position and, in its metadata, the
        offsets completed above it; only where that changed since the last commit."""
        points: dict[TopicPartition, CommitPoint] = {}
        limit = self._kafka.offset_metadata_max_bytes
        for tp in tps:
            part = self._partitions.get(tp)
            if part is None:
                continue
            found = part.offsets.commit_point()
            if found is None:
                continue
            position, done = found
            metadata = encode_completed(position, done)
            if len(metadata) > limit:
                # Too many scattered completions to name: the plain position is still safe,
                # those events are redone after a crash.
                self._metadata_dropped.inc()
                metadata = ""
            point = CommitPoint(position, metadata)
            if point != part.committed:
                points[tp] = point
        return points

    async def _commit(self) -> None:
        if self._exactly_once:
            await self._commit_transaction()
            return
        points = self._positions(list(self._partitions))
        if not points:
            return
        ok = await self.source.commit(points)
        self.metrics.commits.labels("ok" if ok else "failed").inc()
        if ok:
            self._mark_committed(points)

    def _mark_committed(self, points: Mapping[TopicPartition, CommitPoint]) -> None:
        for tp, point in points.items():
            part = self._partitions.get(tp)
            if part is None:
                continue
            part.committed = point
            if part.last_offset is not None:
                lag = part.last_offset + 1 - point.offset
                self.metrics.commit_lag.labels(tp.topic, str(tp.partition)).set(lag)

    # -- transactions (exactly once) ----------------------------------------------------------

    async def _commit_transaction(self) -> None:
        """Commit the open transaction with the offsets it completes, then open the next one.

        While it commits, outputs wait in the overflow (librdkafka refuses a produce during a
        commit), in order. A transaction that cannot commit is aborted and its events redone.
        """
        async with self._commit_lock:  # a revoke and the commit loop may both ask
            await self._commit_transaction_now()

    async def _commit_transaction_now(self) -> None:
        points = self._positions(list(self._partitions))
        if not points and not self._in_transaction and self._transaction_error is None:
            return
        self._committing = True
        try:
            error = self._transaction_error or await self._until_delivered()
            if error is None:
                points = self._positions(list(self._partitions))
                try:
                    await self.sink.commit(points, self.source.group_metadata())
                except KafkaTransactionError as exc:
                    error = exc
            if error is not None:
                fatal = isinstance(error, KafkaTransactionError) and error.fatal
                await self._rewind(str(error), renew=fatal)
            else:
                self._mark_committed(points)
                self.metrics.commits.labels("ok").inc()
                self._in_transaction = 0
            self.sink.begin()
        finally:
            self._committing = False
        self._between_transactions_over()

    async def _abort_transaction(self, reason: str) -> None:
        """Abort the open transaction, read every partition again from its last commit, and
        open the next transaction; the caller holds the commit lock."""
        self._committing = True
        try:
            await self._rewind(reason)
            self.sink.begin()
        finally:
            self._committing = False
        self._between_transactions_over()

    def _between_transactions_over(self) -> None:
        """Produce what waited while a transaction ended: outputs, then corrections."""
        self._flush_overflow()
        pending, self._corrections = self._corrections, []
        for correction in pending:
            self._produce_correction(correction)

    async def _until_delivered(self) -> BaseException | None:
        """Wait, serving delivery reports on this loop, until every output is acknowledged:
        the commit would otherwise serve them in its worker thread, or wait for them blind."""
        give_up = time.monotonic() + self._proc.drain_timeout_s
        while self.sink.pending():
            if self._transaction_error is not None:
                return self._transaction_error
            if time.monotonic() > give_up:
                return KafkaTransactionError(
                    "outputs not acknowledged in time", operation="commit", abortable=True
                )
            self.sink.poll()
            await asyncio.sleep(BUSY_TICK_S)
        return self._transaction_error

    async def _rewind(self, reason: str, *, renew: bool = False) -> None:
        """Abort the open transaction (``renew``: replace the producer, which aborts it) and
        read every partition again from its last commit: the aborted outputs are never seen
        by read_committed readers, and their events are decided again."""
        log.warning("transaction_aborted", error=reason, renew_producer=renew)
        self.metrics.commits.labels("aborted").inc()
        try:
            if renew:
                await self.sink.renew()
            else:
                await self.sink.abort()
        except KafkaTransactionError as exc:
            log.warning("transaction_abort_failed", error=str(exc))
            await self.sink.renew()
        positions: dict[TopicPartition, int] = {}
        for tp, part in self._partitions.items():
            start = part.committed.offset if part.committed else part.first_offset
            for flight in part.flights.values():
                flight.settled = True  # what is still running is no longer wanted
            self._in_flight -= len(part.flights)
            part.flights.clear()
            part.idle.set()
            self._gate.reset_partition(tp)
            if start is not None:
                positions[tp] = start
                part.offsets.reset(start)
                committed = part.committed
                part.done = set(
                    decode_completed(committed.offset, committed.metadata) if committed else ()
                )
        self._overflow.clear()
        self._intake = deque(r for r in self._intake if r.tp not in positions)
        self._in_transaction = 0
        self._transaction_error = None
        # Now, before anything else is taken in: from here on the source delivers these
        # partitions' records only from ``positions``. (Seeking itself happens on the consumer
        # thread, which may be inside a rebalance callback waiting for this very loop.)
        self.source.seek(positions)
        self._maybe_resume()
