"""KafkaSource.seek: records read before a seek are dropped for the partitions it moves, from
the moment it is asked; every other record is delivered."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaTopicPartition

from streamproc.kafka.consumer import KafkaSource
from streamproc.kafka.records import ConsumedRecord, TopicPartition

P0, P1 = TopicPartition("t", 0), TopicPartition("t", 1)


class SeekingConsumer:
    """Seeks as librdkafka does; ``refusing`` partitions refuse with that error code."""

    def __init__(
        self, owned: list[TopicPartition], refusing: dict[TopicPartition, int] | None = None
    ) -> None:
        self.owned = [KafkaTopicPartition(t, p) for t, p in owned]
        self.refusing = refusing or {}
        self.seeks: list[tuple[str, int, int]] = []

    def assignment(self) -> list[KafkaTopicPartition]:
        return self.owned

    def seek(self, tp: KafkaTopicPartition) -> None:
        code = self.refusing.get(TopicPartition(tp.topic, tp.partition))
        if code is not None:
            raise KafkaException(KafkaError(code, f"Failed to seek to offset {tp.offset}"))
        self.seeks.append((tp.topic, tp.partition, tp.offset))


class NoListener:
    def on_assigned(self, partitions: Any, committed: Any = None) -> None: ...
    def on_revoked(self, partitions: Any) -> dict[TopicPartition, int]:
        return {}

    def on_lost(self, partitions: Any) -> None: ...


def rec(tp: TopicPartition, offset: int) -> ConsumedRecord:
    return ConsumedRecord(tp.topic, tp.partition, offset, b"k", b"{}")


def test_a_seek_drops_only_what_its_partitions_read_before_it() -> None:
    """A batch read before the seek, delivered after it was asked, loses the sought
    partition's records and keeps the others'; once the consumer thread has sought, what it
    reads is delivered, whenever the loop gets to it."""
    source = KafkaSource({}, ["t"], NoListener())
    consumer = SeekingConsumer(owned=[P0, P1])
    source._consumer = consumer  # the adapter's own seam: no broker, no thread
    delivered: list[ConsumedRecord] = []
    read_before = source._seeks_applied

    source.seek({P0: 3})
    source._take(delivered.extend, [rec(P0, 7), rec(P1, 20)], read_before)
    assert [(r.partition, r.offset) for r in delivered] == [(1, 20)]

    source._run_requests()  # the consumer thread, between two polls
    assert consumer.seeks == [("t", 0, 3)]
    read_after = source._seeks_applied
    source._take(delivered.extend, [rec(P0, 3), rec(P1, 21)], read_after)
    source._take(delivered.extend, [rec(P0, 8)], read_before)  # still late, still dropped
    assert [(r.partition, r.offset) for r in delivered] == [(1, 20), (0, 3), (1, 21)]


def test_a_seek_of_a_partition_no_longer_owned_holds_back_no_other() -> None:
    """A partition revoked before its seek is applied is not sought; the seek still counts as
    applied, so records read afterwards are delivered."""
    source = KafkaSource({}, ["t"], NoListener())
    consumer = SeekingConsumer(owned=[P1])
    source._consumer = consumer
    delivered: list[ConsumedRecord] = []
    source.seek({P0: 3, P1: 10})
    source._run_requests()
    assert consumer.seeks == [("t", 1, 10)]
    source._take(delivered.extend, [rec(P1, 10)], source._seeks_applied)
    assert [(r.partition, r.offset) for r in delivered] == [(1, 10)]


@pytest.mark.parametrize("code", [KafkaError._STATE, KafkaError._PREV_IN_PROGRESS])
def test_a_partition_not_being_fetched_is_not_sought(code: int) -> None:
    """A partition assigned moments ago, whose fetcher still waits for its committed offset
    (or one being unassigned), refuses a seek: it has read nothing, so the others are sought
    and the seek counts as done."""
    source = KafkaSource({}, ["t"], NoListener())
    consumer = SeekingConsumer(owned=[P0, P1], refusing={P0: code})
    source._consumer = consumer
    delivered: list[ConsumedRecord] = []
    source.seek({P0: 3, P1: 10})
    source._run_requests()
    assert consumer.seeks == [("t", 1, 10)]
    source._take(delivered.extend, [rec(P0, 3), rec(P1, 10)], source._seeks_applied)
    assert [(r.partition, r.offset) for r in delivered] == [(0, 3), (1, 10)]


def test_a_seek_refused_otherwise_fails_the_consumer() -> None:
    """Any other refusal is raised on the consumer thread, which stops the consumer: going on
    from where the records were not wanted would skip events."""
    source = KafkaSource({}, ["t"], NoListener())
    source._consumer = SeekingConsumer(owned=[P0], refusing={P0: KafkaError._INVALID_ARG})
    source.seek({P0: 3})
    with pytest.raises(KafkaException):
        source._run_requests()
