"""The Kafka consumer adapter: librdkafka kept off the event loop, on one thread of its own.

Every call on the consumer (consume, commit, pause, resume, close) runs on one dedicated thread,
so librdkafka's rebalance callbacks, which fire inside ``consume()``, always run on that same
thread and never race a commit. The event loop only awaits those calls. A revoke callback
blocks the consumer thread while the processor drains the revoked partitions on the loop, then
commits their safe prefix synchronously before librdkafka hands the partitions to another
member: that is what makes a cooperative rebalance lose nothing and repeat nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaTopicPartition

from streamproc.errors import KafkaConsumerError
from streamproc.kafka.clientlogs import client_logger
from streamproc.kafka.records import ConsumedRecord, TopicPartition
from streamproc.logs import get_logger

log = get_logger("kafka.consumer")


class RebalanceListener(Protocol):
    """Called on the consumer thread; implementations hop to the event loop themselves."""

    def on_assigned(self, partitions: Sequence[TopicPartition]) -> None: ...

    def on_revoked(self, partitions: Sequence[TopicPartition]) -> Mapping[TopicPartition, int]:
        """Drain the partitions; return the positions that are safe to commit."""
        ...

    def on_lost(self, partitions: Sequence[TopicPartition]) -> None: ...


def _tps(partitions: Sequence[KafkaTopicPartition]) -> list[TopicPartition]:
    return [TopicPartition(p.topic, p.partition) for p in partitions]


class KafkaSource:
    """A subscribed consumer whose every call runs on its own thread."""

    def __init__(
        self, config: Mapping[str, Any], topics: Sequence[str], listener: RebalanceListener
    ) -> None:
        self._config = dict(config)
        self._topics = list(topics)
        self._listener = listener
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-consumer")
        self._consumer: Any = None
        self._paused: set[TopicPartition] = set()
        self._closed = False

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def start(self) -> None:
        await self._call(self._start)

    def _start(self) -> None:
        self._consumer = Consumer(self._config, logger=client_logger())
        self._consumer.subscribe(
            self._topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info("consumer_subscribed", topics=self._topics, group=self._config.get("group.id"))

    # -- rebalance callbacks: run on the consumer thread, inside consume() -------------------

    def _on_assign(self, consumer: Any, partitions: list[KafkaTopicPartition]) -> None:
        tps = _tps(partitions)
        if not tps:
            return  # cooperative rebalances report "no change" as an empty assignment
        log.info("partitions_assigned", partitions=[f"{t}[{p}]" for t, p in tps])
        self._listener.on_assigned(tps)
        # Newly assigned partitions start unpaused; keep backpressure consistent.
        if self._paused:
            consumer.pause(partitions)
            self._paused.update(tps)

    def _on_revoke(self, _consumer: Any, partitions: list[KafkaTopicPartition]) -> None:
        tps = _tps(partitions)
        if not tps:
            return
        log.info("partitions_revoked", partitions=[f"{t}[{p}]" for t, p in tps])
        positions = self._listener.on_revoked(tps)
        self._commit_now(positions)
        self._paused.difference_update(tps)

    def _on_lost(self, _consumer: Any, partitions: list[KafkaTopicPartition]) -> None:
        tps = _tps(partitions)
        log.warning("partitions_lost", partitions=[f"{t}[{p}]" for t, p in tps])
        self._listener.on_lost(tps)
        self._paused.difference_update(tps)

    # -- operations ---------------------------------------------------------------------------

    async def poll(self, max_records: int, timeout_s: float) -> list[ConsumedRecord]:
        """Up to ``max_records`` records; rebalance callbacks may run during the call."""
        result: list[ConsumedRecord] = await self._call(self._consume, max_records, timeout_s)
        return result

    def _consume(self, max_records: int, timeout_s: float) -> list[ConsumedRecord]:
        # consume(n, t) returns only once n records came or t passed, so asking for a batch
        # would hold the first record back for up to t. Wait for one, then take what is
        # already fetched without waiting.
        messages = self._consumer.consume(num_messages=1, timeout=timeout_s)
        if messages and max_records > 1:
            messages += self._consumer.consume(num_messages=max_records - 1, timeout=0)
        records: list[ConsumedRecord] = []
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaConsumerError(f"fatal consumer error: {err.str()}")
                log.warning("consume_error", code=err.name(), reason=err.str())
                continue
            ts_type, ts = msg.timestamp()
            records.append(
                ConsumedRecord(
                    topic=msg.topic(),
                    partition=msg.partition(),
                    offset=msg.offset(),
                    key=msg.key(),
                    value=msg.value(),
                    headers=list(msg.headers() or ()),
                    timestamp_ms=ts if ts_type else None,
                )
            )
        return records

    async def commit(self, positions: Mapping[TopicPartition, int]) -> bool:
        """Commit synchronously; False when the group rejected it (e.g. mid-rebalance)."""
        if not positions:
            return True
        ok: bool = await self._call(self._commit_now, positions)
        return ok

    def _commit_now(self, positions: Mapping[TopicPartition, int]) -> bool:
        if not positions or self._consumer is None:
            return True
        # A commit computed before a revoke can run after it: positions of partitions this
        # member no longer owns would move another member's progress back, so drop them.
        owned = set(_tps(self._consumer.assignment()))
        offsets = [
            KafkaTopicPartition(t, p, off) for (t, p), off in positions.items() if (t, p) in owned
        ]
        if not offsets:
            return True
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            code = err.name() if isinstance(err, KafkaError) else str(exc)
            # Not fatal: the offsets stay pending and the next commit carries them.
            log.warning("commit_failed", code=code, partitions=len(offsets))
            return False
        return True

    async def pause(self, partitions: Sequence[TopicPartition]) -> None:
        await self._call(self._pause, list(partitions))

    def _pause(self, partitions: list[TopicPartition]) -> None:
        live = set(_tps(self._consumer.assignment())) & set(partitions)
        if live:
            self._consumer.pause([KafkaTopicPartition(t, p) for t, p in live])
            self._paused.update(live)

    async def resume(self, partitions: Sequence[TopicPartition]) -> None:
        await self._call(self._resume, list(partitions))

    def _resume(self, partitions: list[TopicPartition]) -> None:
        live = set(_tps(self._consumer.assignment())) & set(partitions)
        if live:
            self._consumer.resume([KafkaTopicPartition(t, p) for t, p in live])
        self._paused.difference_update(partitions)

    async def assignment(self) -> list[TopicPartition]:
        tps: list[TopicPartition] = await self._call(lambda: _tps(self._consumer.assignment()))
        return tps

    async def close(self) -> None:
        """Leave the group; the final revoke callback commits what is safe."""
        if self._closed:
            return
        self._closed = True
        if self._consumer is not None:
            await self._call(self._consumer.close)
        self._executor.shutdown(wait=True)
