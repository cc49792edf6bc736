"""Run the real processor against the real broker and the emulator, and read what it published.

Every input record carries an ``x-test-id`` header equal to its event id (or a label for
records that have none), so each output, decision or dead letter, is attributed to exactly one
input: decisions by their ``event_id`` field, dead letters by the original headers they keep.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer
from pydantic import SecretStr

from streamproc.app import Running, run_processor
from streamproc.config import (
    ControlRoomSettings,
    KafkaSettings,
    ObservabilitySettings,
    ProcessingSettings,
    Settings,
)
from streamproc.kafka.admin import ensure_topics
from tests.fixtures.kafka import produce_records

TEST_ID = "x-test-id"


@dataclass(frozen=True)
class Topics:
    input: str
    decisions: str
    dlq: str


def new_topics(bootstrap: str, partitions: int = 3) -> Topics:
    suffix = uuid.uuid4().hex[:10]
    topics = Topics(f"tx-{suffix}", f"decisions-{suffix}", f"dlq-{suffix}")
    ensure_topics(
        bootstrap, {topics.input: partitions, topics.decisions: partitions, topics.dlq: 1}
    )
    return topics


def settings_for(
    bootstrap: str,
    emulator_url: str,
    topics: Topics,
    group: str,
    *,
    processing: Mapping[str, Any] | None = None,
    controlroom: Mapping[str, Any] | None = None,
    api_tasks: Any = None,
) -> Settings:
    cr: dict[str, Any] = {
        "url": emulator_url,
        "username": "bot-developer",
        "password": SecretStr("bot-developer-password"),
        "admin_username": "cr-admin",
        "admin_password": SecretStr("cr-admin-password"),
    }
    cr.update(controlroom or {})
    extra: dict[str, Any] = {} if api_tasks is None else {"api_tasks": api_tasks}
    return Settings(
        kafka=KafkaSettings(
            bootstrap_servers=bootstrap,
            group_id=group,
            input_topic=topics.input,
            decisions_topic=topics.decisions,
            dead_letter_topic=topics.dlq,
            commit_interval_ms=200,
            session_timeout_ms=6000,
        ),
        controlroom=ControlRoomSettings(**cr),
        processing=ProcessingSettings(**(processing or {})),
        observability=ObservabilitySettings(http_enabled=False),
        **extra,
    )


def event(event_id: str, card: str, **fields: Any) -> dict[str, Any]:
    """A valid, ordinary domestic card-present purchase occurring now."""
    base: dict[str, Any] = {
        "event_id": event_id,
        "occurred_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "amount": 42.5,
        "currency": "USD",
        "card_id": card,
        "account_id": f"acct-{card}",
        "merchant_id": "m-1",
        "merchant_category": "5411",
        "country": "US",
        "card_country": "US",
        "channel": "pos",
    }
    base.update(fields)
    return base


def produce_events(bootstrap: str, topic: str, events: Iterable[Mapping[str, Any]]) -> None:
    produce_records(
        bootstrap,
        topic,
        (record_of(ev) for ev in events),
    )


def record_of(ev: Mapping[str, Any]) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    return (
        str(ev["card_id"]).encode(),
        orjson.dumps(ev),
        [(TEST_ID, str(ev["event_id"]).encode())],
    )


def paced(
    bootstrap: str,
    topic: str,
    make: Callable[[int], tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]],
    total: int,
    per_second: float,
) -> threading.Thread:
    """Produce ``total`` records at about ``per_second`` from one producer in a thread;
    each record is made just before it is sent, so its occurred_at is fresh."""

    def work() -> None:
        producer = _warm_producer(bootstrap, topic)
        for i in range(total):
            key, value, headers = make(i)
            producer.produce(topic, value=value, key=key, headers=headers)
            producer.poll(0)
            time.sleep(1 / per_second)  # pacing the load, not synchronising the test
        if producer.flush(30):
            raise RuntimeError("paced producer could not deliver every record")

    thread = threading.Thread(target=work, name="paced-producer", daemon=True)
    thread.start()
    return thread


def _warm_producer(bootstrap: str, topic: str) -> Producer:
    # Connected and with the topic's metadata before the first record is made, so that the
    # records' occurred_at is not spent waiting for a connection.
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    producer.list_topics(topic, timeout=10)
    return producer


def send_fresh(
    bootstrap: str, topic: str, make: Callable[[], Iterable[Mapping[str, Any]]]
) -> list[Mapping[str, Any]]:
    """Produce the events ``make()`` returns, made only once the producer is connected."""
    producer = _warm_producer(bootstrap, topic)
    events = list(make())
    for ev in events:
        key, value, headers = record_of(ev)
        producer.produce(topic, value=value, key=key, headers=headers)
    if producer.flush(30):
        raise RuntimeError("could not deliver every record")
    return events


def produce_raw(bootstrap: str, topic: str, items: Iterable[tuple[str, bytes | None]]) -> None:
    """Records given as (test id, value), e.g. malformed ones."""
    produce_records(
        bootstrap, topic, ((b"card-raw", value, [(TEST_ID, tid.encode())]) for tid, value in items)
    )


@dataclass
class Output:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes | None]

    @property
    def json(self) -> Any:
        assert self.value is not None
        return orjson.loads(self.value)


@dataclass
class Outputs:
    """Everything published to the decisions and dead-letter topics, by test id."""

    topics: Topics
    by_id: dict[str, list[Output]] = field(default_factory=lambda: defaultdict(list))
    in_order: list[Output] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, out: Output) -> None:
        if out.topic == self.topics.decisions:
            test_id = str(out.json["event_id"])
        else:
            raw = out.headers.get(TEST_ID)
            test_id = raw.decode() if raw else f"?{out.partition}:{out.offset}"
        with self.lock:
            self.by_id[test_id].append(out)
            self.in_order.append(out)

    def count(self) -> int:
        with self.lock:
            return len(self.in_order)

    def decisions(self) -> list[Output]:
        with self.lock:
            return [o for o in self.in_order if o.topic == self.topics.decisions]

    def dead_letters(self) -> list[Output]:
        with self.lock:
            return [o for o in self.in_order if o.topic == self.topics.dlq]


@asynccontextmanager
async def collecting(bootstrap: str, topics: Topics) -> AsyncIterator[Outputs]:
    """Read both output topics from the beginning, in a thread, for the block's duration."""
    outputs = Outputs(topics)
    stop = threading.Event()
    ready = threading.Event()

    def consume() -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"collector-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        consumer.subscribe([topics.decisions, topics.dlq], on_assign=lambda _c, _p: ready.set())
        try:
            while not stop.is_set():
                for msg in consumer.consume(500, 0.1):
                    if msg.error() is None:
                        outputs.add(
                            Output(
                                msg.topic(),
                                msg.partition(),
                                msg.offset(),
                                msg.key(),
                                msg.value(),
                                dict(msg.headers() or []),
                            )
                        )
        finally:
            consumer.close()

    thread = threading.Thread(target=consume, name="collector", daemon=True)
    thread.start()
    await wait_for(ready.is_set, 30, "the collector's assignment")
    try:
        yield outputs
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 10)


async def wait_for(predicate: Any, timeout_s: float, what: str) -> Any:
    """Poll ``predicate`` until truthy, at most ``timeout_s``; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Running]:
    """The processor, started and assigned its partitions; stopped gracefully on exit."""
    stop = asyncio.Event()
    started: asyncio.Future[Running] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_processor(settings, stop, started=started))
    done, _ = await asyncio.wait({task, started}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # start-up failed: raise its error
    assert started.done(), "the processor did not start within 60 s"
    handle = started.result()
    await wait_for(lambda: handle.processor.assignment, 30, "a partition assignment")
    try:
        yield handle
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
