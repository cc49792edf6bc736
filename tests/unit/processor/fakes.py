"""Test doubles for the processor runtime: no broker, no Control Room, no real waiting.

- :class:`FakeClock`: wall-clock seconds that move only when a test says so (deadlines).
- :class:`FakeExecutor`: scripted execute results per call or per event id: outputs, raised
  errors, or a :class:`Hold` that blocks the call on an ``asyncio.Event`` until released.
- :class:`FakeSink`: the producer. Records are queued by ``produce``; ``poll`` (the
  processor's tick) acknowledges them, except one held until released or failed with
  :class:`~streamproc.errors.KafkaDeliveryError`.
- :class:`FakeSource`: the engine's ``Source``: fed records are delivered to the processor as
  a batch (those of paused partitions once resumed), commits/pauses/resumes are recorded, and
  assign/revoke/lost call the processor's ``on_assigned/on_revoked/on_lost`` from a separate
  thread, as librdkafka does from the consumer thread. ``close`` does the final revoke, as a
  real consumer leaving the group does.
- :class:`Harness`: a whole :class:`~streamproc.processor.engine.Processor` wired to these.

Every double appends to a shared :class:`Timeline` so a test can check what happened before
what (an execute started only after an earlier event's output was acknowledged, say).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from streamproc.config import ApiTaskSettings, KafkaSettings, ProcessingSettings, Settings
from streamproc.core.circuit import CircuitBreaker
from streamproc.core.decisions import rfc3339_utc
from streamproc.core.offsets import CommitPoint
from streamproc.core.ordering import OrderingMode
from streamproc.core.retry import RetryPolicy
from streamproc.core.routing import RoutingSpec
from streamproc.core.values import BotValue, ListValue, NumberValue, StringValue
from streamproc.errors import KafkaDeliveryError, KafkaTransactionError
from streamproc.kafka.records import ConsumedRecord, OutputRecord, TopicPartition
from streamproc.observability.metrics import ProcessorMetrics
from streamproc.processor.allocation import Allocation
from streamproc.processor.engine import Processor
from streamproc.processor.flight import Flight, Tracer
from streamproc.processor.ports import Source

T0 = 1_700_000_000.0
INPUT = "transactions"
DECISIONS = "decisions"
DLQ = "transactions.dlq"
TP0 = TopicPartition(INPUT, 0)
TP1 = TopicPartition(INPUT, 1)
TP2 = TopicPartition(INPUT, 2)

Outputs = dict[str, BotValue]


# -- time and waiting -------------------------------------------------------------------------


class FakeClock:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def eventually(
    condition: Callable[[], bool], what: str = "condition", timeout_s: float = 3.0
) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout_s
    while not condition():
        if loop.time() > give_up:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.001)


async def settle(rounds: int = 50) -> None:
    """Let every ready task run a few steps: for asserting that something did *not* happen."""
    for _ in range(rounds):
        await asyncio.sleep(0)


# -- values -------------------------------------------------------------------------------------


def verdict(decision: str = "APPROVE", score: str = "12", *reasons: str) -> Outputs:
    """A botOutput the default fraud mapping reads as a verdict."""
    return {
        "oNumScore": NumberValue(Decimal(score)),
        "oStrDecision": StringValue(decision),
        "oLstReasons": ListValue(tuple(StringValue(r) for r in reasons)),
    }


def event_value(
    event_id: str, *, occurred_at: float = T0, amount: str = "10.00", **fields: Any
) -> bytes:
    """A valid card-transaction event as a record value (the amount as an exact JSON number)."""
    body = orjson.dumps(
        {"event_id": event_id, "occurred_at": rfc3339_utc(occurred_at), **fields}
    ).decode()
    return f'{body[:-1]}, "amount": {amount}}}'.encode()


def record(
    offset: int,
    *,
    key: str | None = "card-A",
    partition: int = 0,
    event_id: str | None = None,
    value: bytes | None = None,
    headers: list[tuple[str, bytes | None]] | None = None,
    **fields: Any,
) -> ConsumedRecord:
    """An input record; its event id is ``p<partition>-<offset>`` unless given."""
    eid = event_id or f"p{partition}-{offset}"
    return ConsumedRecord(
        topic=INPUT,
        partition=partition,
        offset=offset,
        key=key.encode() if key is not None else None,
        value=value if value is not None else event_value(eid, **fields),
        headers=headers if headers is not None else [("x-test-id", eid.encode())],
    )


def source_of(out: OutputRecord) -> tuple[int, int]:
    """(partition, offset) of the input record an output answers."""
    if out.topic == DLQ:
        headers = dict(out.headers)
        partition = headers["streamproc.error.source.partition"]
        offset = headers["streamproc.error.source.offset"]
        assert partition is not None
        assert offset is not None
        return int(partition), int(offset)
    src = orjson.loads(out.value)["source"]
    return int(src["partition"]), int(src["offset"])


def dead_letter_stages(outputs: Iterable[OutputRecord]) -> dict[tuple[int, int], str | None]:
    """The stage of every dead letter in ``outputs``, by (partition, offset) of its input."""
    return {
        source_of(out): header(out, "streamproc.error.stage") for out in outputs if out.topic == DLQ
    }


def header(out: OutputRecord, name: str) -> str | None:
    """The last value of header ``name``, decoded (readers take the last one, as Kafka's do)."""
    found = [v for k, v in out.headers if k == name]
    return found[-1].decode() if found and found[-1] is not None else None


def make_settings(
    *,
    tasks: Sequence[str] = ("fraud",),
    ordering: OrderingMode = "key",
    max_in_flight: int = 100,
    sla_ms: int = 60_000,
    min_useful_ms: int = 0,
    drain_timeout_s: float = 2.0,
    commit_interval_ms: int = 50,
    retry: RetryPolicy | None = None,
    task_overrides: Mapping[str, Any] | None = None,
    corrections_topic: str | None = None,
    **processing: Any,
) -> Settings:
    """Settings for unit tests: long SLA (deadlines never fire unless a test moves them)."""
    return Settings(
        kafka=KafkaSettings(
            input_topic=INPUT,
            decisions_topic=DECISIONS,
            dead_letter_topic=DLQ,
            corrections_topic=corrections_topic,
            commit_interval_ms=commit_interval_ms,
        ),
        api_tasks=tuple(
            ApiTaskSettings(
                name=name,
                repository_path=f"Automation Anywhere\\Bots\\{name}",
                **(task_overrides or {}),
            )
            for name in tasks
        ),
        routing=RoutingSpec(default_tasks=tuple(tasks)),
        processing=ProcessingSettings(
            ordering=ordering,
            max_in_flight=max_in_flight,
            decision_sla_ms=sla_ms,
            min_useful_ms=min_useful_ms,
            drain_timeout_s=drain_timeout_s,
            retry=retry or RetryPolicy(max_attempts=3, base_delay_ms=0, max_delay_ms=0),
            **processing,
        ),
    )


# -- the timeline -------------------------------------------------------------------------------


@dataclass
class Timeline:
    """What happened, in order: ("execute", event_id), ("produce", (partition, offset)),
    ("ack", (partition, offset)), ..."""

    entries: list[tuple[str, Any]] = field(default_factory=list)

    def add(self, kind: str, what: Any) -> None:
        self.entries.append((kind, what))

    def index(self, kind: str, what: Any) -> int:
        return self.entries.index((kind, what))

    def of(self, kind: str) -> list[Any]:
        return [what for k, what in self.entries if k == kind]


# -- the executor -------------------------------------------------------------------------------


class Hold:
    """Blocks an execute (or an acknowledgement) until :meth:`release`; then answers ``then``
    (an APPROVE verdict when not given)."""

    def __init__(self, then: Step | None = None) -> None:
        self.then = then
        self.entered = asyncio.Event()
        self._released = asyncio.Event()

    def release(self) -> None:
        self._released.set()

    @property
    def released(self) -> bool:
        return self._released.is_set()

    async def wait(self) -> None:
        self.entered.set()
        await self._released.wait()


class Advance:
    """Moves the fake clock by ``seconds`` (the call's latency in event time), then ``then``."""

    def __init__(self, clock: FakeClock, seconds: float, then: Step | None = None) -> None:
        self.clock = clock
        self.seconds = seconds
        self.then = then


Step = Outputs | BaseException | Hold | Advance


@dataclass(frozen=True)
class Call:
    event_id: str | None
    attempt: int
    headers: Mapping[str, str]
    timeout_s: float
    bot_input: Mapping[str, Any]  # the wire botInput: {"iStrEventId": {"type": ..., ...}}
    at: float  # loop time, for measuring backoff


@dataclass(frozen=True)
class Result:
    outputs: dict[str, BotValue]


class FakeExecutor:
    """An execute endpoint whose answers the test scripts.

    Steps are taken from the per-event script (``script(..., event_id=...)``) first, then from
    the shared script, then ``default``. A step is outputs, an exception to raise, a
    :class:`Hold`, or an :class:`Advance`; the last two wrap another step.
    """

    def __init__(self, default: Step | None = None, *, timeline: Timeline | None = None) -> None:
        self.default: Step = default if default is not None else verdict()
        self.timeline = timeline or Timeline()
        self.calls: list[Call] = []
        self.running = 0
        self.max_running = 0
        self.returned = 0
        self.cancelled = 0
        self._script: deque[Step] = deque()
        self._by_event: dict[str, deque[Step]] = defaultdict(deque)
        self._holds: dict[str, Hold] = {}

    def script(self, *steps: Step, event_id: str | None = None) -> None:
        (self._by_event[event_id] if event_id else self._script).extend(steps)

    def hold(self, event_id: str, then: Step | None = None) -> Hold:
        """Hold every attempt for ``event_id`` until released (then answer ``then``)."""
        held = Hold(then)
        self.script(held, event_id=event_id)
        self._holds[event_id] = held
        return held

    def called(self, event_id: str) -> bool:
        return any(c.event_id == event_id for c in self.calls)

    def event_ids(self) -> list[str | None]:
        return [c.event_id for c in self.calls]

    def _next(self, event_id: str | None) -> Step:
        queue = self._by_event.get(event_id) if event_id else None
        if queue:
            return queue.popleft()
        if self._script:
            return self._script.popleft()
        return self.default

    async def execute_body(
        self,
        body: bytes,
        *,
        timeout_s: float,
        headers: Mapping[str, str] | None = None,
    ) -> Result:
        bot_input = orjson.loads(body)["botInput"]
        eid_value = bot_input.get("iStrEventId")
        event_id = eid_value.get("string") if isinstance(eid_value, dict) else None
        hdrs = dict(headers or {})
        self.calls.append(
            Call(
                event_id,
                int(hdrs.get("X-Attempt", "0")),
                hdrs,
                timeout_s,
                dict(bot_input),
                asyncio.get_running_loop().time(),
            )
        )
        self.timeline.add("execute", event_id)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        step = self._next(event_id)
        try:
            while isinstance(step, Hold | Advance):
                if isinstance(step, Hold):
                    await step.wait()
                else:
                    step.clock.advance(step.seconds)
                step = step.then if step.then is not None else verdict()
            if isinstance(step, BaseException):
                raise step
            self.returned += 1
            return Result(dict(step))
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1


# -- the sink -------------------------------------------------------------------------------------


Match = Callable[[OutputRecord], bool]


def answering(partition: int, offset: int) -> Match:
    """Matches the output of the input record at (partition, offset)."""
    return lambda out: source_of(out) == (partition, offset)


class FakeSink:
    """The producer: ``produce`` queues, ``poll`` acknowledges in order, except a matching
    record held until released, or failed."""

    def __init__(self, on_delivery: Any, *, timeline: Timeline | None = None) -> None:
        self.on_delivery = on_delivery
        self.timeline = timeline or Timeline()
        self.attempted: list[OutputRecord] = []
        self.sent: list[OutputRecord] = []  # acknowledged, in acknowledgement order
        self.full = False  # True: produce() refuses, as librdkafka does with a full queue
        # Transactions (exactly once): what a read_committed reader sees, and what was not.
        self.visible: list[OutputRecord] = []
        self.aborted: list[OutputRecord] = []
        self.transaction_offsets: list[dict[TopicPartition, CommitPoint]] = []
        self.commit_failures: deque[BaseException] = deque()  # raised by the next commits
        self.renewals = 0
        self.renew_failures: deque[BaseException] = deque()  # raised by the next renewals
        # Transaction calls run to their end even when their caller gives up on them, as the
        # adapter's do in their own thread; a call made while another runs is refused, as
        # librdkafka refuses it ("Conflicting ... API call is already in progress").
        self.commit_hold: Hold | None = None  # the next commit waits for its release
        self.calls_refused = 0
        self._calling = False
        self._open: list[OutputRecord] = []
        self._queued: deque[tuple[OutputRecord, Flight | None]] = deque()
        self._holds: list[tuple[Match, Hold]] = []
        self._failures: list[tuple[Match, BaseException]] = []

    def hold(self, match: Match) -> Hold:
        held = Hold()
        self._holds.append((match, held))
        return held

    def fail(self, match: Match, error: BaseException | None = None) -> None:
        self._failures.append(
            (match, error or KafkaDeliveryError("Local: Message timed out", topic=DECISIONS))
        )

    def produce(self, record: OutputRecord, token: Flight | None) -> bool:
        if self.full:
            return False
        for match, error in self._failures:
            if match(record) and not isinstance(error, KafkaDeliveryError):
                raise error  # produce() itself failed, as librdkafka's does on a fatal error
        self.attempted.append(record)
        self._open.append(record)
        self.timeline.add("produce", source_of(record))
        self._queued.append((record, token))
        return True

    def poll(self) -> int:
        served = 0
        still: deque[tuple[OutputRecord, Flight | None]] = deque()
        while self._queued:
            record, token = self._queued.popleft()
            held = next((h for m, h in self._holds if m(record) and not h.released), None)
            if held is not None:
                held.entered.set()
                still.append((record, token))
                continue
            served += 1
            error = next((e for m, e in self._failures if m(record)), None)
            if error is not None:
                self.on_delivery(token, error)
                continue
            self.sent.append(record)
            self.timeline.add("ack", source_of(record))
            self.on_delivery(token, None)
        self._queued = still
        return served

    def pending(self) -> int:
        return len(self._queued)

    @property
    def left_open(self) -> list[OutputRecord]:
        """Produced into the transaction now open: neither committed nor aborted yet."""
        return list(self._open)

    async def start_transactions(self) -> None:
        self._open = []

    def begin(self) -> None:
        self._open = []

    async def commit(self, offsets: Mapping[TopicPartition, CommitPoint], group: Any) -> None:
        assert group == "group-metadata"
        assert not self._queued, "commit with outputs not yet acknowledged"
        await asyncio.shield(self._call(lambda: self._commit(dict(offsets))))

    async def _commit(self, offsets: dict[TopicPartition, CommitPoint]) -> None:
        held, self.commit_hold = self.commit_hold, None
        if held is not None:
            await held.wait()
        if self.commit_failures:
            raise self.commit_failures.popleft()
        self.visible.extend(self._open)
        self.transaction_offsets.append(offsets)
        self._open = []

    async def abort(self) -> None:
        await asyncio.shield(self._call(self._abort))

    async def _abort(self) -> None:
        self.aborted.extend(self._open)
        self._open = []
        self._queued.clear()

    async def _call(self, work: Callable[[], Awaitable[None]]) -> None:
        if self._calling:
            self.calls_refused += 1
            raise KafkaTransactionError(
                "Conflicting transaction API call is already in progress",
                operation="commit",
                retriable=True,
            )
        self._calling = True
        try:
            await work()
        finally:
            self._calling = False

    async def renew(self) -> None:
        """A new producer: registering its id aborts what the old one left open."""
        if self.renew_failures:
            raise self.renew_failures.popleft()
        self.renewals += 1
        await self._abort()

    def by_source(self) -> dict[tuple[int, int], list[OutputRecord]]:
        found: dict[tuple[int, int], list[OutputRecord]] = defaultdict(list)
        for out in self.sent:
            found[source_of(out)].append(out)
        return dict(found)

    def answered(self, partition: int, offset: int) -> bool:
        return any(source_of(out) == (partition, offset) for out in self.sent)


# -- the source ----------------------------------------------------------------------------------


class FakeSource:
    """The engine's ``Source``, with rebalance callbacks on a thread of their own."""

    def __init__(self, listener: Processor, assignment: Iterable[TopicPartition] = (TP0,)) -> None:
        self.listener = listener
        self.initial = list(assignment)
        self.assigned: list[TopicPartition] = []
        self.pending: list[ConsumedRecord] = []
        self.paused: set[TopicPartition] = set()
        self.pauses: list[list[TopicPartition]] = []
        self.resumes: list[list[TopicPartition]] = []
        self.commits: list[dict[TopicPartition, int]] = []  # every successful commit, in order
        self.points: list[dict[TopicPartition, CommitPoint]] = []  # the same, with metadata
        self.committed_before: dict[TopicPartition, CommitPoint] = {}  # read at assignment
        self.commit_results: deque[bool] = deque()  # scripted results; True once exhausted
        self.revoke_results: list[dict[TopicPartition, int]] = []
        self.callback_threads: set[int] = set()
        self.polls = 0  # rounds of the consumer loop, paused or not
        self.history: dict[TopicPartition, list[ConsumedRecord]] = {}  # every record fed
        self.seeks: list[dict[TopicPartition, int]] = []
        self.room = 0
        self.last_poll_monotonic = 0.0
        self.joined = False
        self.started = False
        self.closed = False
        self._deliver: Callable[[list[ConsumedRecord]], None] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self.fail: Callable[[BaseException], None] | None = None

    # -- what tests call

    def feed(self, *records: ConsumedRecord) -> None:
        """Deliver ``records`` in this order (those of paused partitions once resumed), no more
        at a time than the processor has room for, as the consumer thread does."""
        self.pending.extend(records)
        for rec in records:
            self.history.setdefault(rec.tp, []).append(rec)

    def committed(self, tp: TopicPartition) -> int | None:
        """The last position committed for ``tp`` (by the commit loop or a revoke)."""
        positions = [c[tp] for c in self.commits if tp in c]
        return positions[-1] if positions else None

    def highest_commit(self, tp: TopicPartition) -> int | None:
        positions = [c[tp] for c in self.commits if tp in c]
        return max(positions) if positions else None

    async def assign(self, partitions: Sequence[TopicPartition]) -> None:
        committed = {tp: p for tp, p in self.committed_before.items() if tp in partitions}
        await asyncio.to_thread(
            self._callback, lambda tps: self.listener.on_assigned(tps, committed), partitions
        )
        self.assigned.extend(partitions)
        self.joined = True

    async def revoke(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The rebalance callback: blocks (on its thread) until the processor has drained."""
        points = dict(await asyncio.to_thread(self._callback, self.listener.on_revoked, partitions))
        positions = {tp: point.offset for tp, point in points.items()}
        self.revoke_results.append(positions)
        if positions:
            self.commits.append(positions)  # a real source commits them synchronously
            self.points.append(points)
        self.assigned = [tp for tp in self.assigned if tp not in partitions]
        self.paused.difference_update(partitions)
        return positions

    async def lose(self, partitions: Sequence[TopicPartition]) -> None:
        await asyncio.to_thread(self._callback, self.listener.on_lost, partitions)
        self.assigned = [tp for tp in self.assigned if tp not in partitions]
        self.paused.difference_update(partitions)

    def _callback(self, fn: Callable[[Sequence[TopicPartition]], Any], tps: Any) -> Any:
        self.callback_threads.add(threading.get_ident())
        return fn(list(tps))

    async def _consume(self) -> None:
        while not self.closed:
            self.polls += 1
            self.last_poll_monotonic = time.monotonic()
            room = max(1, self.room)
            batch = [r for r in self.pending if r.tp not in self.paused][:room]
            if batch and self._deliver is not None and self.room > 0:
                taken = set(map(id, batch))
                self.pending = [r for r in self.pending if id(r) not in taken]
                self._deliver(batch)
            await asyncio.sleep(0.001)

    # -- the Source protocol

    async def start(
        self,
        deliver: Callable[[list[ConsumedRecord]], None],
        fail: Callable[[BaseException], None],
    ) -> None:
        self.started = True
        self._deliver = deliver
        self.fail = fail
        if self.initial:
            await self.assign(self.initial)
        self._loop_task = asyncio.create_task(self._consume(), name="fake-consumer")

    async def commit(self, points: Mapping[TopicPartition, CommitPoint]) -> bool:
        ok = self.commit_results.popleft() if self.commit_results else True
        if ok:
            self.commits.append({tp: point.offset for tp, point in points.items()})
            self.points.append(dict(points))
        return ok

    def seek(self, positions: Mapping[TopicPartition, int]) -> None:
        """Read again from ``positions``: what was fed from there on comes once more."""
        self.seeks.append(dict(positions))
        self.pending = [r for r in self.pending if r.tp not in positions]
        for tp, offset in positions.items():
            self.pending.extend(r for r in self.history.get(tp, []) if r.offset >= offset)

    def group_metadata(self) -> Any:
        return "group-metadata"

    async def pause(self, partitions: Sequence[TopicPartition]) -> None:
        self.pauses.append(list(partitions))
        self.paused.update(partitions)

    async def resume(self, partitions: Sequence[TopicPartition]) -> None:
        self.resumes.append(list(partitions))
        self.paused.difference_update(partitions)

    async def close(self) -> None:
        """Leave the group: the final revoke commits what the processor says is safe."""
        if self.assigned:
            await self.revoke(list(self.assigned))
        self.closed = True


# -- the whole processor ---------------------------------------------------------------------------


@dataclass
class Harness:
    """A processor wired to fakes; ``start()`` runs it, ``stop()`` drains it."""

    settings: Settings
    clock: FakeClock
    timeline: Timeline
    metrics: ProcessorMetrics
    executors: dict[str, FakeExecutor]
    allocations: dict[str, Allocation]
    processor: Processor
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def source(self) -> FakeSource:
        assert isinstance(self.processor.source, FakeSource)
        return self.processor.source

    @property
    def sink(self) -> FakeSink:
        assert isinstance(self.processor.sink, FakeSink)
        return self.processor.sink

    @property
    def executor(self) -> FakeExecutor:
        return next(iter(self.executors.values()))

    @property
    def allocation(self) -> Allocation:
        return next(iter(self.allocations.values()))

    async def start(self) -> None:
        self.task = asyncio.create_task(self.processor.run(self.stop_event), name="processor")
        started = asyncio.create_task(self.processor.started.wait())
        done, _ = await asyncio.wait({started, self.task}, timeout=3, return_when="FIRST_COMPLETED")
        if started not in done:
            started.cancel()
            if self.task in done:
                self.task.result()  # raises what stopped it
            raise AssertionError("the processor did not start")

    @property
    def running(self) -> asyncio.Task[None]:
        """The task of ``run()``; exists once started."""
        assert self.task is not None, "start() the harness first"
        return self.task

    def request_stop(self) -> None:
        self.stop_event.set()

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Stop, wait for the drain, and re-raise whatever ``run()`` raised."""
        self.request_stop()
        assert self.task is not None
        await asyncio.wait_for(asyncio.shield(self.task), timeout_s)

    async def outputs(self, count: int, what: str = "outputs") -> list[OutputRecord]:
        await eventually(lambda: len(self.sink.sent) >= count, f"{count} {what}")
        return self.sink.sent

    async def aclose(self) -> None:
        """Teardown: stop if still running, releasing every hold so the drain can finish."""
        if self.task is not None and not self.task.done():
            self.request_stop()
            for held in self._holds():
                held.release()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self.task, 5)

    def _holds(self) -> list[Hold]:
        found = [held for ex in self.executors.values() for held in ex._holds.values()]
        return found + [held for _, held in self.sink._holds]


def build(
    settings: Settings | None = None,
    *,
    assignment: Iterable[TopicPartition] = (TP0,),
    executors: Mapping[str, FakeExecutor] | None = None,
    limits: Mapping[str, int] | None = None,
    clock: FakeClock | None = None,
    circuit: CircuitBreaker | None = None,
    on_assignment: Callable[[Sequence[TopicPartition]], Awaitable[None]] | None = None,
    on_output: Callable[[Flight], None] | None = None,
    tracer: Tracer | None = None,
    source: Callable[[Processor], Source] | None = None,
) -> Harness:
    """A processor with fake source, sink and executors; one executor per API Task.
    ``source`` makes another source than :class:`FakeSource` (``assignment`` is then its own)."""
    settings = settings or make_settings()
    clock = clock or FakeClock()
    timeline = Timeline()
    metrics = ProcessorMetrics()
    executors = dict(executors or {})
    for task in settings.api_tasks:
        executors.setdefault(task.name, FakeExecutor(timeline=timeline))
        executors[task.name].timeline = timeline
    proc = settings.processing
    allocations = {
        t.name: Allocation(
            t,
            executors[t.name],
            limit=(limits or {}).get(t.name, 1_000),
            retry=proc.retry,
            metrics=metrics,
            admission=proc.admission,
            circuit=circuit or CircuitBreaker(proc.circuit_breaker),
            clock=clock,
            monotonic=clock,
            rand=lambda: 0.0,
        )
        for t in settings.api_tasks
    }
    tps = list(assignment)
    processor = Processor(
        settings,
        source or (lambda p: FakeSource(p, tps)),
        lambda on_delivery: FakeSink(on_delivery, timeline=timeline),
        allocations,
        metrics,
        on_assignment=on_assignment,
        on_output=on_output,
        tracer=tracer,
        clock=clock,
    )
    return Harness(settings, clock, timeline, metrics, executors, allocations, processor)


def sample(metrics: ProcessorMetrics, name: str, **labels: str) -> float:
    """The current value of a sample (0.0 when it was never set)."""
    value = metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


async def gather_bounded(*aws: Awaitable[Any], timeout_s: float = 3.0) -> list[Any]:
    return list(await asyncio.wait_for(asyncio.gather(*aws), timeout_s))


def body(out: OutputRecord) -> Any:
    """An output record's JSON value."""
    assert out.value is not None
    return orjson.loads(out.value)


async def answer_of(h: Harness, partition: int, offset: int) -> OutputRecord:
    """The one acknowledged output for the input record at (partition, offset)."""
    await eventually(lambda: h.sink.answered(partition, offset), f"the output of {offset}")
    (out,) = h.sink.by_source()[(partition, offset)]
    return out
