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
import contextlib
import functools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar, cast

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as KafkaTopicPartition

from streamproc.core.offsets import CommitPoint, TopicPartition
from streamproc.errors import KafkaDeliveryError, KafkaTransactionError
from streamproc.kafka.clientlogs import client_logger
from streamproc.kafka.handoff import settle
from streamproc.kafka.records import OutputRecord
from streamproc.logs import get_logger

log = get_logger("kafka.producer")

T = TypeVar("T")
_TRANSACTION_RETRIES = 5
# librdkafka 2.16 does not time send_offsets_to_transaction out while the group coordinator is
# unreachable or gone from the metadata (confluentinc/librdkafka#5456, #5511): it can wait for
# good. A transaction call that has not returned this long after its own timeout is given up
# and its producer treated as unusable, so the processor replaces it instead of stalling.
STUCK_GRACE_S = 3.0
# Commits come every transaction_interval_ms; one that takes longer than this has failed, and
# its transaction is redone, rather than holding every output behind it for half a minute.
TRANSACTION_CALL_S = 5.0
OnDelivery = Callable[[T, KafkaDeliveryError | None], None]


class KafkaSink(Generic[T]):
    """Produces records; ``on_delivery(token, error)`` runs from ``poll`` for each one.

    Transactional when its configuration has a ``transactional.id``: then outputs go out in
    transactions (:meth:`start_transactions`, :meth:`commit`, :meth:`abort`), each committed
    together with the input offsets it answers (KIP-447), so a read_committed consumer sees
    every decision exactly once. The blocking librdkafka calls run in a worker thread; a
    delivery report they happen to serve there is handed back to the event loop.
    """

    def __init__(self, config: Mapping[str, Any], on_delivery: OnDelivery[T]) -> None:
        self._config = dict(config)
        self._producer = Producer(self._config, logger=client_logger())
        self._on_delivery = on_delivery
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = threading.get_ident()

    @property
    def transactional(self) -> bool:
        return "transactional.id" in self._config

    # -- transactions (exactly once) -----------------------------------------------------

    async def start_transactions(self, timeout_s: float = 30.0) -> None:
        """Register the transactional id (fencing an earlier producer that used it, and
        aborting what it left open), then open the first transaction."""
        self._bind()
        await self._transaction_call(self._producer.init_transactions, timeout_s)
        self.begin()

    async def _init_only(self, timeout_s: float) -> None:
        self._bind()
        await self._transaction_call(self._producer.init_transactions, timeout_s)

    def begin(self) -> None:
        """Open the next transaction (a local call: no broker round trip)."""
        try:
            self._producer.begin_transaction()
        except KafkaException as exc:
            raise transaction_error(exc, "begin") from exc

    async def commit(
        self,
        offsets: Mapping[TopicPartition, CommitPoint],
        group: Any,
        timeout_s: float = TRANSACTION_CALL_S,
    ) -> None:
        """Commit the open transaction: its outputs and ``offsets`` for the consumer ``group``
        (its group metadata, which fences a member that lost its partitions)."""
        if offsets:
            positions = [
                KafkaTopicPartition(t, p, point.offset, metadata=point.metadata)
                for (t, p), point in offsets.items()
            ]
            await self._transaction_call(
                self._producer.send_offsets_to_transaction, positions, group, timeout_s
            )
        await self._transaction_call(self._producer.commit_transaction, timeout_s)

    async def abort(self, timeout_s: float = TRANSACTION_CALL_S) -> None:
        """Abort the open transaction: its outputs are never seen by read_committed readers."""
        await self._transaction_call(self._producer.abort_transaction, timeout_s)

    async def renew(self, timeout_s: float = TRANSACTION_CALL_S) -> None:
        """Replace a producer that hit a fatal error (e.g. fenced); :meth:`begin` follows."""
        old, self._producer = self._producer, Producer(self._config, logger=client_logger())
        try:
            # The old producer may be the one stuck in a call: do not wait on it for good.
            await asyncio.wait_for(_in_daemon_thread(old.purge), STUCK_GRACE_S)
        except TimeoutError:
            log.warning("producer_purge_timed_out", timeout_s=STUCK_GRACE_S)
        await self._init_only(timeout_s)

    async def _transaction_call(self, fn: Any, *args: Any) -> None:
        """``fn(*args)`` in a worker thread; its last argument is its timeout in seconds."""
        # A retriable error means "call it again"; anything else is the caller's to handle.
        operation = getattr(fn, "__name__", "transaction call")
        give_up_s = float(args[-1]) + STUCK_GRACE_S
        for attempt in range(_TRANSACTION_RETRIES):
            try:
                await asyncio.wait_for(_in_daemon_thread(fn, *args), give_up_s)
                return
            except TimeoutError as exc:
                # The worker thread stays blocked in librdkafka; this producer is not used again.
                raise KafkaTransactionError(
                    f"no answer within {give_up_s:g} s", operation=operation, fatal=True
                ) from exc
            except KafkaException as exc:
                error = transaction_error(exc, operation)
                if not error.retriable or attempt == _TRANSACTION_RETRIES - 1:
                    raise error from exc
                log.warning("transaction_call_retried", call=error.operation, error=str(error))

    def _bind(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

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
        if self._loop is not None and threading.get_ident() != self._loop_thread:
            # Served by a transaction call in a worker thread: the loop owns the state.
            self._loop.call_soon_threadsafe(self._delivered, token, err, _msg)
            return
        if err is None:
            self._on_delivery(token, None)
        else:
            topic = _msg.topic() if _msg is not None else "?"
            retriable = bool(err.retriable())
            self._on_delivery(
                token, KafkaDeliveryError(err.str(), topic=topic, retriable=retriable)
            )


async def _in_daemon_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` on a thread of its own, not the loop's pool: a call stuck in librdkafka
    then holds neither a pool worker nor the process's exit, which joins the pool's threads."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()

    def call() -> None:
        try:
            result, error = fn(*args), None
        except BaseException as exc:
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(settle, done, result, error)

    threading.Thread(target=call, name="producer-transaction", daemon=True).start()
    return await done


def transaction_error(exc: KafkaException, operation: str) -> KafkaTransactionError:
    """The error-tree counterpart of a librdkafka transaction error: what the caller does
    next is in its flags (retry the call, abort the transaction, or replace the producer)."""
    err = exc.args[0] if exc.args else None
    if not isinstance(err, KafkaError):
        return KafkaTransactionError(str(exc), operation=operation, fatal=True)
    return KafkaTransactionError(
        err.str(),
        operation=operation,
        retriable=bool(err.retriable()),
        abortable=bool(err.txn_requires_abort()),
        fatal=bool(err.fatal()),
    )
