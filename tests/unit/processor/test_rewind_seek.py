"""Exactly once, a rewind through the real consumer adapter: after an aborted transaction the
partitions are read again from their last commit, and every record read again is decided.

:class:`LogConsumer` stands in for librdkafka's ``Consumer`` under
:class:`~streamproc.kafka.consumer.KafkaSource`: one in-memory log per partition, read from a
position that ``seek`` moves, its rebalance callbacks called from ``consume`` and ``close`` on
the adapter's own consumer thread, as librdkafka calls them.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import OFFSET_INVALID
from confluent_kafka import TopicPartition as KafkaTopicPartition

from streamproc.errors import KafkaTransactionError
from streamproc.kafka import consumer as consumer_module
from streamproc.kafka.consumer import KafkaSource
from streamproc.kafka.records import ConsumedRecord
from tests.unit.processor.conftest import MakeHarness
from tests.unit.processor.fakes import INPUT, TP0, eventually, make_settings, record, source_of

Callback = Callable[[Any, list[KafkaTopicPartition]], None]


class LogMessage:
    """A consumed message as confluent-kafka hands it over."""

    def __init__(self, rec: ConsumedRecord) -> None:
        self._rec = rec

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._rec.topic

    def partition(self) -> int:
        return self._rec.partition

    def offset(self) -> int:
        return self._rec.offset

    def key(self) -> bytes | None:
        return self._rec.key

    def value(self) -> bytes | None:
        return self._rec.value

    def headers(self) -> list[tuple[str, bytes | None]]:
        return self._rec.headers

    def timestamp(self) -> tuple[int, int]:
        return (0, 0)


class LogConsumer:
    """librdkafka's ``Consumer`` as :class:`KafkaSource` uses it, over an in-memory log of
    partition 0 of the input topic, which it assigns (nothing committed) on the first poll.

    ``on_seek`` runs inside ``seek``, on the consumer thread; ``read_again`` is set once the
    adapter, after a seek, has handed a batch over and polls again."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._log: list[ConsumedRecord] = []
        self._position = 0
        self._owned: list[KafkaTopicPartition] = []
        self._on_assign: Callback | None = None
        self._on_revoke: Callback | None = None
        self._subscribed = False
        self._returned_since_seek = False
        self.sought = False
        self.on_seek: Callable[[], None] = lambda: None
        self.read_again = threading.Event()

    def append(self, *records: ConsumedRecord) -> None:
        with self._changed:
            self._log.extend(records)
            self._changed.notify_all()

    # -- what KafkaSource calls, on its consumer thread

    def subscribe(
        self, topics: list[str], *, on_assign: Callback, on_revoke: Callback, on_lost: Callback
    ) -> None:
        self._on_assign, self._on_revoke = on_assign, on_revoke

    def consume(self, *, num_messages: int, timeout: float) -> list[LogMessage]:
        if not self._subscribed:
            self._subscribed = True
            assert self._on_assign is not None
            partitions = [KafkaTopicPartition(INPUT, 0)]
            self._on_assign(self, partitions)
            self._owned = partitions
            return []
        if timeout > 0 and self.sought and self._returned_since_seek:
            self.read_again.set()  # the batch read after the seek is on its way to the loop
        with self._changed:
            if self._position >= len(self._log):
                self._changed.wait(timeout)  # librdkafka's own wait for a record
            batch = self._log[self._position : self._position + num_messages]
            self._position += len(batch)
        if batch and self.sought:
            self._returned_since_seek = True
        return [LogMessage(r) for r in batch]

    def seek(self, partition: KafkaTopicPartition) -> None:
        self.on_seek()
        with self._changed:
            self._position = next(
                (i for i, r in enumerate(self._log) if r.offset >= partition.offset),
                len(self._log),
            )
        self.sought = True
        self._returned_since_seek = False

    def committed(
        self, partitions: list[KafkaTopicPartition], timeout: float
    ) -> list[KafkaTopicPartition]:
        return [KafkaTopicPartition(p.topic, p.partition, OFFSET_INVALID) for p in partitions]

    def consumer_group_metadata(self) -> str:
        return "group-metadata"

    def assignment(self) -> list[KafkaTopicPartition]:
        return list(self._owned)

    def pause(self, partitions: list[KafkaTopicPartition]) -> None: ...

    def resume(self, partitions: list[KafkaTopicPartition]) -> None: ...

    def close(self) -> None:
        if self._owned and self._on_revoke is not None:
            self._on_revoke(self, self._owned)
        self._owned = []


async def test_records_read_again_after_an_abort_are_decided_though_the_loop_was_busy(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an abort, the records read again from the last commit are decided even when the
    consumer thread hands them over before the event loop has seen the seek finish (a busy
    loop): none is skipped, so no later commit moves past an event that has no output."""
    log = LogConsumer()
    monkeypatch.setattr(consumer_module, "Consumer", lambda config, logger: log)
    settings = make_settings(
        delivery="exactly_once", transaction_interval_ms=20, commit_interval_ms=60_000
    )
    h = make_harness(settings, source=lambda p: KafkaSource({}, [INPUT], p))
    loop = asyncio.get_running_loop()

    def busy() -> None:
        # The loop is busy elsewhere until the records read after the seek are on their way.
        assert log.read_again.wait(5), "nothing was read after the seek"

    log.on_seek = lambda: loop.call_soon_threadsafe(busy)
    await h.start()
    log.append(*(record(o, key=f"card-{o}") for o in range(3)))
    await eventually(lambda: len(h.sink.visible) == 3, "the first transaction")
    h.sink.commit_failures.append(
        KafkaTransactionError("generation id not valid", operation="commit", abortable=True)
    )
    log.append(*(record(o, key=f"card-{o}") for o in range(3, 6)))
    await eventually(lambda: h.sink.aborted != [], "the aborted transaction")
    await eventually(log.read_again.is_set, "the records read again")
    log.append(*(record(o, key=f"card-{o}") for o in range(6, 8)))
    await eventually(
        lambda: any(p[TP0].offset == 8 for p in h.sink.transaction_offsets if TP0 in p),
        "a commit of every record",
    )
    assert Counter(source_of(out) for out in h.sink.visible) == Counter(
        {(0, o): 1 for o in range(8)}
    )
