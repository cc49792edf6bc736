"""The processor end to end: the real broker, the emulator, the real composition root."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer
from confluent_kafka import TopicPartition as KafkaTopicPartition

from streamproc.config import FRAUD_SCORE_PATH, ApiTaskSettings
from streamproc.core.mapping import DEFAULT_FRAUD_MAPPING, InputVariableSpec, TaskMappingSpec
from tests.integration.processor.harness import (
    TEST_ID,
    collecting,
    event,
    new_topics,
    paced,
    produce_events,
    produce_raw,
    record_of,
    running,
    send_fresh,
    settings_for,
    wait_for,
)

pytestmark = pytest.mark.integration

FRAUD_FILE_ID = 201


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = [KafkaTopicPartition(topic, p) for p in range(partitions)]
        return {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}
    finally:
        consumer.close()


def _end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        return {
            p: consumer.get_watermark_offsets(KafkaTopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        }
    finally:
        consumer.close()


async def test_every_event_ends_exactly_once_across_a_graceful_restart(
    kafka_bootstrap: str, emulator_factory: Any, unique_group: str
) -> None:
    """Each produced event gets exactly one decision or dead letter although the processor
    is stopped and restarted mid-stream, and every offset ends committed."""
    emulator = emulator_factory(latency_ms=10, latency_jitter_ms=10)
    topics = new_topics(kafka_bootstrap, partitions=3)
    settings = settings_for(kafka_bootstrap, emulator.url, topics, unique_group)
    total, malformed_every = 300, 25

    def make(i: int) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
        if i % malformed_every == 0:
            return b"card-raw", b'{"event_id": ', [(TEST_ID, f"bad-{i}".encode())]
        return record_of(event(f"ev-{i}", f"card-{i % 17}"))

    async with collecting(kafka_bootstrap, topics) as outputs:
        producer = paced(kafka_bootstrap, topics.input, make, total, per_second=120)
        async with running(settings):
            await wait_for(lambda: outputs.count() >= 80, 60, "80 outputs before the restart")
        first_run = outputs.count()
        async with running(settings):
            await asyncio.to_thread(producer.join, 60)
            await wait_for(lambda: len(outputs.by_id) >= total, 60, f"{total} distinct outputs")
        assert first_run < total, "the restart must happen mid-stream"
        repeated = {tid: len(outs) for tid, outs in outputs.by_id.items() if len(outs) != 1}
        assert repeated == {}
        assert len(outputs.dead_letters()) == total // malformed_every
        assert len(outputs.decisions()) == total - total // malformed_every

    committed = _committed(kafka_bootstrap, unique_group, topics.input, 3)
    assert committed == _end_offsets(kafka_bootstrap, topics.input, 3)


async def test_malformed_events_are_dead_lettered_with_their_stage(
    kafka_bootstrap: str, emulator_factory: Any, unique_group: str
) -> None:
    """Bad JSON, missing or mistyped required fields, oversized values and unmappable events
    each become one dead letter with the right stage, original bytes and headers intact."""
    emulator = emulator_factory()
    topics = new_topics(kafka_bootstrap, partitions=1)
    needs_device = TaskMappingSpec(
        inputs=(
            *DEFAULT_FRAUD_MAPPING.inputs,
            InputVariableSpec(
                name="iStrDeviceId", type="STRING", source="extra.device.id", required=True
            ),
        ),
        outputs=DEFAULT_FRAUD_MAPPING.outputs,
    )
    settings = settings_for(
        kafka_bootstrap,
        emulator.url,
        topics,
        unique_group,
        processing={"decision_sla_ms": 60_000},
        api_tasks=(
            ApiTaskSettings(name="fraud", repository_path=FRAUD_SCORE_PATH, mapping=needs_device),
        ),
    )
    valid = event("ok-1", "card-9", device={"id": "dev-1"})
    no_amount = {k: v for k, v in event("no-amount", "card-9").items() if k != "amount"}
    cases: dict[str, tuple[bytes | None, str]] = {
        "bad-json": (b"{not json", "decode"),
        "not-object": (b"[1, 2, 3]", "decode"),
        "empty": (b"", "decode"),
        "tombstone": (None, "decode"),
        "oversized": (orjson.dumps(event("big", "card-9", note="x" * 70_000)), "decode"),
        "missing-amount": (orjson.dumps(no_amount), "validate"),
        "mistyped-amount": (orjson.dumps(event("str-amount", "card-9", amount="12.0")), "validate"),
        "bad-time": (
            orjson.dumps(event("bad-time", "card-9", occurred_at="yesterday")),
            "validate",
        ),
        "long-id": (orjson.dumps(event("x" * 200, "card-9")), "validate"),
        "null-field": (orjson.dumps(event("null-country", "card-9", country=None)), "validate"),
        "unmappable": (orjson.dumps(event("no-device", "card-9")), "map"),
    }
    async with collecting(kafka_bootstrap, topics) as outputs, running(settings):
        await asyncio.to_thread(
            produce_raw, kafka_bootstrap, topics.input, [(k, v) for k, (v, _) in cases.items()]
        )
        await asyncio.to_thread(produce_events, kafka_bootstrap, topics.input, [valid])
        await wait_for(lambda: outputs.count() >= len(cases) + 1, 60, "every output")

    assert [o.json["event_id"] for o in outputs.decisions()] == ["ok-1"]
    for test_id, (value, stage) in cases.items():
        [letter] = outputs.by_id[test_id]
        assert letter.topic == topics.dlq
        assert letter.headers["streamproc.error.stage"] == stage.encode(), test_id
        assert letter.value == value
        assert letter.key == b"card-raw"
        assert letter.headers[TEST_ID] == test_id.encode()
        assert letter.headers["streamproc.error.source.topic"] == topics.input.encode()
        assert letter.headers["streamproc.error.message"]


async def _order_run(
    kafka_bootstrap: str, emulator_factory: Any, group: str, ordering: str
) -> dict[str, list[int]]:
    emulator = emulator_factory(latency_ms=2, latency_jitter_ms=25)
    topics = new_topics(kafka_bootstrap, partitions=2)
    settings = settings_for(
        kafka_bootstrap,
        emulator.url,
        topics,
        group,
        processing={"ordering": ordering, "decision_sla_ms": 30_000},
    )
    cards, per_card = 6, 25
    events = [event(f"card-{c}:{n}", f"card-{c}") for n in range(per_card) for c in range(cards)]
    async with collecting(kafka_bootstrap, topics) as outputs, running(settings):
        await asyncio.to_thread(produce_events, kafka_bootstrap, topics.input, events)
        await wait_for(lambda: outputs.count() >= len(events), 60, "every decision")
    seen: dict[str, list[int]] = {}
    for out in outputs.decisions():
        card, n = out.json["event_id"].split(":")
        seen.setdefault(card, []).append(int(n))
    assert len(seen) == cards
    assert all(len(v) == per_card for v in seen.values())
    return seen


async def test_per_key_order_holds_under_concurrency(
    kafka_bootstrap: str, emulator_factory: Any, unique_group: str
) -> None:
    """In key mode, each card's decisions appear in the order of its events although
    execute latencies vary widely and many cards are scored at once."""
    seen = await _order_run(kafka_bootstrap, emulator_factory, unique_group, "key")
    assert {card: ns == sorted(ns) for card, ns in seen.items()} == dict.fromkeys(seen, True)


async def test_unordered_mode_lets_varying_latency_reorder_a_key(
    kafka_bootstrap: str, emulator_factory: Any, unique_group: str
) -> None:
    """The control for the order test: without key ordering the same load does reorder."""
    seen = await _order_run(kafka_bootstrap, emulator_factory, unique_group, "unordered")
    assert any(ns != sorted(ns) for ns in seen.values())


async def test_in_flight_executes_never_exceed_the_allocation_limit(
    kafka_bootstrap: str, emulator_factory: Any, unique_group: str
) -> None:
    """With an allocation of 3 and a configured budget of 5, the lower wins: the emulator's
    high-water mark reaches 3 and never more, and no execute is ever rejected."""
    emulator = emulator_factory(
        latency_ms=20,
        allocations=[{"fileId": FRAUD_FILE_ID, "concurrencyLimit": 3}],
    )
    topics = new_topics(kafka_bootstrap, partitions=3)
    settings = settings_for(
        kafka_bootstrap,
        emulator.url,
        topics,
        unique_group,
        processing={"decision_sla_ms": 60_000},
        api_tasks=(
            ApiTaskSettings(name="fraud", repository_path=FRAUD_SCORE_PATH, concurrency_limit=5),
        ),
    )
    events = [event(f"hw-{i}", f"card-{i}") for i in range(150)]
    async with collecting(kafka_bootstrap, topics) as outputs, running(settings) as handle:
        assert handle.allocations["fraud"].limit == 3
        await asyncio.to_thread(produce_events, kafka_bootstrap, topics.input, events)
        await wait_for(lambda: outputs.count() >= len(events), 60, "every decision")
    stats = emulator.allocation_stats(FRAUD_FILE_ID)
    assert stats["maxInFlight"] == 3
    assert stats["rejected"] == 0
    assert stats["executed"] == len(events)
    assert not any(o.json["fallback"] for o in outputs.decisions())


async def test_a_slow_api_task_yields_on_time_fallbacks(
    kafka_bootstrap: str, emulator_factory: Any, unique_group: str
) -> None:
    """When executes take longer than the SLA, every event is decided by fallback at its
    deadline, not when the execute returns; the late results are dropped and counted."""
    sla_ms = 1000
    emulator = emulator_factory(latency_ms=3000)
    topics = new_topics(kafka_bootstrap, partitions=1)
    settings = settings_for(
        kafka_bootstrap,
        emulator.url,
        topics,
        unique_group,
        processing={"decision_sla_ms": sla_ms},
        api_tasks=(
            ApiTaskSettings(
                name="fraud", repository_path=FRAUD_SCORE_PATH, attempt_timeout_ms=10_000
            ),
        ),
    )
    async with collecting(kafka_bootstrap, topics) as outputs, running(settings) as handle:
        events = await asyncio.to_thread(
            send_fresh,
            kafka_bootstrap,
            topics.input,
            lambda: [event(f"slow-{i}", f"card-{i}") for i in range(6)],
        )
        await wait_for(lambda: outputs.count() >= len(events), 30, "every decision")
        late = handle.metrics.late_results.labels("fraud")
        await wait_for(lambda: late.value == len(events), 30, "the late results")
    for out in outputs.decisions():
        record = out.json
        assert record["fallback"] is True
        assert record["fallback_reason"] == "deadline", record
        assert record["decision"] == "REVIEW"
        # On time: decided at the deadline, long before the 3 s execute returned.
        assert sla_ms <= record["latency_ms"] < sla_ms + 500, record["latency_ms"]


async def test_a_failing_api_task_yields_on_time_fallbacks_not_dead_letters(
    kafka_bootstrap: str, emulator_factory: Any, unique_group: str
) -> None:
    """When every execute fails with a 5xx, events are retried within the deadline and then
    decided by fallback on time; nothing goes to the dead-letter topic. (The circuit breaker
    is off here: with it, events after the first few fall back at once; see test_outage.)"""
    sla_ms = 2000
    emulator = emulator_factory(error_rate=1.0)
    topics = new_topics(kafka_bootstrap, partitions=1)
    processing = {"decision_sla_ms": sla_ms, "circuit_breaker": {"enabled": False}}
    settings = settings_for(
        kafka_bootstrap, emulator.url, topics, unique_group, processing=processing
    )
    async with collecting(kafka_bootstrap, topics) as outputs, running(settings):
        events = await asyncio.to_thread(
            send_fresh,
            kafka_bootstrap,
            topics.input,
            lambda: [event(f"down-{i}", f"card-{i}") for i in range(10)],
        )
        await wait_for(lambda: outputs.count() >= len(events), 30, "every decision")
    assert outputs.dead_letters() == []
    for out in outputs.decisions():
        record = out.json
        assert record["fallback"] is True
        assert record["fallback_reason"] == "endpoint_unavailable", record
        assert record["tasks"]["fraud"]["attempts"] >= 2
        assert record["latency_ms"] < sla_ms + 400, record["latency_ms"]


async def test_tokens_expiring_mid_run_are_refreshed_without_a_failed_event(
    kafka_bootstrap: str, emulator_factory: Any, unique_group: str
) -> None:
    """With auth and execution tokens living 2 s, a 5 s stream is scored without a single
    fallback or dead letter: tokens are refreshed before expiry or on the first 401."""
    emulator = emulator_factory(token_ttl_seconds=2, execution_token_ttl_seconds=2, latency_ms=5)
    topics = new_topics(kafka_bootstrap, partitions=1)
    # A generous SLA: what is tested is that no event fails, not how fast a refresh is.
    settings = settings_for(
        kafka_bootstrap, emulator.url, topics, unique_group, processing={"decision_sla_ms": 5000}
    )
    total = 150

    def make(i: int) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
        return record_of(event(f"tok-{i}", f"card-{i % 5}"))

    async with collecting(kafka_bootstrap, topics) as outputs, running(settings):
        producer = paced(kafka_bootstrap, topics.input, make, total, per_second=30)
        await asyncio.to_thread(producer.join, 60)
        await wait_for(lambda: outputs.count() >= total, 30, "every decision")
    assert outputs.dead_letters() == []
    fallbacks = [
        (o.json["event_id"], o.json["fallback_reason"])
        for o in outputs.decisions()
        if o.json["fallback"]
    ]
    assert fallbacks == []
