"""What went in and what came out: per input record, its decisions and dead letters.

Decisions name their input in ``source`` (topic, partition, offset) and dead letters in their
``streamproc.error.source.*`` headers, so every output is matched to the exact record it answers,
malformed ones included.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections import Counter

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.fixtures.kafka import consume_records

Position = tuple[int, int]  # (partition, offset) of an input record


def record_count(bootstrap: str, topic: str) -> int:
    """How many records ``topic`` holds: the sum of its partitions' high watermarks (exact for
    topics written without transactions, whose commit markers take offsets too)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "record-count"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        )
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of ``topic`` (0 where none)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        offsets = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return {tp.partition: max(tp.offset, 0) for tp in offsets}
    finally:
        consumer.close()


def members_partitions(bootstrap: str, group: str) -> list[int]:
    """How many partitions each member of the consumer group owns now ([] when unknown)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        description = admin.describe_consumer_groups([group])[group].result(timeout=10)
    except KafkaException:
        return []
    return [len(member.assignment.topic_partitions) for member in description.members]


def outputs_by_input(
    bootstrap: str, decisions: str, dead_letters: str, *, timeout_s: float = 60
) -> Counter[Position]:
    """How many outputs (decisions and dead letters) each input position has."""
    found: Counter[Position] = Counter()
    for message in consume_records(
        bootstrap, decisions, count=record_count(bootstrap, decisions), timeout_s=timeout_s
    ):
        source = orjson.loads(message.value() or b"{}")["source"]
        found[(int(source["partition"]), int(source["offset"]))] += 1
    for message in consume_records(
        bootstrap, dead_letters, count=record_count(bootstrap, dead_letters), timeout_s=timeout_s
    ):
        headers = {k: (v or b"").decode() for k, v in message.headers() or []}
        found[
            (
                int(headers["streamproc.error.source.partition"]),
                int(headers["streamproc.error.source.offset"]),
            )
        ] += 1
    return found


def http_get(url: str) -> tuple[int, str]:
    """Status and body of a GET; connection errors are status 0, for polling."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


def metric_total(exposition: str, name: str) -> float:
    """The sum of every sample of metric ``name`` in a Prometheus exposition."""
    total = 0.0
    for line in exposition.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total
