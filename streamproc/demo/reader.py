"""Following output topics from chosen positions, and the broker facts the demo starts from.

:class:`TopicFollower` reads assigned partitions from explicit offsets, with no consumer group
coordination and no commits: the demo's end-to-end check and ``streamproc tail`` only watch,
and must not wait a group rebalance before the first record. The helpers below answer at
start: does a broker answer, where does each partition end, and has a consumer group been
given every partition of a topic. Failures leave as :class:`KafkaAdminError`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaTopicPartition
from confluent_kafka.admin import AdminClient

from streamproc.errors import KafkaAdminError
from streamproc.kafka.clientlogs import client_logger
from streamproc.kafka.records import ConsumedRecord, TopicPartition, consumed_record

FROM_BEGINNING: Final = OFFSET_BEGINNING
FROM_END: Final = OFFSET_END
_BATCH: Final = 500
_POLL_S: Final = 0.1
_SETTLING: Final = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)


def _consumer(config: Mapping[str, Any]) -> Consumer:
    # group.id is required by the client even for assign(); nothing is ever committed with it.
    return Consumer(
        {
            "group.id": f"streamproc-watch-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": False,
            "log_level": 3,
            **config,
        },
        logger=client_logger(),
    )


class TopicFollower:
    """Reads partitions from given offsets and hands every record to ``on_record``.

    ``run(stop)`` blocks until ``stop`` is set; call it on the thread that owns the follower.
    ``positions()`` (any thread) tells how far each partition has been read.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        starts: Mapping[TopicPartition, int],
        on_record: Callable[[ConsumedRecord], None],
    ) -> None:
        self._config = dict(config)
        self._starts = dict(starts)
        self._on_record = on_record
        self._lock = threading.Lock()
        self._positions = {tp: off for tp, off in starts.items() if off >= 0}

    def positions(self) -> dict[TopicPartition, int]:
        with self._lock:
            return dict(self._positions)

    def reached(self, targets: Mapping[TopicPartition, int]) -> bool:
        """Whether every partition in ``targets`` has been read up to its offset."""
        positions = self.positions()
        return all(positions.get(tp, -1) >= end for tp, end in targets.items())

    def run(self, stop: threading.Event) -> None:
        consumer = _consumer(self._config)
        try:
            consumer.assign(
                [
                    KafkaTopicPartition(tp.topic, tp.partition, off)
                    for tp, off in self._starts.items()
                ]
            )
            while not stop.is_set():
                for message in consumer.consume(_BATCH, timeout=_POLL_S):
                    if message.error() is not None:
                        continue  # transient (e.g. a leader moving); librdkafka retries
                    record = consumed_record(message)
                    self._on_record(record)
                    with self._lock:
                        self._positions[record.tp] = record.offset + 1
        finally:
            consumer.close()


def broker_problem(config: Mapping[str, Any], timeout_s: float = 5.0) -> str | None:
    """None when a broker answers a metadata request, else why not, in librdkafka's words."""
    admin = AdminClient({"log_level": 0, **_connection(config)}, logger=client_logger())
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else exc
        return str(error.str() if hasattr(error, "str") else error)
    return None if metadata.brokers else "the broker's metadata lists no broker"


def end_offsets(
    config: Mapping[str, Any], topics: Iterable[str], timeout_s: float = 10.0
) -> dict[TopicPartition, int]:
    """The current end (high watermark) of every partition of ``topics``."""
    deadline = time.monotonic() + timeout_s
    consumer = _consumer(config)
    try:
        ends: dict[TopicPartition, int] = {}
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
            if meta is None or meta.error is not None:
                raise KafkaAdminError("cannot read its partitions", topic=topic)
            for partition in meta.partitions:
                tp = KafkaTopicPartition(topic, partition)
                ends[TopicPartition(topic, partition)] = _high_watermark(consumer, tp, deadline)
        return ends
    except KafkaException as exc:
        raise KafkaAdminError(f"cannot read partition ends: {exc.args[0]}") from exc
    finally:
        consumer.close()


def _high_watermark(consumer: Consumer, tp: KafkaTopicPartition, deadline: float) -> int:
    # A topic created a moment ago can answer "not leader" for a while after its metadata
    # already names a leader: retry what the client calls retriable, until the deadline.
    while True:
        try:
            _low, high = consumer.get_watermark_offsets(
                tp, timeout=max(0.5, deadline - time.monotonic())
            )
            return int(high)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            retriable = isinstance(error, KafkaError) and (
                error.retriable() or error.code() in _SETTLING
            )
            if not retriable or time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def commit_positions(
    config: Mapping[str, Any], group: str, positions: Mapping[TopicPartition, int]
) -> None:
    """Set ``group``'s committed offsets (the group must have no running member)."""
    consumer = Consumer(
        {"log_level": 3, **config, "group.id": group, "enable.auto.commit": False},
        logger=client_logger(),
    )
    try:
        consumer.commit(
            offsets=[
                KafkaTopicPartition(tp.topic, tp.partition, off) for tp, off in positions.items()
            ],
            asynchronous=False,
        )
    except KafkaException as exc:
        raise KafkaAdminError(f"cannot set the start position of group {group!r}: {exc}") from exc
    finally:
        consumer.close()


def group_owns_all(
    config: Mapping[str, Any], group: str, partitions: Iterable[TopicPartition]
) -> bool:
    """Whether ``group`` is stable with every one of ``partitions`` assigned to a member."""
    admin = AdminClient({"log_level": 0, **_connection(config)}, logger=client_logger())
    try:
        future = admin.describe_consumer_groups([group], request_timeout=5)[group]
        description = future.result()
    except KafkaException:
        return False
    owned = {
        TopicPartition(tp.topic, tp.partition)
        for member in description.members
        for tp in (member.assignment.topic_partitions if member.assignment else ())
    }
    return set(partitions) <= owned


def wait_for(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll ``predicate`` until true or ``timeout_s`` passes; the last answer."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
    return True


def _connection(config: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("bootstrap.servers", "security.protocol", "sasl.", "ssl.", "client.id")
    return {k: v for k, v in config.items() if k.startswith(keys)}
