"""The broker the integration tests get is a real Kafka broker, and the Kafka fixtures isolate."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from streamproc.errors import KafkaAdminError
from streamproc.kafka.admin import TopicSpec, describe_partitions, ensure_topics, missing_topics
from tests.fixtures.kafka import (
    Record,
    TopicFactory,
    consume_records,
    delete_topics,
    produce_records,
    wait_until,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def scratch_topic_name(kafka_bootstrap: str) -> Iterator[str]:
    """A topic name nobody uses yet; the topic is deleted at teardown if a test created it."""
    name = f"scratch-{uuid.uuid4().hex[:12]}"
    yield name
    delete_topics(kafka_bootstrap, [name])


def high_watermarks(bootstrap: str, topic: str, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        )
    finally:
        consumer.close()


def test_records_round_trip_in_order_with_keys_and_headers(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    """Records from an idempotent acks=all producer come back to a fresh group in order, intact."""
    topic = topic_factory("roundtrip")
    records: list[Record] = [
        (f"card-{i % 7}".encode(), f'{{"n": {i}}}'.encode(), [("seq", str(i).encode()), ("t", b"")])
        for i in range(200)
    ]
    records.append((None, None, None))

    produce_records(kafka_bootstrap, topic, records)
    got = consume_records(kafka_bootstrap, topic, count=len(records), timeout_s=30)

    assert [(m.key(), m.value(), m.headers()) for m in got] == records
    assert [m.offset() for m in got] == list(range(len(records)))


def test_topics_from_the_factory_are_isolated(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    """Two factory topics get distinct names, their own partition counts and only their records."""
    first = topic_factory("iso")
    second = topic_factory("iso", partitions=3)
    produce_records(kafka_bootstrap, first, [(None, b"first", None)] * 5)
    produce_records(kafka_bootstrap, second, [(str(i).encode(), b"second", None) for i in range(7)])

    assert first != second
    assert (
        describe_partitions(kafka_bootstrap, first),
        describe_partitions(kafka_bootstrap, second),
    ) == (1, 3)
    assert high_watermarks(kafka_bootstrap, first, 1) == 5
    assert high_watermarks(kafka_bootstrap, second, 3) == 7
    got_first = consume_records(kafka_bootstrap, first, count=5, timeout_s=30)
    got_second = consume_records(kafka_bootstrap, second, count=7, timeout_s=30)
    assert {(m.topic(), m.value()) for m in got_first} == {(first, b"first")}
    assert {(m.topic(), m.value()) for m in got_second} == {(second, b"second")}


def test_ensure_topics_is_idempotent(kafka_bootstrap: str, scratch_topic_name: str) -> None:
    """ensure_topics creates a missing topic once and then leaves it exactly as it is."""
    spec = TopicSpec(partitions=2, config={"retention.ms": "3600000"})
    assert missing_topics(kafka_bootstrap, [scratch_topic_name]) == [scratch_topic_name]

    ensure_topics(kafka_bootstrap, {scratch_topic_name: spec})
    ensure_topics(kafka_bootstrap, {scratch_topic_name: spec})
    ensure_topics(kafka_bootstrap, {scratch_topic_name: 6})

    assert describe_partitions(kafka_bootstrap, scratch_topic_name) == 2
    assert missing_topics(kafka_bootstrap, [scratch_topic_name]) == []


def test_ensure_topics_reports_a_refused_request(kafka_bootstrap: str) -> None:
    """A topic the broker refuses to create raises KafkaAdminError naming it, not retriable."""
    with pytest.raises(KafkaAdminError, match="invalid") as raised:
        ensure_topics(kafka_bootstrap, {"not a topic name!": 1})

    assert raised.value.topic == "not a topic name!"
    assert not raised.value.retriable


def test_describe_partitions_of_a_missing_topic_raises(kafka_bootstrap: str) -> None:
    """Asking for a topic that does not exist raises instead of creating it (no auto-create)."""
    name = f"absent-{uuid.uuid4().hex[:12]}"

    with pytest.raises(KafkaAdminError, match="Unknown topic"):
        describe_partitions(kafka_bootstrap, name)
    assert missing_topics(kafka_bootstrap, [name]) == [name]


def test_transactions_commit_records_and_offsets_atomically(
    kafka_bootstrap: str, topic_factory: TopicFactory, unique_group: str
) -> None:
    """Read-process-write in a transaction: aborted records stay hidden, committed offsets stick.

    librdkafka's mock cluster accepts transactional offset commits without storing them, so
    this passes only against a real transaction coordinator.
    """
    source = topic_factory("txn-in")
    sink = topic_factory("txn-out")
    produce_records(kafka_bootstrap, source, [(None, b"event-0", None), (None, b"event-1", None)])
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": unique_group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "transactional.id": f"txn-{unique_group}"}
    )
    try:
        consumer.subscribe([source])
        batch: list[Message] = []

        def source_read() -> bool:
            batch.extend(consumer.consume(2 - len(batch), timeout=0.5))
            return len(batch) == 2

        wait_until(source_read, timeout_s=30, message="the source records")
        producer.init_transactions(30)

        producer.begin_transaction()
        producer.produce(sink, b"aborted")
        producer.abort_transaction(30)

        producer.begin_transaction()
        for message in batch:
            producer.produce(sink, b"scored-" + (message.value() or b""))
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30
        )
        producer.commit_transaction(30)

        committed = consumer.committed([TopicPartition(source, 0)], timeout=10)
    finally:
        consumer.close()

    assert [m.value() for m in batch] == [b"event-0", b"event-1"]
    assert committed[0].offset == 2
    got = consume_records(kafka_bootstrap, sink, count=len(batch), timeout_s=30)
    assert [m.value() for m in got] == [b"scored-event-0", b"scored-event-1"]
