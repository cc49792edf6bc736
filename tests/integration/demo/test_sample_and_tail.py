"""produce-sample writes what it says; tail prints decisions and dead letters and stops on ^C."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from decimal import Decimal

import pytest

from streamproc.core.deadletters import dead_letter_headers_for
from streamproc.core.decisions import FallbackPolicy, SourceRef, TaskReport, decide
from streamproc.core.events import decode_event
from streamproc.core.mapping import TaskVerdict
from streamproc.demo.feed import SampleFeed, sample_producer_config
from streamproc.demo.generator import SampleGenerator
from streamproc.errors import EventValidationError
from tests.fixtures.kafka import REPO_ROOT, TopicFactory, consume_records, produce_records

pytestmark = pytest.mark.integration


def streamproc(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamproc", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def decision_record(event_id: str) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    event = decode_event(
        json.dumps(
            {"event_id": event_id, "occurred_at": "2026-03-14T09:26:53.000Z", "amount": 3500}
        ).encode()
    )
    record = decide(
        event,
        "default",
        [TaskReport("fraud", TaskVerdict(Decimal(75), "DECLINE", ("high_amount",)), 1, 20.0)],
        combine="strictest",
        fallback=FallbackPolicy(),
        now_epoch=event.occurred_at_epoch + 0.042,
        source=SourceRef("transactions", 0, 1),
    )
    return b"card-1", record.to_json(), record.headers()


def test_produce_sample_writes_count_records_keyed_and_labelled(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    """--count N produces N records keyed by card, each labelled with its kind and event id."""
    topic = topic_factory("sample", partitions=3)
    result = streamproc(
        "produce-sample",
        "--bootstrap", kafka_bootstrap,
        "--topic", topic,
        "--count", "400",
        "--malformed-ratio", "0.1",
        "--seed", "7",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"produced 400 records to {topic}")

    records = consume_records(kafka_bootstrap, topic, count=400, timeout_s=30)
    assert len(records) == 400
    kinds: Counter[str] = Counter()
    event_ids: set[str] = set()
    for message in records:
        headers = {k: (v or b"").decode() for k, v in message.headers() or []}
        kinds[headers["x-sample-kind"]] += 1
        event_ids.add(headers["x-sample-event-id"])
        assert (message.key() or b"").startswith(b"card-")
        if headers["x-sample-kind"] == "valid":
            assert decode_event(message.value()).event_id == headers["x-sample-event-id"]
    assert len(event_ids) == 400
    assert 20 < sum(n for kind, n in kinds.items() if kind != "valid") < 65


def test_produce_sample_holds_the_rate_for_the_duration(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    """--rate R --duration S produces about R x S records."""
    topic = topic_factory("paced")
    result = streamproc(
        "produce-sample", "--bootstrap", kafka_bootstrap, "--topic", topic,
        "--rate", "100", "--duration", "1.5",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    produced = int(result.stdout.split()[1].replace(",", ""))
    assert 140 <= produced <= 151


def test_tail_prints_one_line_per_decision_and_dead_letter(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    """From the beginning, tail shows each decision and each dead letter on one line."""
    topic = topic_factory("outputs")
    key, value, headers = decision_record("evt-tail-1")
    letter_headers = dead_letter_headers_for(
        [("x-sample-event-id", b"evt-tail-2")],
        EventValidationError("amount must be a JSON number, got string", field="amount"),
        attempts=0,
        source_topic="transactions",
        partition=0,
        offset=9,
        now_epoch=0.0,
    )
    produce_records(
        kafka_bootstrap,
        topic,
        [(key, value, headers), (b"card-2", b'{"amount": "1"}', letter_headers)],
    )
    result = streamproc(
        "tail", "--bootstrap", kafka_bootstrap, "--topic", topic, "--from-beginning",
        "--limit", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "evt-tail-1  DECLINE  score=75      42.0 ms  high_amount"
    assert lines[1] == (
        "evt-tail-2  DEAD LETTER  stage=validate  EventValidationError:"
        " amount must be a JSON number, got string"
    )


def test_tail_follows_new_records_and_ctrl_c_exits_zero(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    """Started at the end, tail prints a record produced later as JSON; SIGINT exits 0."""
    topic = topic_factory("follow")
    produce_records(kafka_bootstrap, topic, [decision_record("evt-old")])
    tail = subprocess.Popen(
        [sys.executable, "-m", "streamproc", "tail", "--bootstrap", kafka_bootstrap,
         "--topic", topic, "--json"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert tail.stdout is not None
        for line in tail.stdout:
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        # tail may still be starting: keep producing until a line arrives (bounded).
        first = None
        for attempt in range(40):
            produce_records(kafka_bootstrap, topic, [decision_record(f"evt-new-{attempt}")])
            try:
                first = lines.get(timeout=0.5)
                break
            except queue.Empty:
                continue
        assert first is not None, "tail printed nothing"
        body = json.loads(first)
        assert body["event_id"].startswith("evt-new-")
        assert body["decision"] == "DECLINE"
        tail.send_signal(signal.SIGINT)
        assert tail.wait(timeout=15) == 0
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()
        reader.join(timeout=5)
        assert tail.stderr is not None
        tail.stderr.close()
        assert tail.stdout is not None
        tail.stdout.close()


def test_a_feed_warm_up_waits_for_an_acknowledged_record_in_its_own_topic(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    """warm_up returns only once its record is in the warm-up topic (the producer can send),
    and puts nothing in the feed's topic; a topic that cannot take it is a clear error."""
    feed_topic, warm_up_topic = topic_factory("feed"), topic_factory("warm-up")
    feed = SampleFeed(
        sample_producer_config(kafka_bootstrap),
        feed_topic,
        SampleGenerator(7, clock=time.time),
        count=1,
    )
    feed.warm_up(warm_up_topic)

    warm_up_records = consume_records(kafka_bootstrap, warm_up_topic, count=1, timeout_s=10)
    assert [m.value() for m in warm_up_records] == [b""]
    assert consume_records(kafka_bootstrap, feed_topic, count=1, timeout_s=1) == []
    with pytest.raises(RuntimeError, match=r"warm-up record to 'no-such-topic-.*' failed"):
        feed.warm_up(f"no-such-topic-{warm_up_topic}", timeout_s=1.0)
