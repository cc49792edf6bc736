"""The fault tests' topics: made fresh for each test, read back whole after it.

Every topic a fault test makes stamps records with the broker's append time
(``message.timestamp.type=LogAppendTime``): an output's timestamp is when the broker wrote it,
whichever process produced it, so gaps and commit order are read from the broker's own clock.
Accounting is done after the run from a full read of the input and output topics
(``read_committed``): each input record's event id (the ``x-sample-event-id`` header of every
sample record, malformed ones too) must come out exactly once, as a decision (its
``event_id``) or a dead letter (the original headers, kept).

A read_committed reader stops at each partition's last stable offset: a transaction left open
hides every record after its first one, however committed, until the broker times it out. So
before reading, the outputs must have no transaction open (every member has stopped by then,
and a stopped member leaves none); one still open fails the run as such
(:class:`TransactionLeftOpen`), not as events lost.

During a broker failover a coordinator or a leader refuses for a moment (NOT_COORDINATOR,
OFFSET_NOT_AVAILABLE); the reads here ask again rather than fail the test.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeVar

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupState,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from bench.stack import Topics
from streamproc.kafka.admin import TopicSpec, ensure_topics
from tests.fixtures import kafka
from tests.fixtures.kafka import wait_until

EVENT_ID_HEADER = "x-sample-event-id"
# The ``fault_topics`` fixture: fresh_topics' arguments, the topics deleted after the test.
TopicsFactory = Callable[..., Topics]
APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}
T = TypeVar("T")


def fresh_topics(
    servers: str,
    partitions: int,
    *,
    replication: int | None = None,
    decisions_replicas: list[list[int]] | None = None,
    decisions_config: Mapping[str, str] | None = None,
) -> Topics:
    """New input, decisions and dead-letter topics, stamped with the broker's append time.
    ``decisions_replicas`` places the decisions partitions on chosen brokers (one list of
    broker ids per partition, the preferred leader first)."""
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(f"fault-tx-{suffix}", f"fault-decisions-{suffix}", f"fault-dlq-{suffix}")
    decisions_settings = {**APPEND_TIME, **(decisions_config or {})}
    if decisions_replicas is not None:
        admin = AdminClient({"bootstrap.servers": servers})
        wanted = NewTopic(
            topics.decisions,
            num_partitions=len(decisions_replicas),
            replica_assignment=decisions_replicas,
            config=decisions_settings,
        )
        admin.create_topics([wanted])[topics.decisions].result(30)
    ensure_topics(
        servers,
        {
            topics.input: TopicSpec(partitions, replication, APPEND_TIME),
            topics.decisions: TopicSpec(partitions, replication, decisions_settings),
            topics.dlq: TopicSpec(1, replication, APPEND_TIME),
        },
    )
    return topics


def delete_topics(servers: str, topics: Topics) -> None:
    kafka.delete_topics(servers, [topics.input, topics.decisions, topics.dlq])


@dataclass(frozen=True, slots=True)
class InputRecord:
    event_id: str
    partition: int
    offset: int
    appended: float  # epoch seconds


@dataclass(frozen=True, slots=True)
class OutputRecord:
    event_id: str
    topic: str
    partition: int
    offset: int
    appended: float  # epoch seconds: when the broker wrote it
    dead_letter: bool
    decision: Mapping[str, Any] | None  # the decoded decision; None for a dead letter
    source: tuple[int, int] | None  # the input's (partition, offset)


def _header(msg: Message, name: str) -> bytes | None:
    for key, value in msg.headers() or ():
        if key == name:
            return value.encode() if isinstance(value, str) else value
    return None


def read_all(servers: str, topics: list[str], timeout_s: float = 60.0) -> list[Message]:
    """Every committed record of ``topics``, read from the beginning to the end."""
    consumer = Consumer(
        {
            "bootstrap.servers": servers,
            "group.id": f"fault-read-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    try:
        metadata = consumer.list_topics(timeout=10)
        parts = [
            TopicPartition(topic, p, OFFSET_BEGINNING)
            for topic in topics
            for p in metadata.topics[topic].partitions
        ]
        consumer.assign(parts)
        pending = {(tp.topic, tp.partition) for tp in parts}
        got: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topics} did not reach the end of {sorted(pending)}")
            for msg in consumer.consume(1000, 0.5):
                error = msg.error()
                if error is None:
                    got.append(msg)
                elif error.code() == KafkaError._PARTITION_EOF:
                    pending.discard((msg.topic(), msg.partition()))
                else:
                    raise RuntimeError(f"reading {msg.topic()}: {error.str()}")
        return got
    finally:
        consumer.close()


def read_inputs(servers: str, topics: Topics) -> dict[str, InputRecord]:
    """Each input record by its event id. An id written twice (the load generator's producer
    sent a record again) would make two outputs right, so it fails the read instead."""
    inputs: dict[str, InputRecord] = {}
    repeated: list[tuple[InputRecord, InputRecord]] = []
    for msg in read_all(servers, [topics.input]):
        raw = _header(msg, EVENT_ID_HEADER)
        assert raw is not None, f"input {msg.partition()}:{msg.offset()} has no event id header"
        event_id = raw.decode()
        record = InputRecord(event_id, msg.partition(), msg.offset(), msg.timestamp()[1] / 1000)
        if event_id in inputs:
            repeated.append((inputs[event_id], record))
        inputs[event_id] = record
    assert not repeated, f"{len(repeated)} event ids are in the input twice: {repeated[:3]}"
    return inputs


def read_outputs(servers: str, topics: Topics) -> list[OutputRecord]:
    outputs = []
    for msg in read_all(servers, [topics.decisions, topics.dlq]):
        decision: dict[str, Any] | None = None
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        assert topic is not None
        assert partition is not None
        assert offset is not None
        if topic == topics.decisions:
            decision = orjson.loads(msg.value() or b"null")
            event_id = str(decision["event_id"])
            source = decision["source"]
            part, off = source["partition"], source["offset"]
        else:
            raw = _header(msg, EVENT_ID_HEADER)
            event_id = raw.decode() if raw else f"?{offset}"
            part = _header(msg, "streamproc.error.source.partition")
            off = _header(msg, "streamproc.error.source.offset")
        outputs.append(
            OutputRecord(
                event_id=event_id,
                topic=topic,
                partition=partition,
                offset=offset,
                appended=msg.timestamp()[1] / 1000,
                dead_letter=decision is None,
                decision=decision,
                source=(int(part), int(off)) if part is not None and off is not None else None,
            )
        )
    return outputs


@dataclass(frozen=True)
class Outcome:
    """What a run's input and output topics held at its end."""

    inputs: dict[str, InputRecord]
    outputs: list[OutputRecord]
    tally: Tally


