"""Several replicas of one consumer group, sharing one allocation budget."""

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


async def _two_replicas(
    kafka_bootstrap: str, emulator_factory: Any, group: str, budget_split: str, share: int
) -> dict[str, Any]:
    emulator = emulator_factory(
        latency_ms=30, allocations=[{"fileId": FRAUD_FILE_ID, "concurrencyLimit": 4}]
    )
    topics = new_topics(kafka_bootstrap, partitions=2)
    settings = settings_for(
        kafka_bootstrap,
        emulator.url,
        topics,
        group,
        processing={"decision_sla_ms": 60_000, "budget_split": budget_split},
    )
    total = 240
    async with collecting(kafka_bootstrap, topics) as outputs, running(settings) as first:
        async with running(settings) as second:
            await wait_for(
                lambda: (
                    len(first.processor.assignment) == len(second.processor.assignment) == 1
                    and first.allocations["fraud"].limit == share
                    and second.allocations["fraud"].limit == share
                ),
                30,
                f"one partition and a budget of {share} each",
            )
            events = [event(f"rep-{i}", f"card-{i}") for i in range(total)]
            await asyncio.to_thread(produce_events, kafka_bootstrap, topics.input, events)
            await wait_for(lambda: len(outputs.by_id) >= total, 60, "every decision")
        partitions = {o.partition for o in outputs.decisions()}
        assert partitions == {0, 1}, "both replicas must have scored events"
    return emulator.allocation_stats(FRAUD_FILE_ID)


async def test_replicas_split_one_allocation_budget_by_assignment(
    kafka_bootstrap: str, emulator_factory: Any, unique_group: str
) -> None:
    """Two replicas owning one partition each take half of a limit-4 allocation each, so
    together they never exceed it: no execute is rejected."""
    stats = await _two_replicas(
        kafka_bootstrap, emulator_factory, unique_group, "by_assignment", share=2
    )
    assert stats["maxInFlight"] <= 4
    assert stats["rejected"] == 0


async def test_replicas_without_a_split_overrun_the_allocation(
    kafka_bootstrap: str, emulator_factory: Any, unique_group: str
) -> None:
    """The control: when each replica uses the whole budget, the real-time endpoint rejects
    the excess, which is what the split prevents."""
    stats = await _two_replicas(kafka_bootstrap, emulator_factory, unique_group, "none", share=4)
    assert stats["rejected"] > 0
