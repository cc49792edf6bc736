"""Each execute says which event and which attempt it is, as the Control Room receives it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.integration.processor.harness import (
    collecting,
    event,
    new_topics,
    produce_events,
    running,
    settings_for,
    wait_for,
)

pytestmark = pytest.mark.integration

FRAUD_FILE_ID = 201


async def test_executes_carry_the_event_id_and_the_attempt_number(
    kafka_bootstrap: str, emulator_factory: Any, unique_group: str
) -> None:
    """The emulator's stats show the event id (X-Request-Id) and the attempt number (X-Attempt)
    of the last execute: the event's id, and the attempt count its decision reports."""
    emulator = emulator_factory()
    emulator.set_behavior(FRAUD_FILE_ID, error_rate=1.0, error_status=503)
    topics = new_topics(kafka_bootstrap, partitions=1)
    settings = settings_for(
        kafka_bootstrap,
        emulator.url,
        topics,
        unique_group,
        processing={"decision_sla_ms": 10_000, "retry": {"max_attempts": 3}},
    )
    async with collecting(kafka_bootstrap, topics) as outputs, running(settings):
        await asyncio.to_thread(
            produce_events, kafka_bootstrap, topics.input, [event("corr-7", "card-7")]
        )
        await wait_for(outputs.decisions, 30, "the decision")
    decision = outputs.decisions()[0].json
    assert decision["fallback"] is True
    attempts = decision["tasks"]["fraud"]["attempts"]
    assert attempts == 3
    stats = emulator.allocation_stats(FRAUD_FILE_ID)
    assert stats["failed"] == attempts
    assert (stats["lastRequestId"], stats["lastAttempt"]) == ("corr-7", str(attempts))
