"""A processor killed with SIGKILL: what it completed beyond its committed position is not
decided again by its successor, thanks to the completed offsets in the commit's metadata."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer
from confluent_kafka import TopicPartition as KafkaTopicPartition

from streamproc.core.offsets import decode_completed
from tests.fixtures.kafka import produce_records, wait_until
from tests.integration.processor.harness import (
    collecting,
    event,
    new_topics,
    record_of,
    wait_for,
)

pytestmark = pytest.mark.integration

FRAUD_FILE_ID = 201
ROOT = Path(__file__).resolve().parents[3]


def _config(bootstrap: str, emulator_url: str, topics: Any, group: str) -> Path:
    path = Path(tempfile.mkstemp(suffix=".toml")[1])
    path.write_text(f"""
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{group}"
input_topic = "{topics.input}"
decisions_topic = "{topics.decisions}"
dead_letter_topic = "{topics.dlq}"
commit_interval_ms = 100
session_timeout_ms = 6000

[controlroom]
url = "{emulator_url}"
username = "bot-developer"
password = "bot-developer-password"
admin_username = "cr-admin"
admin_password = "cr-admin-password"

[[api_tasks]]
name = "fraud"
repository_path = 'Automation Anywhere\\Bots\\Fraud Score API Task'
attempt_timeout_ms = 120000

[processing]
decision_sla_ms = 600000

[processing.circuit_breaker]
enabled = false

[observability]
http_enabled = false
log_level = "WARNING"
""")
    return path


def _committed(bootstrap: str, group: str, topic: str) -> tuple[int, str]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        (tp,) = consumer.committed([KafkaTopicPartition(topic, 0)], timeout=10)
        return tp.offset, tp.metadata or ""
    finally:
        consumer.close()


def _processor(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "streamproc", "run", "--config", str(config)], cwd=ROOT
    )


async def test_events_completed_beyond_the_commit_are_not_decided_again_after_a_kill(
    kafka_bootstrap: str, emulator_factory: Any, unique_group: str
) -> None:
    """The first event hangs at the API Task while the next twenty are decided: the commit
    stays at the first, naming the twenty in its metadata. After SIGKILL and a restart the
    first is decided, and none of the twenty a second time."""
    emulator = emulator_factory(latency_ms=5)
    topics = new_topics(kafka_bootstrap, partitions=1)
    config = _config(kafka_bootstrap, emulator.url, topics, unique_group)
    later = [event(f"crash-{i}", f"card-{i}") for i in range(1, 21)]
    async with collecting(kafka_bootstrap, topics) as outputs:
        first = _processor(config)
        try:
            emulator.set_behavior(FRAUD_FILE_ID, hang_rate=1.0, hang_max_seconds=600)
            produce_records(kafka_bootstrap, topics.input, [record_of(event("crash-0", "card-0"))])
            wait_until(
                lambda: emulator.allocation_stats(FRAUD_FILE_ID)["inFlight"] == 1,
                60,
                message="the first event's execute hanging",
            )
            emulator.set_behavior(FRAUD_FILE_ID, hang_rate=0.0)
            produce_records(kafka_bootstrap, topics.input, [record_of(ev) for ev in later])
            await wait_for(lambda: len(outputs.by_id) == 20, 60, "the twenty decisions")
            wait_until(
                lambda: (
                    decode_completed(*_committed(kafka_bootstrap, unique_group, topics.input))
                    == set(range(1, 21))
                ),
                30,
                message="a commit at offset 0 naming offsets 1-20",
            )
            assert _committed(kafka_bootstrap, unique_group, topics.input)[0] == 0
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(30)
        second = _processor(config)
        try:
            await wait_for(lambda: "crash-0" in outputs.by_id, 90, "the first event decided")
            wait_until(
                lambda: _committed(kafka_bootstrap, unique_group, topics.input)[0] == 21,
                30,
                message="the commit past all twenty-one",
            )
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(60)
    assert {tid: len(outs) for tid, outs in outputs.by_id.items()} == {
        f"crash-{i}": 1 for i in range(21)
    }


async def test_exactly_once_survives_a_kill_without_a_duplicate_or_a_loss(
    kafka_bootstrap: str, emulator_factory: Any, unique_group: str
) -> None:
    """With delivery = exactly_once, a processor killed mid-stream and restarted leaves every
    event with exactly one output for a read_committed reader."""
    emulator = emulator_factory(latency_ms=10, latency_jitter_ms=10)
    topics = new_topics(kafka_bootstrap, partitions=3)
    config = _config(kafka_bootstrap, emulator.url, topics, unique_group)
    config.write_text(
        config.read_text().replace("[processing]\n", '[processing]\ndelivery = "exactly_once"\n')
    )
    total = 300
    events = [event(f"eos-{i}", f"card-{i % 23}") for i in range(total)]
    async with collecting(kafka_bootstrap, topics) as outputs:
        first = _processor(config)
        try:
            produce_records(kafka_bootstrap, topics.input, [record_of(e) for e in events[:150]])
            await wait_for(lambda: len(outputs.by_id) >= 60, 60, "a first part decided")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(30)
        produce_records(kafka_bootstrap, topics.input, [record_of(e) for e in events[150:]])
        second = _processor(config)
        try:
            await wait_for(lambda: len(outputs.by_id) >= total, 120, f"{total} events decided")
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(60) == 0
        repeated = {tid: len(outs) for tid, outs in outputs.by_id.items() if len(outs) != 1}
    assert repeated == {}
    assert set(outputs.by_id) == {e["event_id"] for e in events}
