"""The Kafka consumer adapter: librdkafka on a thread of its own, handing batches to the loop.

One thread owns the consumer: it consumes, and between two consumes it runs what the event loop
asked of it (commit, pause, resume, close). So librdkafka's rebalance callbacks, which fire
inside ``consume()``, always run on that thread and never race a commit. Each batch crosses to
the event loop once (``call_soon_threadsafe``), not once per record, and the thread asks for no
more records than the processor has room for.

A revoke callback blocks the consumer thread while the processor drains the revoked partitions
on the loop, then commits their safe prefix synchronously before librdkafka hands them to
another member: that is what makes a cooperative rebalance lose nothing and repeat nothing.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaTopicPartition

from streamproc.core.offsets import CommitPoint
from streamproc.errors import KafkaConsumerError
from streamproc.kafka.clientlogs import client_logger
from streamproc.kafka.handoff import settle
from streamproc.kafka.records import ConsumedRecord, TopicPartition, consumed_record
from streamproc.logs import get_logger

log = get_logger("kafka.consumer")

# How long one consume() may wait for a first record: the longest a request from the loop
# (a commit, a pause) waits for the thread.
_WAIT_S = 0.05
# How often the consumer group's metadata is read again, besides at every rebalance.
_GROUP_METADATA_REFRESH_S = 1.0
# Reading the committed offsets of newly assigned partitions, inside the assign callback.
_COMMITTED_TIMEOUT_S = 10.0
# How long to wait, with the processor full, for it to pause the partitions.
_FULL_WAIT_S = 0.002
# librdkafka refuses to seek a partition whose fetcher has not started or is stopping.
_NOT_FETCHING = frozenset({KafkaError._STATE, KafkaError._PREV_IN_PROGRESS})


class RebalanceListener(Protocol):
    """Called on the consumer thread; implementations hop to the event loop themselves."""

    def on_assigned(
        self,
        partitions: Sequence[TopicPartition],
        committed: Mapping[TopicPartition, CommitPoint] | None = None,
    ) -> None:
        """Take the partitions; ``committed`` is what the group last committed for them."""
        ...

    def on_revoked(
        self, partitions: Sequence[TopicPartition]
    ) -> Mapping[TopicPartition, CommitPoint]:
        """Drain the partitions; return what is safe to commit."""
        ...

    def on_lost(self, partitions: Sequence[TopicPartition]) -> None: ...


Deliver = Callable[[list[ConsumedRecord]], None]
Fail = Callable[[BaseException], None]


def _tps(partitions: Sequence[KafkaTopicPartition]) -> list[TopicPartition]:
    return [TopicPartition(p.topic, p.partition) for p in partitions]


class KafkaSource:
    """A subscribed consumer serving batches from its own thread.

    ``room`` is how many more records the processor will take now; the thread reads it before
    each consume, so a paused or full processor is not sent records it cannot hold.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        topics: Sequence[str],
        listener: RebalanceListener,
        *,
        batch_size: int = 500,
    ) -> None:
        self._config = dict(config)
        self._topics = list(topics)
        self._listener = listener
        self._batch = batch_size
        self.room = batch_size  # set by the processor: how many more it can hold
        self._handed = 0  # records handed to the loop (this thread writes it)
        self._taken = 0  # records the loop has taken (the loop writes it)
        # Seeks are numbered on the loop as they are asked for (``_sought``: each partition's
        # last), and the consumer thread stamps each batch with the number of the last seek it
        # had applied before reading it (``_seeks_applied``, its own): whether a record was read
        # before its partition's seek is then known on the loop, in the order of the batches.
        self._seeks_asked = 0
        self._sought: dict[TopicPartition, int] = {}
        self._seeks_applied = 0
        self._group_metadata: Any = None
        self._group_metadata_at = 0.0
        self.last_poll_monotonic = time.monotonic()
        self.joined = False  # an assignment came (written by the consumer thread)
        self._requests: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._consumer: Any = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self._paused: set[TopicPartition] = set()
        self._tp_cache: dict[tuple[str, int], TopicPartition] = {}

    # -- the loop's side ----------------------------------------------------------------------

    async def start(self, deliver: Deliver, fail: Fail) -> None:
        """Subscribe; from now on batches go to ``deliver`` and a fatal error to ``fail``,
        both on the calling event loop."""
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(
            target=self._serve, args=(loop, deliver, fail, started), name="kafka-consumer"
        )
        self._thread.start()
        await started

    async def commit(self, points: Mapping[TopicPartition, CommitPoint]) -> bool:
        """Commit synchronously; False when the group rejected it (e.g. mid-rebalance)."""
        if not points:
            return True
        ok: bool = await self._call(self._commit_now, points)
        return ok

    def seek(self, positions: Mapping[TopicPartition, int]) -> None:
        """Read these partitions again from ``positions``; returns at once.

        From this call on, no record of theirs read before the seek is delivered, and every
        one read after it is, however late the loop runs: the consumer thread seeks between
        two polls, and a batch on its way to the loop is sorted by when it was read. (Waiting
        for the seek instead would leave the caller deciding, until it resumes, about records
        already read from the new position.)"""
        if not positions:
            return
        self._seeks_asked += 1
        number = self._seeks_asked
        for tp in positions:
            self._sought[tp] = number
        wanted = dict(positions)

        def request() -> None:
            # A consumer closed meanwhile reads nothing any more. One that cannot seek fails
            # (the thread's error handler): it would go on from where the records were not
            # wanted, past events nobody decided.
            if not self._closing:
                self._seek(wanted, number)

        self._requests.put(request)

    def group_metadata(self) -> Any:
        """The consumer group's metadata, for committing offsets in a producer's transaction.

        Kept by the consumer thread, refreshed at every rebalance callback and every second:
        asking the consumer from another thread waits behind its polls, and a commit in a
        revoke callback needs it while that thread waits for the commit."""
        return self._group_metadata

    async def pause(self, partitions: Sequence[TopicPartition]) -> None:
        await self._call(self._pause, list(partitions))

    async def resume(self, partitions: Sequence[TopicPartition]) -> None:
        await self._call(self._resume, list(partitions))

    async def close(self) -> None:
        """Leave the group; the final revoke callback commits what is safe."""
        if self._thread is None or self._closing:
            return
        await self._call(self._close)
        await asyncio.to_thread(self._thread.join, 30)

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()

        def request() -> None:
            try:
                result = fn(*args)
            except BaseException as exc:
                loop.call_soon_threadsafe(settle, done, None, exc)
            else:
                loop.call_soon_threadsafe(settle, done, result, None)

        if self._thread is None or not self._thread.is_alive():
            raise KafkaConsumerError("the consumer is not running")
        self._requests.put(request)
        return await done

    # -- the consumer thread ------------------------------------------------------------------

    def _serve(
        self,
        loop: asyncio.AbstractEventLoop,
        deliver: Deliver,
        fail: Fail,
        started: asyncio.Future[None],
    ) -> None:
        try:
            self._consumer = Consumer(self._config, logger=client_logger())
            self._consumer.subscribe(
                self._topics,
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
        except BaseException as exc:
            loop.call_soon_threadsafe(settle, started, None, exc)
            return
        log.info("consumer_subscribed", topics=self._topics, group=self._config.get("group.id"))
        loop.call_soon_threadsafe(settle, started, None, None)
        try:
            while not self._closing:
                self._run_requests()
                if self._closing:
                    break
                # Batches on their way to the loop are not in the processor's count yet.
                room = self.room - (self._handed - self._taken)
                if room <= 0 and not self._all_paused():
                    # Full: the processor is pausing the partitions; poll again once it has.
                    time.sleep(_FULL_WAIT_S)
                    continue
                records = self._consume(max(1, min(self._batch, room)))
                self.last_poll_monotonic = now = time.monotonic()
                if now - self._group_metadata_at > _GROUP_METADATA_REFRESH_S:
                    self._refresh_group_metadata()
                if records:
                    self._handed += len(records)
                    loop.call_soon_threadsafe(self._take, deliver, records, self._seeks_applied)
        except BaseException as exc:
            log.error("consumer_failed", error=str(exc), error_class=type(exc).__name__)
            loop.call_soon_threadsafe(fail, exc)
            self._close()
        finally:
            self._run_requests()  # whoever still waits gets an answer

    def _take(self, deliver: Deliver, records: list[ConsumedRecord], read_after: int) -> None:
        """On the loop: deliver ``records``, read after seek number ``read_after`` was applied,
        less those of partitions sought again since (they are read again from there)."""
        self._taken += len(records)
        if read_after < self._seeks_asked:
            sought = self._sought
            records = [r for r in records if sought.get(r.tp, 0) <= read_after]
        if records:
            deliver(records)

    def _all_paused(self) -> bool:
        return set(_tps(self._consumer.assignment())) <= self._paused

    def _run_requests(self) -> None:
        while True:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                return
            request()

    def _consume(self, max_records: int) -> list[ConsumedRecord]:
        # consume(n, t) returns only once n records came or t passed, so asking for a batch
        # would hold the first record back for up to t. Wait for one, then take what is
        # already fetched without waiting.
        consumer = self._consumer
        messages = consumer.consume(num_messages=1, timeout=_WAIT_S)
        if messages and max_records > 1:
            messages += consumer.consume(num_messages=max_records - 1, timeout=0)
        records: list[ConsumedRecord] = []
        cache = self._tp_cache
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaConsumerError(f"fatal consumer error: {err.str()}")
                log.warning("consume_error", code=err.name(), reason=err.str())
                continue
            where = (msg.topic(), msg.partition())
            tp = cache.get(where)
            if tp is None:
                tp = cache[where] = TopicPartition(*where)
            records.append(consumed_record(msg, tp))
        return records

    def _refresh_group_metadata(self) -> None:
        self._group_metadata = self._consumer.consumer_group_metadata()
        self._group_metadata_at = time.monotonic()

    def _on_assign(self, consumer: Any, partitions: list[KafkaTopicPartition]) -> None:
        self._refresh_group_metadata()  # a new generation
        tps = _tps(partitions)
        if not tps:
            self.joined = True  # a member with no partition is ready too: it has none to read
            return  # cooperative rebalances report "no change" as an empty assignment
        log.info("partitions_assigned", partitions=[f"{t}[{p}]" for t, p in tps])
        self._listener.on_assigned(tps, self._committed(consumer, partitions))
        # Newly assigned partitions start unpaused; keep backpressure consistent.
        if self._paused:
            consumer.pause(partitions)
            self._paused.update(tps)
        self.joined = True

    def _on_revoke(self, _consumer: Any, partitions: list[KafkaTopicPartition]) -> None:
        self._refresh_group_metadata()
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

    def _committed(
        self, consumer: Any, partitions: list[KafkaTopicPartition]
    ) -> dict[TopicPartition, CommitPoint]:
        """What the group last committed for ``partitions``, metadata included."""
        try:
            found = consumer.committed(partitions, timeout=_COMMITTED_TIMEOUT_S)
        except KafkaException as exc:
            # Without it the partitions start from the committed position alone: the events
            # done beyond it are decided again, as they would be without metadata.
            log.warning("committed_offsets_unreadable", error=str(exc))
            return {}
        return {
            TopicPartition(tp.topic, tp.partition): CommitPoint(tp.offset, tp.metadata or "")
            for tp in found
            if tp.offset >= 0 and tp.error is None
        }

    def _commit_now(self, points: Mapping[TopicPartition, CommitPoint]) -> bool:
        if not points or self._consumer is None:
            return True
        # A commit computed before a revoke can run after it: positions of partitions this
        # member no longer owns would move another member's progress back, so drop them.
        owned = set(_tps(self._consumer.assignment()))
        offsets = [
            KafkaTopicPartition(t, p, point.offset, metadata=point.metadata)
            for (t, p), point in points.items()
            if (t, p) in owned
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

    def _seek(self, positions: dict[TopicPartition, int], number: int) -> None:
        owned = set(_tps(self._consumer.assignment()))
        for (topic, partition), offset in positions.items():
            if (topic, partition) not in owned:
                continue
            try:
                self._consumer.seek(KafkaTopicPartition(topic, partition, offset))
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if not isinstance(err, KafkaError) or err.code() not in _NOT_FETCHING:
                    raise
                # Assigned moments ago, its fetcher still waits for the committed offset,
                # where it will start (or it is being unassigned): nothing of it was read.
                log.info("seek_not_needed", partition=f"{topic}[{partition}]", reason=err.str())
        self._seeks_applied = number

    def _pause(self, partitions: list[TopicPartition]) -> None:
        live = set(_tps(self._consumer.assignment())) & set(partitions)
        if live:
            self._consumer.pause([KafkaTopicPartition(t, p) for t, p in live])
            self._paused.update(live)

    def _resume(self, partitions: list[TopicPartition]) -> None:
        live = set(_tps(self._consumer.assignment())) & set(partitions)
        if live:
            self._consumer.resume([KafkaTopicPartition(t, p) for t, p in live])
        self._paused.difference_update(partitions)

    def _close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._consumer is not None:
            self._consumer.close()  # the final revoke callback runs in here
