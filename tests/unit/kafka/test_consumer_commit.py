"""KafkaSource commits only positions of partitions it still owns."""

from __future__ import annotations

from typing import Any

from confluent_kafka import TopicPartition as KafkaTopicPartition

from streamproc.core.offsets import CommitPoint
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
    points = {TopicPartition("t", 0): CommitPoint(10), TopicPartition("t", 1): CommitPoint(7)}
    assert source._commit_now(points)
    assert consumer.commits == [[("t", 0, 10)]]
    assert source._commit_now({TopicPartition("t", 1): CommitPoint(9)})
    assert consumer.commits == [[("t", 0, 10)]]


class BatchConsumer:
    """Records how consume() is asked: the first record must not wait for a full batch."""

    def __init__(self, ready: int) -> None:
        self.ready = ready
        self.calls: list[tuple[int, float]] = []

    def consume(self, *, num_messages: int, timeout: float) -> list[Any]:
        self.calls.append((num_messages, timeout))
        take = min(num_messages, self.ready)
        self.ready -= take
        return [FakeMessage(i) for i in range(take)]


class FakeMessage:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def error(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (0, 0)

    def topic(self) -> str:
        return "t"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return b"{}"

    def headers(self) -> None:
        return None


def test_a_poll_waits_for_one_record_then_takes_what_is_ready() -> None:
    """A batch poll blocks only until the first record, then drains without waiting, so a
    lone event is not held back for the poll timeout."""
    source = KafkaSource({}, ["t"], NoListener())
    consumer = BatchConsumer(ready=3)
    source._consumer = consumer
    records = source._consume(500)
    assert len(records) == 3
    (first_n, first_wait), rest = consumer.calls
    assert first_n == 1
    assert first_wait > 0
    assert rest == (499, 0)
