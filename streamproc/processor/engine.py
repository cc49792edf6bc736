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

Commits and transactions are in :mod:`.commits`; rebalances, which run on the consumer thread
and hop here, in :mod:`.rebalance`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence

from streamproc.config import Settings
from streamproc.core.decisions import FallbackReason
from streamproc.core.events import decode_event
from streamproc.core.mapping import TaskVerdict
from streamproc.core.offsets import TopicPartition
from streamproc.core.ordering import OrderingGate
from streamproc.errors import BadInputError, KafkaDeliveryError, RetryableError
from streamproc.kafka.records import ConsumedRecord, OutputRecord
from streamproc.logs import get_logger
from streamproc.observability.metrics import ProcessorMetrics
from streamproc.processor.allocation import Allocation, reason_of
from streamproc.processor.arrival import Arrival
from streamproc.processor.flight import Flight, Tracer, Work
from streamproc.processor.outcomes import Outcome, OutcomeCounts, Outcomes
from streamproc.processor.partition import PartitionState
from streamproc.processor.ports import BUSY_TICK_S, Sink, Source, log_failure
from streamproc.processor.rebalance import Rebalancing

log = get_logger("processor")

# Records taken in per turn of the event loop (about a millisecond of work).
_INTAKE_CHUNK = 32
IDLE_TICK_S = 0.1


class Processor(Rebalancing):
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
        self._partitions: dict[TopicPartition, PartitionState] = {}
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
        committer.add_done_callback(self._commit_loop_ended)
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

    def ready(self) -> bool:
        """Running and in the group with an assignment: events produced from now on are read
        at once, not after a join (which is what a load balancer or a rollout waits for)."""
        return self.started.is_set() and self.source.joined

    def _fail(self, error: BaseException) -> None:
        if self._fatal is None:
            self._fatal = error
        self._halt.set()

    def _commit_loop_ended(self, committer: asyncio.Task[None]) -> None:
        """Without its commit loop the processor would go on consuming and commit nothing
        more (exactly once: with its transaction left open): stop, and let a restart resume
        from the last commit."""
        if committer.cancelled() or committer.exception() is None:
            return
        error = committer.exception()
        assert error is not None
        log.error("commit_loop_failed", error=str(error), error_class=type(error).__name__)
        self._fail(error)

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
        # Executes still running are late ones, of events already decided: closing them now
        # means no verdict comes after the final commit, whose correction would be produced
        # into a transaction nobody commits (holding read_committed readers back until the
        # broker aborts it).
        await asyncio.gather(*(a.aclose() for a in self.allocations.values()))
        # Between two commits: a transaction call cut off midway goes on in the producer's
        # thread, and the final commit would collide with it and abort for nothing.
        async with self._commit_lock:
            committer.cancel()
            await asyncio.gather(committer, return_exceptions=True)
        await self._commit()
        await self.source.close()  # the final revoke commits again; nothing is left in flight
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
            if part is None or part.revoking:
                continue  # fetched before a revoke: the next owner reads it
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
        task.add_done_callback(log_failure)
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


def _reason_at_deadline(work: Work) -> FallbackReason:
    """Why ``work`` has no verdict at its event's deadline, from what it was doing then."""
    if work.state == "waiting":
        return "over_budget"
    if work.state == "backoff" and isinstance(work.error, RetryableError):
        return reason_of(work.error)
    return "deadline"