def outcome(servers: str, topics: Topics) -> Outcome:
    inputs = read_inputs(servers, topics)
    no_transaction_open(servers, [topics.decisions, topics.dlq])
    outputs = read_outputs(servers, topics)
    return Outcome(inputs, outputs, tally(inputs, outputs))


class TransactionLeftOpen(AssertionError):
    """An output partition's last stable offset stays below its high watermark."""


# A commit's markers follow its EndTxn answer by milliseconds; far below the processor's
# transaction.timeout.ms (30 s), after which the broker would abort the transaction itself.
MARKERS_WRITTEN_S = 10.0


def open_transactions(servers: str, topics: Iterable[str]) -> dict[tuple[str, int], range]:
    """Partitions of ``topics`` where a transaction is open: (topic, partition) -> the offsets
    from the last stable one to the high watermark, which read_committed readers do not see."""
    admin = AdminClient({"bootstrap.servers": servers})
    metadata = _through_failover(lambda: admin.list_topics(timeout=10))
    parts = [TopicPartition(t, p) for t in topics for p in metadata.topics[t].partitions]

    def ends(level: IsolationLevel) -> dict[tuple[str, int], int]:
        asked = {tp: OffsetSpec.latest() for tp in parts}
        futures = admin.list_offsets(asked, isolation_level=level, request_timeout=10)
        return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}

    stable = _through_failover(lambda: ends(IsolationLevel.READ_COMMITTED))
    high = _through_failover(lambda: ends(IsolationLevel.READ_UNCOMMITTED))
    return {k: range(stable[k], high[k]) for k in high if stable[k] < high[k]}


def no_transaction_open(
    servers: str, topics: list[str], timeout_s: float = MARKERS_WRITTEN_S
) -> None:
    """Wait until no partition of ``topics`` has a transaction open; else fail, naming where
    each open one starts and what its first record answers."""
    try:
        wait_until(
            lambda: not open_transactions(servers, topics),
            timeout_s, 0.2, f"no transaction open on {topics}",
        )  # fmt: skip
    except TimeoutError:
        still = open_transactions(servers, topics)
        if not still:
            return
        where = "; ".join(
            f"{t}[{p}] from offset {hidden.start} to {hidden.stop} "
            f"({_describe_record(servers, t, p, hidden.start)})"
            for (t, p), hidden in sorted(still.items())
        )
        raise TransactionLeftOpen(f"transaction left open {timeout_s:g} s on: {where}") from None


