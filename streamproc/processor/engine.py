"""The processor: consume, judge, score, publish, commit, within budgets and deadlines.

The life of a record, each stage moving it forward only:

1. **Intake.** The consumer thread hands a batch over once. Each record is tracked as in flight
   in its partition and decoded; a bad one is dead-lettered at once (it holds no key's lane).
2. **Ordering.** The ordering gate lets the record start now, or after the earlier events of
   its key (:mod:`streamproc.core.ordering`).
3. **Arrival** (:mod:`.arrival`): expired, routed, mapped, admitted per allocation, or decided
   on the spot.
4. **Scoring** (:mod:`.allocation`): each allocation's slot workers execute, retry and report.
   A deadline that passes first settles the event by fallback at the next tick.
5. **Publishing.** The outcome (:mod:`.outcomes`) is handed to the producer, and the key's
   lane is released to the next event at once: the idempotent producer keeps their order.
6. **Acknowledgement.** Delivery reports are served once per tick, on the loop. Only then is
   the offset complete; the commit loop commits each partition's contiguous completed prefix.

One timer drives the engine: a tick every few milliseconds while work is in flight serves
delivery reports, settles events whose deadline passed, and sheds queued work that can no
longer finish in time. Nothing is created per event but the event's own state.

Backpressure: at ``max_in_flight`` events the assigned partitions are paused and the consumer
keeps polling (so the group never sees a missed ``max.poll.interval.ms``); they resume at half.

Rebalances run on the consumer thread and hop here: a revoked partition's events still waiting
for their lane are dropped (its next owner starts from the committed position), its events
being scored finish (each is bounded by its deadline), and its safe prefix is committed before
the partition moves.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any, Protocol, TypeVar

from streamproc.config import Settings
from streamproc.core.decisions import FallbackReason
from streamproc.core.events import decode_event
from streamproc.core.mapping import TaskVerdict
from streamproc.core.offsets import (
    CommitPoint,
    PartitionOffsets,
    TopicPartition,
    decode_completed,
    encode_completed,
)
from streamproc.core.ordering import OrderingGate
from streamproc.errors import (
    BadInputError,
    KafkaDeliveryError,
    KafkaTransactionError,
    RetryableError,
)
from streamproc.kafka.records import ConsumedRecord, OutputRecord
from streamproc.logs import get_logger
from streamproc.observability.metrics import ProcessorMetrics
from streamproc.processor.allocation import Allocation, reason_of
from streamproc.processor.arrival import Arrival
from streamproc.processor.flight import Flight, Tracer, Work
from streamproc.processor.outcomes import Outcome, OutcomeCounts, Outcomes

log = get_logger("processor")

T = TypeVar("T")
BUSY_TICK_S = 0.005
# Records taken in per turn of the event loop (about a millisecond of work).
_INTAKE_CHUNK = 32
IDLE_TICK_S = 0.1


class Source(Protocol):
    room: int
    last_poll_monotonic: float

    async def start(
        self,
        deliver: Callable[[list[ConsumedRecord]], None],
        fail: Callable[[BaseException], None],
    ) -> None: ...
    async def commit(self, points: Mapping[TopicPartition, CommitPoint]) -> bool: ...
    async def seek(self, positions: Mapping[TopicPartition, int]) -> None: ...
    def group_metadata(self) -> Any: ...
    async def pause(self, partitions: Sequence[TopicPartition]) -> None: ...
    async def resume(self, partitions: Sequence[TopicPartition]) -> None: ...
    async def close(self) -> None: ...


class Sink(Protocol):
    def produce(self, record: OutputRecord, token: Flight | None) -> bool: ...
    def poll(self) -> int: ...
    def pending(self) -> int: ...

    # Exactly-once only.
    async def start_transactions(self) -> None: ...
    def begin(self) -> None: ...
    async def commit(self, offsets: Mapping[TopicPartition, CommitPoint], group: Any) -> None: ...
    async def abort(self) -> None: ...
    async def renew(self) -> None: ...


class _Partition:
    __slots__ = (
        "committed",
        "done",
        "first_offset",
        "flights",
        "idle",
        "last_offset",
        "offsets",
        "revoking",
        "rewinding",
    )

    def __init__(self, done: frozenset[int] = frozenset()) -> None:
        self.offsets = PartitionOffsets()
        self.flights: dict[int, Flight] = {}
        self.idle = asyncio.Event()
        self.idle.set()
        self.revoking = False
        self.committed: CommitPoint | None = None
        self.first_offset: int | None = None  # where reading began, for a rewind
        self.last_offset: int | None = None
        self.rewinding = False  # records fetched before a rewind's seek are dropped
        # Offsets a previous owner completed beyond its commit: skipped, not decided again.
        self.done = set(done)


class Processor:
    """One consumer group member. ``run()`` until ``stop`` is set, then drain and commit."""

    def __init__(
        self,
        settings: Settings,
        source_factory: Callable[[Processor], Source],
        sink_factory: Callable[[Callable[[Flight | None, KafkaDeliveryError | None], None]], Sink],
        allocations: Mapping[str, Allocation],
        metrics: ProcessorMetrics,
        *,
        on_assignment: Callable[[Sequence[TopicPartition]], Awaitable[None]] | None = None,
        on_output: Callable[[Flight], None] | None = None,
        tracer: Tracer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.allocations = dict(allocations)
        self.outcomes = Outcomes(settings, clock)
        self.arrival = Arrival(settings, self.allocations, self.outcomes)
        self._counts = OutcomeCounts(metrics)
        self._on_assignment = on_assignment
        # Sees each acknowledged output (the status page's recent list); None costs nothing.
        self._on_output = on_output
        # Starts each record's trace when tracing is on; None costs one test per record.
        self._tracer = tracer
        self._kafka = settings.kafka
        self._proc = settings.processing
        self._gate = OrderingGate(self._proc.ordering)
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._in_flight = 0
        self._paused = False
        self._resuming: asyncio.Task[None] | None = None
        self._stopping = False
        self._fatal: BaseException | None = None
        self._halt = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deadlines: list[tuple[float, int, Flight]] = []
        self._sequence = itertools.count()
        self._overflow: deque[Flight] = deque()  # outputs the producer could not queue yet
        self._intake: deque[ConsumedRecord] = deque()  # consumed, not yet taken in
        self._taking_in = False
        self._tick_handle: asyncio.TimerHandle | None = None
        self._exactly_once = self._proc.delivery == "exactly_once"
        self._committing = False  # a transaction commits: outputs wait in the overflow
        self._in_transaction = 0  # outputs produced into the open transaction
        self._transaction_error: BaseException | None = None
        self._commit_lock = asyncio.Lock()
        self._consumed = metrics.consumed.children[()]
        self._corrected = metrics.corrections.children[()]
        self._corrections: list[OutputRecord] = []
        self._skipped = metrics.skipped.children[()]
        self._metadata_dropped = metrics.commit_metadata_dropped.children[()]
        self.started = asyncio.Event()
        corrections = settings.kafka.corrections_topic is not None
        for allocation in self.allocations.values():
            allocation.finished = self._finished
            if corrections:
                allocation.late = self._late_verdict
        self.sink = sink_factory(self._acknowledged)
        self.source = source_factory(self)
        self.source.room = self._proc.max_in_flight
        # Read when scraped, not written per event.
        metrics.in_flight_events.set_function(lambda: self._in_flight)

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Process until ``stop`` is set; then drain in-flight work, commit, leave the group."""
        self._loop = asyncio.get_running_loop()
        for allocation in self.allocations.values():
            allocation.start()
        if self._exactly_once:
            await self.sink.start_transactions()
        self._tick()
        await self.source.start(self._deliver, self._fail)
        self.started.set()
        committer = asyncio.create_task(self._commit_loop(), name="commit-loop")
        stopped = asyncio.create_task(stop.wait())
        halted = asyncio.create_task(self._halt.wait())
        try:
            await asyncio.wait({stopped, halted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            halted.cancel()
            stop.set()
            await self._shutdown(committer)
        if self._fatal is not None:
            raise self._fatal

    def _fail(self, error: BaseException) -> None:
        if self._fatal is None:
            self._fatal = error
        self._halt.set()

    async def _shutdown(self, committer: asyncio.Task[None]) -> None:
        self._stopping = True  # intake is over: nothing may resume partitions any more
        self.source.room = 0
        if self._partitions and self._fatal is None:
            await self.source.pause(list(self._partitions))
        drained = await self._wait_idle(list(self._partitions), self._proc.drain_timeout_s)
        if not drained:
            log.warning("drain_timeout", in_flight=self._in_flight)
            for part in self._partitions.values():
                part.idle.set()  # given up on: the final revoke must not wait for them again
        committer.cancel()
        await asyncio.gather(committer, return_exceptions=True)
        await self._commit()
        await self.source.close()  # the final revoke commits again; nothing is left in flight
        await asyncio.gather(*(a.aclose() for a in self.allocations.values()))
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
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

    @property
    def last_poll_monotonic(self) -> float:
        return self.source.last_poll_monotonic

    # -- intake -------------------------------------------------------------------------------

    def _deliver(self, records: list[ConsumedRecord]) -> None:
        """A batch from the consumer thread: taken in, a chunk per turn of the loop."""
        self._intake.extend(records)
        if not self._taking_in:  # else a turn is already scheduled to take them
            self._take_in()

    def _take_in(self) -> None:
        """Track, decode and start up to a chunk of the records consumed.

        A chunk, not the whole batch: a slot freed meanwhile starts its next execute between
        two chunks, instead of waiting behind hundreds of records on the loop."""
        self._taking_in = False
        intake = self._intake
        partitions = self._partitions
        max_bytes = self._proc.max_event_bytes
        gate = self._gate
        tracer = self._tracer
        admitted = 0
        for _ in range(min(len(intake), _INTAKE_CHUNK)):
            record = intake.popleft()
            part = partitions.get(record.tp)
            if part is None or part.revoking or part.rewinding:
                continue  # fetched before a revoke (the next owner reads it) or a rewind
            try:
                part.offsets.track(record.offset)
            except ValueError:
                # Each offset arrives once per assignment; a repeat (a rewind we did not ask
                # for) is already in flight or done, and processing it twice would duplicate it.
                log.warning("offset_repeated", partition=record.partition, offset=record.offset)
                continue
            admitted += 1
            if part.first_offset is None:
                part.first_offset = record.offset
            part.last_offset = record.offset
            if part.done and record.offset in part.done:
                # Decided before a crash, beyond the commit: its output is already out.
                part.done.discard(record.offset)
                part.offsets.complete(record.offset)
                self._skipped.inc()
                continue
            part.idle.clear()
            flight = Flight(record)
            if tracer is not None:
                tracer.consumed(flight)
            part.flights[record.offset] = flight
            self._in_flight += 1
            try:
                flight.event = decode_event(record.value, max_bytes=max_bytes)
            except BadInputError as exc:
                self._settle(flight, self.outcomes.dead_letter(record, exc))
                continue
            flight.gated = True
            if gate.submit(record.tp, record.key, record.offset):
                self._start(flight)
        self._consumed.inc(admitted)
        held = self._in_flight + len(intake)
        self.source.room = self._proc.max_in_flight - held
        if held >= self._proc.max_in_flight and not self._paused:
            self._pause()
        if intake and not self._taking_in:
            self._taking_in = True
            (self._loop or asyncio.get_running_loop()).call_soon(self._take_in)

    def _start(self, flight: Flight) -> None:
        """``flight`` may start (its lane is free): judge it, and any successor decided too."""
        while True:
            outcome = self._begin(flight)
            if outcome is None:
                return
            following = self._settle(flight, outcome)
            if following is None:
                return
            flight = following

    def _begin(self, flight: Flight) -> Outcome | None:
        try:
            outcome = self.arrival.begin(flight, self.clock())
        except Exception as exc:  # a defect must not stall the partition: dead-letter it
            log.exception("arrival_failed", offset=flight.record.offset)
            return self.outcomes.dead_letter(flight.record, exc, stage="execute")
        if outcome is None:
            heapq.heappush(self._deadlines, (flight.deadline, next(self._sequence), flight))
        return outcome

    # -- scoring results ----------------------------------------------------------------------

    def _finished(self, work: Work) -> None:
        """An allocation is done with ``work``: settle its flight when it is complete."""
        flight = work.flight
        if flight.settled:
            return
        try:
            if work.state == "failed" and work.failure is None:
                # A permanent error: the event goes to the dead-letter topic, whatever else.
                assert work.error is not None
                attempts = sum(w.attempts for w in flight.works)
                outcome = self.outcomes.dead_letter(
                    flight.record, work.error, attempts=attempts, stage="execute", task=work.task
                )
            else:
                flight.open -= 1
                if flight.open > 0:
                    return
                outcome = self.outcomes.decided(flight)
        except Exception as exc:  # a defect must not stall the partition: dead-letter it
            log.exception("decide_failed", offset=flight.record.offset)
            outcome = self.outcomes.dead_letter(flight.record, exc, stage="execute")
        following = self._settle(flight, outcome)
        if following is not None:
            self._start(following)

    def _expire(self, now: float) -> None:
        """Settle, by fallback, every flight whose deadline has passed."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, _, flight = heapq.heappop(deadlines)
            if flight.settled:
                continue
            for work in flight.works:
                if work.state not in ("done", "failed"):
                    work.failure = _reason_at_deadline(work)
                    work.abandoned = True
            following = self._settle(flight, self.outcomes.decided(flight))
            if following is not None:
                self._start(following)

    # -- publishing ---------------------------------------------------------------------------

    def _settle(self, flight: Flight, outcome: Outcome) -> Flight | None:
        """Hand ``flight``'s output to the producer and release its lane; returns the next
        event of the lane, which may start now."""
        if flight.trace is not None:
            flight.trace.publishing(flight, outcome)
        flight.settled = True
        flight.outcome = outcome
        # The works are reported in the outcome now; dropping them breaks the flight <-> work
        # cycle, so both are freed by reference counting, not by the cyclic collector.
        flight.works = ()
        try:
            if self._overflow or self._committing or not self.sink.produce(outcome.record, flight):
                # The producer's queue is full, or a transaction commits: keep the order.
                self._overflow.append(flight)
            elif self._exactly_once:
                self._in_transaction_now(flight)
        except Exception as exc:  # a produce() that failed is as fatal as a failed delivery
            self._acknowledged(flight, exc)
            return None
        if not flight.gated:
            return None
        consumed = flight.record
        nxt = self._gate.finish(consumed.tp, consumed.key, consumed.offset)
        if not nxt:
            return None
        part = self._partitions.get(consumed.tp)
        return part.flights.get(nxt[0]) if part is not None else None

    def _flush_overflow(self) -> None:
        overflow = self._overflow
        while overflow and not self._committing:
            flight = overflow[0]
            assert flight.outcome is not None
            if not self.sink.produce(flight.outcome.record, flight):
                return
            overflow.popleft()
            if self._exactly_once:
                self._in_transaction_now(flight)

    def _in_transaction_now(self, flight: Flight) -> None:
        """Exactly once: the output is in the open transaction, which commits it together
        with the offset, so the offset is complete now rather than on acknowledgement."""
        self._in_transaction += 1
        record = flight.record
        part = self._partitions.get(record.tp)
        if part is not None and part.flights.get(record.offset) is flight:
            part.offsets.complete(record.offset)

    def _acknowledged(self, flight: Flight | None, error: BaseException | None) -> None:
        """A delivery report, served on the loop by the sink's poll."""
        if flight is None:  # a correction: no input offset waits for it
            if error is not None:
                log.warning("correction_not_acknowledged", error=str(error))
            return
        if flight.trace is not None:
            flight.trace.acknowledged(error)
        record = flight.record
        part = self._partitions.get(record.tp)
        if part is None or part.flights.get(record.offset) is not flight:
            return  # the partition was revoked, lost or rewound meanwhile
        if error is not None and self._exactly_once:
            # The open transaction cannot commit now: the next commit aborts it and redoes
            # its events instead.
            log.warning("output_not_acknowledged", error=str(error), in_transaction=True)
            if self._transaction_error is None:
                self._transaction_error = error
            return
        if error is not None:
            # Without an acknowledged output the offset must not be committed, and nothing
            # after it can be either: stop, and let a restart resume from the commit.
            log.error("output_not_acknowledged", error=str(error), error_class=type(error).__name__)
            part.idle.set()  # it can never drain now: a stop or revoke must not wait
            self._fail(error)
            return
        assert flight.outcome is not None
        self._counts.count(flight.outcome, self.clock())
        if self._on_output is not None:
            self._on_output(flight)
        if not self._exactly_once:
            part.offsets.complete(record.offset)
        del part.flights[record.offset]
        self._in_flight -= 1
        if not part.flights:
            part.idle.set()
        self._maybe_resume()

    def _late_verdict(self, work: Work, verdict: TaskVerdict) -> None:
        """A verdict came after its event's fallback: publish the correction."""
        correction = self.outcomes.correction(work.flight, work.task, verdict)
        if correction is None:
            return
        if self._committing:
            self._corrections.append(correction)  # produced once the commit is done
            return
        self._produce_correction(correction)

    def _produce_correction(self, correction: OutputRecord) -> None:
        try:
            produced = self.sink.produce(correction, None)
        except Exception as exc:  # a correction is information, not an event's output
            log.warning("correction_not_produced", error=str(exc))
            return
        if produced:
            self._corrected.inc()
        else:
            log.warning("correction_not_produced", error="the producer's queue is full")

    # -- the tick -----------------------------------------------------------------------------

    def _tick(self) -> None:
        self._tick_handle = None
        try:
            self._flush_overflow()
            self.sink.poll()
            now = self.clock()
            self._expire(now)
            for allocation in self.allocations.values():
                allocation.sweep(now)
        finally:
            busy = self._in_flight or self.sink.pending() or self._overflow
            loop = self._loop or asyncio.get_running_loop()
            self._tick_handle = loop.call_later(BUSY_TICK_S if busy else IDLE_TICK_S, self._tick)

    # -- backpressure -------------------------------------------------------------------------

    def _pause(self) -> None:
        self._paused = True
        self.metrics.paused.set(1)
        task = asyncio.get_running_loop().create_task(self.source.pause(list(self._partitions)))
        task.add_done_callback(_log_failure)
        log.info("intake_paused", in_flight=self._in_flight)

    def _maybe_resume(self) -> None:
        if not self._stopping:
            self.source.room = self._proc.max_in_flight - self._in_flight - len(self._intake)
        if (
            self._paused
            and not self._stopping
            and self._in_flight <= self._proc.max_in_flight // 2
            and (self._resuming is None or self._resuming.done())
        ):
            self._resuming = asyncio.get_running_loop().create_task(self._resume())

    async def _resume(self) -> None:
        self._paused = False
        self.metrics.paused.set(0)
        await self.source.resume(list(self._partitions))
        log.info("intake_resumed", in_flight=self._in_flight)

    # -- commits ------------------------------------------------------------------------------

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
                await self._rewind(error)
            else:
                self._mark_committed(points)
                self.metrics.commits.labels("ok").inc()
                self._in_transaction = 0
            self.sink.begin()
        finally:
            self._committing = False
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

    async def _rewind(self, error: BaseException) -> None:
        """Abort the open transaction and read every partition again from its last commit:
        the aborted outputs are never seen by read_committed readers, and their events are
        decided again."""
        fatal = isinstance(error, KafkaTransactionError) and error.fatal
        log.warning("transaction_aborted", error=str(error), renew_producer=fatal)
        self.metrics.commits.labels("aborted").inc()
        try:
            if fatal:
                await self.sink.renew()
            else:
                await self.sink.abort()
        except KafkaTransactionError as exc:
            log.warning("transaction_abort_failed", error=str(exc))
            await self.sink.renew()
        positions: dict[TopicPartition, int] = {}
        for tp, part in self._partitions.items():
            start = part.committed.offset if part.committed else part.first_offset
            part.rewinding = start is not None
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
        self._maybe_resume()
        # Seeking happens on the consumer thread, which may be inside a rebalance callback
        # waiting for this very loop: do not wait for it here.
        task = asyncio.get_running_loop().create_task(self._seek_back(positions))
        task.add_done_callback(_log_failure)

    async def _seek_back(self, positions: Mapping[TopicPartition, int]) -> None:
        await self.source.seek(positions)
        for tp in positions:
            part = self._partitions.get(tp)
            if part is not None:
                part.rewinding = False

    # -- rebalance (the consumer thread calls these; they run on the loop) --------------------

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
        self, partitions: Sequence[TopicPartition], committed: Mapping[TopicPartition, CommitPoint]
    ) -> None:
        for tp in partitions:
            point = committed.get(tp)
            done = decode_completed(point.offset, point.metadata) if point else frozenset()
            if done:
                log.info("completed_offsets_known", partition=tp.partition, count=len(done))
            self._partitions[tp] = part = _Partition(done)
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
        for tp in partitions:
            if tp in self._partitions:
                self._gate.reset_partition(tp)
                self._forget(tp)
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


def _reason_at_deadline(work: Work) -> FallbackReason:
    """Why ``work`` has no verdict at its event's deadline, from what it was doing then."""
    if work.state == "waiting":
        return "over_budget"
    if work.state == "backoff" and isinstance(work.error, RetryableError):
        return reason_of(work.error)
    return "deadline"


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("consumer_request_failed", error=str(task.exception()))
