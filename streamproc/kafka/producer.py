"""The Kafka producer adapter: ``await send(...)`` returns once the broker acknowledged the record.

The producer is idempotent with ``acks=all`` (see ``KafkaSettings.producer_config``), so an
acknowledgement means the record is durable and in order. A dedicated thread serves delivery
reports (``poll``) and hands each one to the event loop, where the awaiting coroutine resumes.
Only then may the processor count the input event as done and its offset as committable.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import Any, cast

from confluent_kafka import KafkaError, Producer

from streamproc.errors import KafkaDeliveryError
from streamproc.kafka.clientlogs import client_logger
from streamproc.kafka.records import OutputRecord
from streamproc.logs import get_logger

log = get_logger("kafka.producer")

_QUEUE_FULL_BACKOFF_S = 0.005


class KafkaSink:
    """Produces records and resolves one asyncio future per record on delivery."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._producer = Producer(dict(config), logger=client_logger())
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._serve, name="kafka-producer", daemon=True)
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._poller.start()

    async def warm_up(self, topics: Sequence[str], timeout_s: float = 10.0) -> None:
        """Connect and load the output topics' metadata now, so the first decision does not
        wait for it (an idempotent producer also fetches its producer id on connecting)."""
        for topic in topics:
            await asyncio.to_thread(self._producer.list_topics, topic, timeout_s)

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def send(self, record: OutputRecord) -> None:
        """Produce and wait for the broker's acknowledgement; raise KafkaDeliveryError."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def on_delivery(err: KafkaError | None, _msg: Any) -> None:
            loop.call_soon_threadsafe(_settle, done, err, record.topic)

        while True:
            try:
                self._producer.produce(
                    record.topic,
                    value=record.value,
                    key=record.key,
                    headers=cast(Any, list(record.headers)) or None,
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                # The local queue is full: the broker is behind. Waiting here is the
                # backpressure that stops intake, since the event stays in flight.
                await asyncio.sleep(_QUEUE_FULL_BACKOFF_S)
        await done

    async def flush(self, timeout_s: float = 10.0) -> int:
        """Wait until queued records are delivered; returns how many are still queued."""
        remaining: int = await asyncio.to_thread(self._producer.flush, timeout_s)
        return remaining

    async def close(self, timeout_s: float = 10.0) -> None:
        remaining = await self.flush(timeout_s)
        if remaining:
            log.error("producer_closed_with_undelivered", records=remaining)
        self._stop.set()
        if self._started:
            await asyncio.to_thread(self._poller.join, 5.0)


def _settle(done: asyncio.Future[None], err: KafkaError | None, topic: str) -> None:
    if done.done():
        return
    if err is None:
        done.set_result(None)
    else:
        done.set_exception(
            KafkaDeliveryError(err.str(), topic=topic, retriable=bool(err.retriable()))
        )
