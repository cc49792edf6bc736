"""Producing sample records to Kafka at a bounded rate, on the calling thread.

Used by ``streamproc produce-sample`` and by the demo (on a thread of its own). Pacing is by
schedule, not by sleeping a fixed gap: record *n* is due at ``start + n / rate``, and whatever
is due is produced at once, so the rate holds at thousands per second and a stall is caught
up rather than lost. Every record is reported to ``on_sent`` *before* it is produced, so an
observer never sees an output for an event it was not told about.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from confluent_kafka import KafkaError, Message, Producer

from streamproc.demo.generator import SampleGenerator, SampleRecord
from streamproc.kafka.clientlogs import client_logger

# The most records produced in one go when the schedule is behind, so a stop is noticed soon.
_MAX_BATCH: Final = 500
_IDLE_WAIT_S: Final = 0.05


def sample_producer_config(bootstrap: str, **extra: Any) -> dict[str, Any]:
    """An idempotent acks=all producer that gives up on a record after 30 s, not 5 minutes."""
    return {
        "bootstrap.servers": bootstrap,
        "client.id": "streamproc-sample",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.timeout.ms": 30_000,
        "log_level": 3,  # errors only: a refused connection is reported once by the caller
        **extra,
    }


@dataclass(slots=True)
class FeedStats:
    """What a feed has done so far; read from other threads as a snapshot of plain ints."""

    sent: int = 0
    acknowledged: int = 0
    failed: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    first_error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def malformed(self) -> int:
        return self.sent - self.by_kind["valid"]


class SampleFeed:
    """Produces ``generator``'s records to ``topic`` until a count, a duration or ``stop``.

    ``rate`` is records per second (None: as fast as the broker takes them). ``count`` and
    ``duration_s`` bound the run; with neither it runs until ``stop`` is set.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        topic: str,
        generator: SampleGenerator,
        *,
        rate: float | None = None,
        count: int | None = None,
        duration_s: float | None = None,
        on_sent: Callable[[SampleRecord], None] | None = None,
        on_failed: Callable[[SampleRecord, str], None] | None = None,
        flush_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive")
        self.topic = topic
        self.stats = FeedStats()
        self._producer = Producer(dict(config), logger=client_logger())
        self._generator = generator
        self._rate = rate
        self._count = count
        self._duration_s = duration_s
        self._on_sent = on_sent
        self._on_failed = on_failed
        self._flush_timeout_s = flush_timeout_s
        self._clock = clock

    def warm_up(self, topic: str, timeout_s: float = 10.0) -> None:
        """Send one empty record to ``topic`` (not the feed's) and wait for its acknowledgement.

        An idempotent producer cannot send before it has a producer id, and a broker out of
        ids answers "coordinator load in progress" until the controller hands it a new block;
        librdkafka then retries after about half a second, and records stamped meanwhile
        arrive that much older than their ``occurred_at``. Connecting is not enough: only an
        acknowledged record shows the id is there. Raises RuntimeError if none comes in time.
        """
        errors: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        self._producer.produce(topic, value=b"", on_delivery=delivered)
        if self._producer.flush(timeout_s) or errors:
            reason = errors[0] if errors else f"no acknowledgement within {timeout_s:g} s"
            raise RuntimeError(f"warm-up record to {topic!r} failed: {reason}")

    def run(self, stop: threading.Event) -> FeedStats:
        """Produce until done or ``stop``; then wait for every acknowledgement (bounded)."""
        stats = self.stats
        # Connect before the first record is stamped (see also :meth:`warm_up`).
        self._producer.list_topics(self.topic, timeout=10)
        start = stats.started_at = self._clock()
        try:
            while not stop.is_set():
                due = self._due(self._clock() - start)
                if due is None:
                    break
                if due == 0:
                    stop.wait(self._wait_s(start))
                    self._producer.poll(0)
                    continue
                for _ in range(min(due, _MAX_BATCH)):
                    self._produce(self._generator.next())
                self._producer.poll(0)
        finally:
            remaining = self._producer.flush(self._flush_timeout_s)
            if remaining:
                stats.failed += remaining
                stats.first_error = stats.first_error or (
                    f"{remaining} record(s) unacknowledged after {self._flush_timeout_s:g} s"
                )
            stats.finished_at = self._clock()
        return stats

    def _due(self, elapsed: float) -> int | None:
        """How many records are due now; None when the run is complete."""
        sent = self.stats.sent
        if self._count is not None and sent >= self._count:
            return None
        if self._duration_s is not None and elapsed >= self._duration_s:
            return None
        target = sent + _MAX_BATCH if self._rate is None else int(elapsed * self._rate) + 1
        if self._count is not None:
            target = min(target, self._count)
        return max(0, target - sent)

    def _wait_s(self, start: float) -> float:
        assert self._rate is not None
        next_due = start + (self.stats.sent) / self._rate
        return min(_IDLE_WAIT_S, max(0.0, next_due - self._clock()))

    def _produce(self, record: SampleRecord) -> None:
        if self._on_sent is not None:
            self._on_sent(record)
        self.stats.sent += 1
        self.stats.by_kind[record.kind] += 1
        callback = functools.partial(self._delivered, record)
        while True:
            try:
                self._producer.produce(
                    self.topic,
                    key=record.key,
                    value=record.value,
                    headers=list(record.headers),
                    on_delivery=callback,
                )
                return
            except BufferError:
                # The local queue is full: serving delivery reports makes room.
                self._producer.poll(0.05)

    def _delivered(self, record: SampleRecord, err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            self.stats.acknowledged += 1
            return
        self.stats.failed += 1
        self.stats.first_error = self.stats.first_error or err.str()
        if self._on_failed is not None:
            self._on_failed(record, err.str())
