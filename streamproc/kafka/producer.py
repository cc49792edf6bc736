"""The Kafka producer adapter: hand records over now, learn of their acknowledgement later.

The producer is idempotent with ``acks=all`` (see ``KafkaSettings.producer_config``), so an
acknowledgement means the record is durable, and records of one partition stay in the order
they were produced. ``produce`` only queues a record in librdkafka; ``poll``, called by the
processor on its event loop once per tick, serves every delivery report ready by then on that
same thread: no future, no thread hop and no lock per record. Only an acknowledged output lets
the processor count its input event as done and its offset as committable.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar, cast

from confluent_kafka import KafkaError, Producer

from streamproc.errors import KafkaDeliveryError
from streamproc.kafka.clientlogs import client_logger
from streamproc.kafka.records import OutputRecord
from streamproc.logs import get_logger

log = get_logger("kafka.producer")

T = TypeVar("T")
OnDelivery = Callable[[T, KafkaDeliveryError | None], None]


class KafkaSink(Generic[T]):
    """Produces records; ``on_delivery(token, error)`` runs from ``poll`` for each one."""

    def __init__(self, config: Mapping[str, Any], on_delivery: OnDelivery[T]) -> None:
        self._producer = Producer(dict(config), logger=client_logger())
        self._on_delivery = on_delivery

    async def warm_up(self, topics: Sequence[str], timeout_s: float = 10.0) -> None:
        """Connect and load the output topics' metadata now, so the first decision does not
        wait for it (an idempotent producer also fetches its producer id on connecting)."""
        for topic in topics:
            await asyncio.to_thread(self._producer.list_topics, topic, timeout_s)

    def produce(self, record: OutputRecord, token: T) -> bool:
        """Queue ``record``; False when librdkafka's local queue is full (try again later)."""
        try:
            self._producer.produce(
                record.topic,
                value=record.value,
                key=record.key,
                headers=cast(Any, record.headers) or None,
                on_delivery=functools.partial(self._delivered, token),
            )
        except BufferError:
            return False
        return True

    def poll(self) -> int:
        """Serve the delivery reports that are ready, on this thread; how many were served."""
        served: int = self._producer.poll(0)
        return served

    def pending(self) -> int:
        """Records produced and not yet acknowledged or failed."""
        return len(self._producer)

    async def flush(self, timeout_s: float = 10.0) -> int:
        """Serve delivery reports until none is pending or ``timeout_s``; what is left."""
        give_up = time.monotonic() + timeout_s
        while len(self._producer) and time.monotonic() < give_up:
            self._producer.poll(0)
            await asyncio.sleep(0.005)
        self._producer.poll(0)
        return len(self._producer)

    async def close(self, timeout_s: float = 10.0) -> None:
        remaining = await self.flush(timeout_s)
        if remaining:
            log.error("producer_closed_with_undelivered", records=remaining)

    def _delivered(self, token: T, err: KafkaError | None, _msg: Any) -> None:
        if err is None:
            self._on_delivery(token, None)
        else:
            topic = _msg.topic() if _msg is not None else "?"
            retriable = bool(err.retriable())
            self._on_delivery(
                token, KafkaDeliveryError(err.str(), topic=topic, retriable=retriable)
            )