def _describe_record(servers: str, topic: str, partition: int, offset: int) -> str:
    """What the output record at ``offset`` answers and when it was written, read
    uncommitted: the first record of a transaction left open names who opened it when."""
    consumer = Consumer(
        {
            "bootstrap.servers": servers,
            "group.id": f"fault-read-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_uncommitted",
        }
    )
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        for msg in consumer.consume(1, 10):
            if msg.error() is not None:
                return f"unreadable: {msg.error()}"
            written = time.strftime("%H:%M:%S", time.localtime(msg.timestamp()[1] / 1000))
            value = msg.value()
            if topic.startswith("fault-decisions-") and value:
                return f"written {written}, answers {orjson.loads(value).get('source')}"
            return f"written {written}"
        return "not readable uncommitted either"
    finally:
        consumer.close()


@dataclass(frozen=True)
class Tally:
    """Inputs against outputs, by event id."""

    offered: int
    lost: list[str]
    duplicated: int
    decisions: int
    dead_letters: int
    unknown: int  # outputs whose event id is not among the inputs

    def describe(self) -> str:
        return (
            f"offered={self.offered} decisions={self.decisions} "
            f"dead_letters={self.dead_letters} lost={len(self.lost)} "
            f"duplicated={self.duplicated} unknown={self.unknown}"
        )


def tally(inputs: Mapping[str, InputRecord], outputs: list[OutputRecord]) -> Tally:
    counts = Counter(o.event_id for o in outputs)
    return Tally(
        offered=len(inputs),
        lost=sorted(set(inputs) - set(counts)),
        duplicated=sum(n - 1 for n in counts.values() if n > 1),
        decisions=sum(1 for o in outputs if not o.dead_letter),
        dead_letters=sum(1 for o in outputs if o.dead_letter),
        unknown=sum(1 for event_id in counts if event_id not in inputs),
    )


def _through_failover(ask: Callable[[], T], timeout_s: float = 30.0) -> T:
    """``ask()``, asked again while a broker failover makes it fail (a coordinator or leader
    that moved, a new leader's high watermark not caught up yet)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ask()
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    return sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)


def end_offsets(servers: str, topic: str) -> dict[int, int]:
    """Each partition's high watermark: the offset after its last record."""
    consumer = Consumer({"bootstrap.servers": servers, "group.id": "fault-ends"})
    try:

        def end(partition: int) -> int:
            high: int = consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)[1]
            return high

        return {p: _through_failover(lambda p=p: end(p)) for p in _partitions(consumer, topic)}
    finally:
        consumer.close()


class Commits:
    """The positions a group has committed on a topic, by partition (-1001 where none), asked
    of its coordinator without joining the group."""

    def __init__(self, servers: str, group: str, topic: str) -> None:
        self._consumer = Consumer({"bootstrap.servers": servers, "group.id": group})
        self._parts = [TopicPartition(topic, p) for p in _partitions(self._consumer, topic)]

    def __call__(self) -> dict[int, int]:
        answer = _through_failover(lambda: self._consumer.committed(self._parts, timeout=10))
        return {tp.partition: tp.offset for tp in answer}

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> Commits:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def wait_for_advance(self, timeout_s: float) -> bool:
        """Until a commit moves some position (True), or ``timeout_s`` passes (False)."""
        before = self()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self() != before:
                return True
        return False


def assignment(servers: str, group: str) -> list[int]:
    """How many partitions each member of ``group`` owns, by its coordinator (sorted); empty
    while the group rebalances."""
    admin = AdminClient({"bootstrap.servers": servers})  # alive until the answer comes
    description = admin.describe_consumer_groups([group])[group].result(10)
    if description.state != ConsumerGroupState.STABLE:
        return []
    return sorted(len(m.assignment.topic_partitions) for m in description.members)


def longest_gap(
    outputs: list[OutputRecord], start: float, end: float, partitions: Iterable[int]
) -> float:
    """The longest time within [start, end] in which one of the decisions ``partitions`` got
    no record: how long processing stalled there (seconds, by the broker's append times)."""
    times: dict[int, list[float]] = {p: [] for p in partitions}
    for o in outputs:
        if not o.dead_letter and start <= o.appended <= end:
            times[o.partition].append(o.appended)
    longest = 0.0
    for appended in times.values():
        edges = [start, *sorted(appended), end]
        longest = max(longest, *(b - a for a, b in pairwise(edges)))
    return longest
