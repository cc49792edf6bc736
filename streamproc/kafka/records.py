"""Plain record types at the Kafka boundary, so the processor never touches librdkafka objects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

# Kafka header values may be null; they are carried as they came.
Headers = list[tuple[str, bytes | None]]


class TopicPartition(NamedTuple):
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class ConsumedRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)
    timestamp_ms: int | None = None

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


@dataclass(frozen=True, slots=True)
class OutputRecord:
    topic: str
    key: bytes | None
    value: bytes | None  # None: a tombstone, e.g. a dead-lettered null input kept as it was
    headers: Sequence[tuple[str, bytes | None]] = ()


def consumed_record(message: Any) -> ConsumedRecord:
    """A confluent-kafka ``Message`` (without error) as a plain record."""
    ts_type, ts = message.timestamp()
    return ConsumedRecord(
        topic=message.topic(),
        partition=message.partition(),
        offset=message.offset(),
        key=message.key(),
        value=message.value(),
        headers=list(message.headers() or ()),
        timestamp_ms=ts if ts_type else None,
    )
