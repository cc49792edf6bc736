"""Replaying dead letters: read the dead-letter topic, write the selected originals back.

One run reads what the dead-letter topic holds when it starts (the partitions' ends are
fixed then), from the position its consumer group committed last (the beginning, for a new
group), and stops there. Dead letters written while it runs, including those of records it
replayed that fail again, are left for the next run.

Safety, in order:

- the run is a member of its own consumer group, so two runs with the same group split the
  partitions between them instead of replaying the same records twice;
- records are handled one batch at a time: each selected record is produced (idempotent,
  ``acks=all``), the batch is flushed, and only then is the group's position committed, per
  partition up to the first record the broker did not acknowledge. A crash between the
  acknowledgement and the commit replays that batch again on the next run: at least once,
  with the replay count bounding how often;
- a failed delivery stops the run (exit status 1) with its position before the failed record;
- a dry run produces nothing and commits nothing.

The batch is at most one second of records at the configured rate, so the position moves
about once a second however slow the rate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as KafkaTopicPartition

from streamproc.demo.reader import end_offsets
from streamproc.dlq.pacing import Pacer
from streamproc.dlq.report import ProgressView, Tally
from streamproc.dlq.selection import (
    DeadLetter,
    ReplayFilter,
    Verdict,
    read_dead_letter,
    replay_headers,
    verdict,
)
from streamproc.errors import KafkaConsumerError, KafkaDeliveryError
from streamproc.kafka.clientlogs import client_logger
from streamproc.kafka.records import TopicPartition, consumed_record
from streamproc.logs import get_logger

log = get_logger("dlq.replay")

MAX_BATCH: Final = 500
_POLL_S: Final = 0.2
_WAIT_SLICE_S: Final = 0.05
_UNACKNOWLEDGED: Final = "not acknowledged in time"


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    source: str
    target: str
    group: str
    selection: ReplayFilter = field(default_factory=ReplayFilter)
    max_replays: int = 3
    rate: float = 100.0
    dry_run: bool = False
    assignment_timeout_s: float = 30.0
    delivery_timeout_s: float = 30.0


OnRecord = Callable[[DeadLetter, Verdict], None]


class Replay:
    """One replay run; :meth:`run` blocks until done, ``stop`` is set, or a failure.

    ``tally`` and ``committed`` tell what it did, also after a failure.
    """

    def __init__(
        self,
        consumer_config: Mapping[str, Any],
        producer_config: Mapping[str, Any],
        options: ReplayOptions,
        *,
        on_record: OnRecord | None = None,
        progress: ProgressView | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self.tally = Tally()
        self._consumer_config = dict(consumer_config) | {
            "group.id": options.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            # A run killed without leaving the group holds its partitions this long; the next
            # run must get them well within its assignment timeout.
            "session.timeout.ms": 10_000,
        }
        self._producer_config = dict(producer_config)
        self._on_record = on_record
        self._progress = progress
        self._clock = clock
        self._ends: dict[TopicPartition, int] = {}
        self._positions: dict[TopicPartition, int] = {}  # of held partitions: next to handle
        self._at_end: set[TopicPartition] = set()
        self._counted: set[TopicPartition] = set()
        self._acked: dict[tuple[TopicPartition, int], str | None] = {}  # None: acknowledged
        self._joined = False
        self._committed = False

    @property
    def committed(self) -> bool:
        """Whether this run has committed a position (never in a dry run)."""
        return self._committed

    # -- the run --------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> bool:
        """True once every held partition is read to its end, False when ``stop`` came first.

        Raises KafkaDeliveryError (a record not acknowledged; the position is committed up to
        it), KafkaConsumerError or KafkaAdminError (the broker, the group, the topic).
        """
        self._ends = end_offsets(self._consumer_config, [self.options.source])
        try:
            return self._run(stop)
        except KafkaException as exc:  # from the clients, or raised inside a callback
            error = exc.args[0] if exc.args else exc
            text = error.str() if isinstance(error, KafkaError) else str(error)
            raise KafkaConsumerError(f"replaying {self.options.source!r}: {text}") from exc

    def _run(self, stop: threading.Event) -> bool:
        consumer = Consumer(self._consumer_config, logger=client_logger())
        producer = (
            None
            if self.options.dry_run
            else Producer(self._producer_config, logger=client_logger())
        )
        try:
            consumer.subscribe(
                [self.options.source],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_revoke,
            )
            return self._loop(consumer, producer, stop)
        finally:
            consumer.close()
            if producer is not None:
                producer.flush(self.options.delivery_timeout_s)

    def _loop(self, consumer: Consumer, producer: Producer | None, stop: threading.Event) -> bool:
        """True when every held partition was read to its end, False when stopped first."""
        options = self.options
        deadline = self._clock() + options.assignment_timeout_s
        pacer = Pacer(options.rate, self._clock())
        batch = max(1, min(MAX_BATCH, int(options.rate)))
        while not stop.is_set():
            if self._joined and self._done():
                return True
            if not self._joined and self._clock() > deadline:
                raise KafkaConsumerError(
                    f"consumer group {options.group!r} was given no partition of"
                    f" {options.source!r} within {options.assignment_timeout_s:g} s"
                )
            messages = consumer.consume(batch, timeout=_POLL_S)
            handled, sent = self._handle(messages, producer, pacer, stop)
            if producer is not None and handled:
                self._settle(consumer, producer, handled, sent)
            self._positions.update(handled)
            self._pause_finished(consumer)
            self._show()
        return False

    def _handle(
        self,
        messages: list[Any],
        producer: Producer | None,
        pacer: Pacer,
        stop: threading.Event,
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, list[int]]]:
        """Decide and produce a batch; the next position per partition, and what was sent."""
        handled: dict[TopicPartition, int] = {}
        sent: dict[TopicPartition, list[int]] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                self._on_error(message, error)
                continue
            tp = TopicPartition(message.topic(), message.partition())
            if tp not in self._positions:
                continue
            if message.offset() >= self._ends.get(tp, 0):
                # Beyond the end fixed at start: the next run's. Everything before it has
                # been delivered, so the partition is done even if its last offsets before
                # the end held no record (transaction markers).
                self._at_end.add(tp)
                continue
            letter = read_dead_letter(consumed_record(message))
            decided = verdict(letter, self.options.selection, self.options.max_replays)
            if decided is Verdict.REPLAY:
                if producer is None:
                    self.tally.replayed += 1
                    self.tally.replayed_by_stage[letter.stage or "?"] += 1
                elif self._wait_turn(pacer, producer, stop):
                    self._produce(producer, letter)
                    sent.setdefault(tp, []).append(letter.offset)
                else:
                    break  # stopped while waiting: this record stays unhandled
            self.tally.count(decided)
            if self._on_record is not None:
                self._on_record(letter, decided)
            handled[tp] = message.offset() + 1
            self._show()
        return handled, sent

    def _wait_turn(self, pacer: Pacer, producer: Producer, stop: threading.Event) -> bool:
        while (wait := pacer.delay(self._clock())) > 0:
            producer.poll(0)  # serve delivery reports while waiting
            if stop.wait(min(wait, _WAIT_SLICE_S)):
                return False
            self._show()
        pacer.take(self._clock())
        return True

    def _produce(self, producer: Producer, letter: DeadLetter) -> None:
        def on_delivery(err: KafkaError | None, _msg: Any) -> None:
            if err is None:
                self.tally.replayed += 1
                self.tally.replayed_by_stage[letter.stage or "?"] += 1
            else:
                self.tally.failed += 1
            self._acked[(tp, letter.offset)] = None if err is None else err.str()

        tp = TopicPartition(letter.topic, letter.partition)

        while True:
            try:
                producer.produce(
                    self.options.target,
                    key=letter.key,
                    value=letter.value,
                    headers=replay_headers(letter),  # type: ignore[arg-type]
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                producer.poll(0.1)  # the local queue is full: serving reports makes room

    def _settle(
        self,
        consumer: Consumer,
        producer: Producer,
        handled: dict[TopicPartition, int],
        sent: dict[TopicPartition, list[int]],
    ) -> None:
        """Wait for the batch's acknowledgements, then commit each partition up to its first
        record the broker did not acknowledge; raise if there was one."""
        producer.flush(self.options.delivery_timeout_s)
        positions = dict(handled)
        failures: list[str] = []
        for tp, offsets in sent.items():
            for offset in offsets:
                outcome = self._acked.pop((tp, offset), _UNACKNOWLEDGED)
                if outcome is None:
                    continue
                if outcome is _UNACKNOWLEDGED:
                    self.tally.failed += 1  # a report that did come counted itself
                failures.append(f"{tp.topic}:{tp.partition}:{offset}: {outcome}")
                positions[tp] = min(positions[tp], offset)
        self._commit(consumer, positions)
        if failures:
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            raise KafkaDeliveryError(
                f"replaying dead letter {failures[0]}{more}", topic=self.options.target
            )

    def _commit(self, consumer: Consumer, positions: Mapping[TopicPartition, int]) -> None:
        offsets = [
            KafkaTopicPartition(tp.topic, tp.partition, off) for tp, off in positions.items()
        ]
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            raise KafkaConsumerError(
                f"the replayed records were acknowledged, but committing the position of group"
                f" {self.options.group!r} failed ({exc.args[0] if exc.args else exc}): the next"
                " run will replay them again"
            ) from exc
        self._committed = True
        self._positions.update(positions)

    # -- partitions -------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        self._joined = self.tally.assigned = True
        if not partitions:
            return
        for held in consumer.committed(partitions, timeout=10):
            tp = TopicPartition(held.topic, held.partition)
            low, _high = consumer.get_watermark_offsets(held, timeout=10)
            start = max(held.offset, low) if held.offset >= 0 else low
            self._positions[tp] = start
            if tp not in self._counted:
                self._counted.add(tp)
                self.tally.total += max(0, self._ends.get(tp, 0) - start)
        log.info(
            "partitions_assigned", partitions=[f"{p.topic}[{p.partition}]" for p in partitions]
        )

    def _on_revoke(self, _consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        # Nothing is pending here: each batch is committed before the next consume().
        for p in partitions:
            tp = TopicPartition(p.topic, p.partition)
            self._positions.pop(tp, None)
            self._at_end.discard(tp)

    def _done(self) -> bool:
        return all(
            tp in self._at_end or position >= self._ends.get(tp, 0)
            for tp, position in self._positions.items()
        )

    def _pause_finished(self, consumer: Consumer) -> None:
        finished = [
            KafkaTopicPartition(tp.topic, tp.partition)
            for tp, position in self._positions.items()
            if position >= self._ends.get(tp, 0) and tp not in self._at_end
        ]
        if finished:
            consumer.pause(finished)
            self._at_end.update(TopicPartition(p.topic, p.partition) for p in finished)

    def _on_error(self, message: Any, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            # Read to the end: also right when the last offsets are transaction markers.
            self._at_end.add(TopicPartition(message.topic(), message.partition()))
            return
        if error.fatal():
            raise KafkaConsumerError(f"fatal consumer error: {error.str()}")
        log.warning("consume_error", code=error.name(), reason=error.str())

    def _show(self) -> None:
        if self._progress is not None:
            self._progress.update(self.tally)
