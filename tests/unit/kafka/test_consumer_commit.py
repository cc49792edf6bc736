"""KafkaSource commits only positions of partitions it still owns."""

from __future__ import annotations

from typing import Any

from confluent_kafka import TopicPartition as KafkaTopicPartition

from streamproc.kafka.consumer import KafkaSource
from streamproc.kafka.records import TopicPartition


class RecordingConsumer:
    def __init__(self, owned: list[tuple[str, int]]) -> None:
        self.owned = [KafkaTopicPartition(t, p) for t, p in owned]
        self.commits: list[list[tuple[str, int, int]]] = []

    def assignment(self) -> list[KafkaTopicPartition]:
        return self.owned

    def commit(self, *, offsets: list[KafkaTopicPartition], asynchronous: bool) -> None:
        assert asynchronous is False
        self.commits.append([(o.topic, o.partition, o.offset) for o in offsets])


class NoListener:
    def on_assigned(self, partitions: Any) -> None: ...
    def on_revoked(self, partitions: Any) -> dict[TopicPartition, int]:
        return {}

    def on_lost(self, partitions: Any) -> None: ...


def test_a_commit_computed_before_a_revoke_skips_the_revoked_partition() -> None:
    """Positions for a partition revoked since they were computed are dropped, so a late
    commit cannot move the new owner's progress back; owned ones are committed."""
    source = KafkaSource({}, ["t"], NoListener())
    consumer = RecordingConsumer(owned=[("t", 0)])
    source._consumer = consumer  # the adapter's own seam: no broker needed for this rule
    assert source._commit_now({TopicPartition("t", 0): 10, TopicPartition("t", 1): 7})
    assert consumer.commits == [[("t", 0, 10)]]
    assert source._commit_now({TopicPartition("t", 1): 9})
    assert consumer.commits == [[("t", 0, 10)]]
