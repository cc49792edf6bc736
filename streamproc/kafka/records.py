"""Plain record types at the Kafka boundary, so the processor never touches librdkafka objects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streamproc.core.offsets import TopicPartition

# Kafka header values may be null; they are carried as they came.
Headers = list[tuple[str, bytes | None]]

__all__ = ["ConsumedRecord", "Headers", "OutputRecord", "TopicPartition", "consumed_record"]


class ConsumedRecord:
    """One record as consumed. A plain slotted class: one is built per event on the hot path,
    and its ``tp`` is made once, here, rather than at every lookup by partition."""

    __slots__ = ("headers", "key", "offset", "timestamp_ms", "tp", "value")

    def __init__(  # noqa: PLR0917 - a record's fields in Kafka's order, as callers write them
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
        timestamp_ms: int | None = None,
        *,
        tp: TopicPartition | None = None,
    ) -> None:
        self.tp = tp if tp is not None else TopicPartition(topic, partition)
        self.offset = offset
        self.key = key
        self.value = value
        self.headers: Headers = headers if headers is not None else []
        self.timestamp_ms = timestamp_ms

    @property
    def topic(self) -> str:
        return self.tp.topic

    @property
    def partition(self) -> int:
        return self.tp.partition

    def __repr__(self) -> str:
        return f"ConsumedRecord({self.tp.topic}[{self.tp.partition}]@{self.offset})"


@dataclass(frozen=True, slots=True)
class OutputRecord:
    topic: str
    key: bytes | None
    value: bytes | None  # None: a tombstone, e.g. a dead-lettered null input kept as it was
    headers: Sequence[tuple[str, bytes | None]] = ()


def consumed_record(message: Any, tp: TopicPartition | None = None) -> ConsumedRecord:
    """A confluent-kafka ``Message`` (without error) as a plain record."""
    ts_type, ts = message.timestamp()
    return ConsumedRecord(
        message.topic(),
        message.partition(),
        message.offset(),
        message.key(),
        message.value(),
        message.headers() or [],
        ts if ts_type else None,
        tp=tp,
    )
