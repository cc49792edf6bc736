"""The processor: consume, decide, publish, commit, within budgets and deadlines.

Life of a record: the intake loop admits it (tracked as in flight in its partition), decodes it
(a bad record goes straight to the dead-letter topic), and hands it to the ordering gate, which
starts it at once or after the earlier events of the same key. Its task maps, routes and scores
it, publishes the decision or dead letter, and waits for the broker's acknowledgement. Only then
is its offset complete; the commit loop commits each partition's contiguous completed prefix.

Backpressure: at ``max_in_flight`` events the assigned partitions are paused and the loop keeps
polling (so the group never sees a missed ``max.poll.interval.ms``); they resume at half.

Rebalances run on the consumer thread and hop here: a revoked partition's queued events are
dropped (its next owner starts from the committed position), its running events finish (each
is bounded by its deadline), and its safe prefix is committed before the partition moves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import structlog

from streamproc.config import Settings
from streamproc.core.events import TransactionEvent, decode_event
from streamproc.core.offsets import PartitionOffsets
from streamproc.core.ordering import OrderingGate
from streamproc.errors import BadInputError
from streamproc.kafka.records import ConsumedRecord, OutputRecord, TopicPartition
from streamproc.logs import get_logger
from streamproc.observability.metrics import ProcessorMetrics
from streamproc.processor.outcomes import Decider, Outcome

log = get_logger("processor")

_POLL_TIMEOUT_S = 0.1
T = TypeVar("T")


class Source(Protocol):
    async def start(self) -> None: ...
    async def poll(self, max_records: int, timeout_s: float) -> list[ConsumedRecord]: ...
    async def commit(self, positions: Mapping[TopicPartition, int]) -> bool: ...
    async def pause(self, partitions: Sequence[TopicPartition]) -> None: ...
    async def resume(self, partitions: Sequence[TopicPartition]) -> None: ...
    async def close(self) -> None: ...


class Sink(Protocol):
    async def send(self, record: OutputRecord) -> None: ...


@dataclass(slots=True)
class _Event:
    record: ConsumedRecord
    event: TransactionEvent | None = None
    gated: bool = False
    task: asyncio.Task[None] | None = None


@dataclass(slots=True)
class _Partition:
    offsets: PartitionOffsets = field(default_factory=PartitionOffsets)
    events: dict[int, _Event] = field(default_factory=dict)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    revoking: bool = False
    committed: int | None = None
    last_offset: int | None = None

    def __post_init__(self) -> None:
        self.idle.set()


class Processor:
    """One consumer group member. ``run()`` until ``stop`` is set, then drain and commit."""

    def __init__(
        self,
        settings: Settings,
        source_factory: Callable[[Processor], Source],
        sink: Sink,
        decider: Decider,
        metrics: ProcessorMetrics,
        *,
        on_assignment: Callable[[Sequence[TopicPartition]], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._on_assignment = on_assignment
        self.sink = sink
        self.decider = decider
        self.metrics = metrics
        self.clock = clock
        self.source = source_factory(self)
        self._kafka = settings.kafka
        self._proc = settings.processing
        self._gate = OrderingGate(self._proc.ordering)
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._in_flight = 0
        self._paused = False
        self._resuming: asyncio.Task[None] | None = None
        self._stopping = False
        self._fatal: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started = asyncio.Event()
        self.last_poll_monotonic = time.monotonic()
        # Read when scraped, not written per event.
        metrics.in_flight_events.set_function(lambda: self._in_flight)

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Process until ``stop`` is set; then drain in-flight work, commit, leave the group."""
        self._loop = asyncio.get_running_loop()
        await self.source.start()
        self.started.set()
        committer = asyncio.create_task(self._commit_loop(stop), name="commit-loop")
        try:
            await self._intake(stop)
        finally:
            stop.set()
            await self._shutdown(committer)
        if self._fatal is not None:
            raise self._fatal

    async def _intake(self, stop: asyncio.Event) -> None:
        batch = self._kafka.consume_batch_size
        limit = self._proc.max_in_flight
        while not stop.is_set() and self._fatal is None:
            room = limit - self._in_flight
            if room <= 0 and not self._paused:
                await self._pause()
            records = await self.source.poll(max(1, min(batch, room)), _POLL_TIMEOUT_S)
            self.last_poll_monotonic = time.monotonic()
            if self._fatal is not None:
                break  # not admitted, so not committed: a restart reads them again
            for record in records:
                self._admit(record)

    async def _shutdown(self, committer: asyncio.Task[None]) -> None:
        self._stopping = True  # intake is over: nothing may resume partitions any more
        drained = await self._wait_idle(list(self._partitions), self._proc.drain_timeout_s)
        if not drained:
            log.warning("drain_timeout", in_flight=self._in_flight)
            for part in self._partitions.values():
                part.idle.set()  # given up on: the final revoke must not wait for them again
        committer.cancel()
        await asyncio.gather(committer, return_exceptions=True)
        await self._commit()
        await self.source.close()  # the final revoke commits again; nothing is left in flight
        for part in self._partitions.values():
            for ev in part.events.values():
                if ev.task is not None:
                    ev.task.cancel()
        log.info("processor_stopped", drained=drained, abandoned=self._in_flight)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def assignment(self) -> list[TopicPartition]:
        """The partitions this member owns now."""
        return list(self._partitions)

    # -- intake -------------------------------------------------------------------------------

    def _admit(self, record: ConsumedRecord) -> None:
        part = self._partitions.get(record.tp)
        if part is None or part.revoking:
            return  # fetched before a revoke; the partition's next owner will read it
        try:
            part.offsets.track(record.offset)
        except ValueError:
            # Each offset arrives once per assignment; a repeat (a rewind we did not ask
            # for) is already in flight or done, and processing it twice would duplicate it.
            log.warning("offset_repeated", partition=record.partition, offset=record.offset)
            return
        part.last_offset = record.offset
        part.idle.clear()
        ev = _Event(record)
        part.events[record.offset] = ev
        self._in_flight += 1
        self.metrics.consumed.inc()
        try:
            ev.event = decode_event(record.value, max_bytes=self._proc.max_event_bytes)
        except BadInputError as exc:
            ev.task = asyncio.create_task(self._publish(ev, self.decider.dead_letter(record, exc)))
            return
        ev.gated = True
        if self._gate.submit(record.tp, record.key, record.offset):
            self._start(ev)

    def _start(self, ev: _Event) -> None:
        ev.task = asyncio.create_task(self._process(ev))

    async def _process(self, ev: _Event) -> None:
        assert ev.event is not None
        # This task runs in its own copy of the context, so the binding needs no reset and
        # reaches every log line of the event, the execute's included.
        structlog.contextvars.bind_contextvars(
            event_id=ev.event.event_id, partition=ev.record.partition, offset=ev.record.offset
        )
        try:
            outcome = await self.decider.decide(ev.record, ev.event)
        except Exception as exc:  # a defect must not stall the partition: dead-letter it
            log.exception("decide_failed")
            outcome = self.decider.dead_letter(ev.record, exc, stage="execute")
        await self._publish(ev, outcome)

    async def _publish(self, ev: _Event, outcome: Outcome) -> None:
        try:
            await self.sink.send(outcome.record)
        except Exception as exc:
            # Without an acknowledged output the offset must not be committed, and nothing
            # after it can be either: stop, and let a restart resume from the commit. A sink
            # that raised something other than KafkaDeliveryError (a produce() that failed)
            # is no different: swallowing it would leave the partition stuck, uncommitted.
            log.error("output_not_acknowledged", error=str(exc), error_class=type(exc).__name__)
            if self._fatal is None:
                self._fatal = exc
            part = self._partitions.get(ev.record.tp)
            if part is not None:
                part.idle.set()  # it can never drain now: a stop or revoke must not wait for it
            return
        self.decider.acknowledged(outcome, self.clock())
        self._complete(ev)

    def _complete(self, ev: _Event) -> None:
        record = ev.record
        part = self._partitions.get(record.tp)
        if part is None or part.events.get(record.offset) is not ev:
            return  # the partition was revoked or lost meanwhile
        part.offsets.complete(record.offset)
        del part.events[record.offset]
        self._in_flight -= 1
        if ev.gated:
            for offset in self._gate.finish(record.tp, record.key, record.offset):
                self._start(part.events[offset])
        if not part.events:
            part.idle.set()
        self._maybe_resume()

    # -- backpressure -------------------------------------------------------------------------

    async def _pause(self) -> None:
        self._paused = True
        self.metrics.paused.set(1)
        await self.source.pause(list(self._partitions))
        log.info("intake_paused", in_flight=self._in_flight)

    def _maybe_resume(self) -> None:
        if self._paused and not self._stopping and self._in_flight <= self._proc.max_in_flight // 2:
            self._schedule_resume()

    def _schedule_resume(self) -> None:
        if self._resuming is None or self._resuming.done():
            self._resuming = asyncio.create_task(self._resume())

    async def _resume(self) -> None:
        self._paused = False
        self.metrics.paused.set(0)
        await self.source.resume(list(self._partitions))
        log.info("intake_resumed", in_flight=self._in_flight)

    # -- commits ------------------------------------------------------------------------------

    async def _commit_loop(self, stop: asyncio.Event) -> None:
        interval = self._kafka.commit_interval_ms / 1000
        while not stop.is_set():
            await asyncio.sleep(interval)
            await self._commit()

    def _positions(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        positions: dict[TopicPartition, int] = {}
        for tp in tps:
            part = self._partitions.get(tp)
            if part is None:
                continue
            position = part.offsets.committable()
            if position is not None and position != part.committed:
                positions[tp] = position
        return positions

    async def _commit(self) -> None:
        positions = self._positions(list(self._partitions))
        if not positions:
            return
        ok = await self.source.commit(positions)
        self.metrics.commits.labels("ok" if ok else "failed").inc()
        if ok:
            self._mark_committed(positions)

    def _mark_committed(self, positions: Mapping[TopicPartition, int]) -> None:
        for tp, position in positions.items():
            part = self._partitions.get(tp)
            if part is None:
                continue
            part.committed = position
            if part.last_offset is not None:
                lag = part.last_offset + 1 - position
                self.metrics.commit_lag.labels(tp.topic, str(tp.partition)).set(lag)

    # -- rebalance (the consumer thread calls these; they run on the loop) --------------------

    def on_assigned(self, partitions: Sequence[TopicPartition]) -> None:
        self._on_loop(self._assign(partitions), timeout_s=30)

    def on_revoked(self, partitions: Sequence[TopicPartition]) -> Mapping[TopicPartition, int]:
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

    async def _assign(self, partitions: Sequence[TopicPartition]) -> None:
        for tp in partitions:
            self._partitions[tp] = _Partition()
        await self._assignment_changed()

    async def _assignment_changed(self) -> None:
        # While stopping, the final revoke empties the assignment: nothing to re-split for.
        if self._on_assignment is not None and not self._stopping:
            try:
                await self._on_assignment(list(self._partitions))
            except Exception:  # a failed re-split keeps the previous shares; not fatal
                log.exception("assignment_listener_failed")

    async def _revoke(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        owned = [tp for tp in partitions if tp in self._partitions]
        for tp in owned:
            part = self._partitions[tp]
            part.revoking = True
            # Queued events never started: drop them; they stay uncommitted for the next owner.
            for offset in self._gate.drop_partition(tp):
                if part.events.pop(offset, None) is not None:
                    self._in_flight -= 1
            if not part.events:
                part.idle.set()
        if not await self._wait_idle(owned, self._proc.drain_timeout_s):
            log.warning("revoke_drain_timeout", partitions=len(owned))
        positions = self._positions(owned)
        for tp in owned:
            self._forget(tp)
        await self._assignment_changed()
        return positions

    async def _lose(self, partitions: Sequence[TopicPartition]) -> None:
        # Lost, not revoked: another member may already own them; commit nothing.
        for tp in partitions:
            if tp in self._partitions:
                self._gate.drop_partition(tp)
                self._forget(tp)
        await self._assignment_changed()

    def _forget(self, tp: TopicPartition) -> None:
        part = self._partitions.pop(tp)
        for ev in part.events.values():
            self._in_flight -= 1
            if ev.task is not None:
                ev.task.cancel()
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
