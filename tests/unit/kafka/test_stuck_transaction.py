"""A transaction call that librdkafka never returns from is given up, not waited on for good."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from streamproc.core.offsets import CommitPoint
from streamproc.errors import KafkaTransactionError
from streamproc.kafka import producer as producer_module
from streamproc.kafka.producer import KafkaSink
from streamproc.kafka.records import TopicPartition


class StuckProducer:
    """send_offsets_to_transaction blocks past its timeout, as librdkafka 2.16 does while the
    group coordinator is unreachable; commit_transaction answers at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: list[str] = []

    def send_offsets_to_transaction(self, positions: Any, group: Any, timeout: float) -> None:
        self.calls.append("send_offsets_to_transaction")
        self.release.wait(5)  # bounded, so the test ends (and fails) without the guard

    def commit_transaction(self, timeout: float) -> None:
        self.calls.append("commit_transaction")


def sink() -> KafkaSink[object]:
    # No broker is contacted: the producer under test is swapped for the fake below.
    config = {"bootstrap.servers": "127.0.0.1:1", "transactional.id": "stuck-test"}
    return KafkaSink(config, lambda token, error: None)


async def test_a_call_stuck_past_its_timeout_fails_as_fatal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The commit raises a fatal transaction error (the processor then replaces the producer
    and redoes the transaction) once the call's timeout and the grace have passed, and the
    transaction is not committed on top of offsets that were never sent."""
    monkeypatch.setattr(producer_module, "STUCK_GRACE_S", 0.2)
    kafka_sink = sink()
    stuck = StuckProducer()
    kafka_sink._producer = stuck  # type: ignore[assignment]
    offsets = {TopicPartition("t", 0): CommitPoint(5, "")}
    started = time.monotonic()
    try:
        with pytest.raises(KafkaTransactionError) as raised:
            await kafka_sink.commit(offsets, group=object(), timeout_s=0.1)
        elapsed = time.monotonic() - started
    finally:
        stuck.release.set()
    assert raised.value.fatal
    assert raised.value.operation == "send_offsets_to_transaction"
    assert 0.3 <= elapsed < 5.0
    assert stuck.calls == ["send_offsets_to_transaction"]


async def test_the_stuck_call_holds_no_worker_of_the_loops_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A call given up on runs on a daemon thread of its own: the process can still exit, and
    the default executor (which the loop's shutdown joins) is not holding it."""
    monkeypatch.setattr(producer_module, "STUCK_GRACE_S", 0.1)
    kafka_sink = sink()
    stuck = StuckProducer()
    kafka_sink._producer = stuck  # type: ignore[assignment]
    try:
        with pytest.raises(KafkaTransactionError):
            await kafka_sink.commit({TopicPartition("t", 0): CommitPoint(1, "")}, object(), 0.1)
        blocked = [t for t in threading.enumerate() if t.name == "producer-transaction"]
        assert blocked
        assert all(t.daemon for t in blocked)
    finally:
        stuck.release.set()
