"""Endpoint outages under steady load: the circuit stops spending executes on a dead endpoint,
and scoring comes back by itself within seconds of the endpoint's recovery."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.integration.processor.harness import (
    collecting,
    event,
    new_topics,
    paced,
    record_of,
    running,
    settings_for,
    wait_for,
)

pytestmark = pytest.mark.integration

FRAUD_FILE_ID = 201
RATE = 100  # events/s: a quarter of what 8 slots of 20 ms can score
CALM_S, SPELL_S, RECOVERY_S = 3.0, 10.0, 5.0
SLA_MS = 500
# A fallback is decided at the deadline; the margin is for a loaded 2-core machine.
LATE_MARGIN_MS = 250

OUTAGES = {
    "503s": ({"error_rate": 1.0, "error_status": 503}, {"error_rate": 0.0}),
    "hangs": ({"hang_rate": 1.0, "hang_max_seconds": 3}, {"hang_rate": 0.0}),
}


def _attempted(stats: dict[str, Any]) -> int:
    return int(stats["executed"]) + int(stats["failed"]) + int(stats["rejected"])


async def test_scoring_resumes_soon_after_outages_that_cost_few_executes(
    kafka_bootstrap: str, emulator_factory: Any, unique_group: str
) -> None:
    """Through 10 s of 503s, then 10 s of hangs, fewer than 5% of the events offered are spent
    as executes; within 5 s of each recovery events are scored again; throughout, every event
    gets one on-time decision and none is dead-lettered."""
    emulator = emulator_factory(latency_ms=20)
    topics = new_topics(kafka_bootstrap, partitions=3)
    settings = settings_for(
        kafka_bootstrap, emulator.url, topics, unique_group,
        processing={"decision_sla_ms": SLA_MS},
    )  # fmt: skip
    total = int(RATE * (CALM_S + len(OUTAGES) * (SPELL_S + RECOVERY_S) + 2))
    made_at: dict[str, float] = {}
    spells: dict[str, tuple[int, int, float | None]] = {}

    def make(i: int) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
        made_at[f"ev-{i}"] = time.time()
        return record_of(event(f"ev-{i}", f"card-{i % 97}"))

    def scored_since(moment: float) -> bool:
        return any(
            not d.json["fallback"] and made_at.get(d.json["event_id"], 0.0) >= moment
            for d in outputs.decisions()
        )

    def circuit() -> float | None:
        return handle.metrics.registry.get_sample_value(
            "streamproc_circuit_state", {"task": "fraud"}
        )

    async with collecting(kafka_bootstrap, topics) as outputs, running(settings) as handle:
        producer = paced(kafka_bootstrap, topics.input, make, total, per_second=RATE)
        await wait_for(lambda: scored_since(0.0), 30, "a first scored decision")
        await asyncio.sleep(CALM_S)  # the healthy lead-in of the load's schedule
        for name, (fault, heal) in OUTAGES.items():
            before = _attempted(emulator.allocation_stats(FRAUD_FILE_ID))
            emulator.set_behavior(FRAUD_FILE_ID, **fault)
            spell_start = time.time()
            await asyncio.sleep(SPELL_S)  # the outage lasts this long
            state_in_outage = circuit()
            emulator.set_behavior(FRAUD_FILE_ID, **heal)
            healed = time.time()
            spent = _attempted(emulator.allocation_stats(FRAUD_FILE_ID)) - before
            offered = sum(1 for t in list(made_at.values()) if spell_start <= t < healed)
            spells[name] = (spent, offered, state_in_outage)
            await wait_for(
                lambda at=healed: scored_since(at), RECOVERY_S, f"scoring after the {name}"
            )
            await wait_for(lambda: circuit() == 0, RECOVERY_S, f"the circuit closed after {name}")
        await asyncio.to_thread(producer.join, 60)
        await wait_for(lambda: len(outputs.by_id) >= total, 60, f"{total} distinct outputs")

    for name, (spent, offered, state) in spells.items():
        assert state in (1, 2), name  # open, or half-open between probes
        assert offered > RATE * SPELL_S * 0.8, name
        assert spent < 0.05 * offered, f"{spent} executes for {offered} events during the {name}"
    assert outputs.dead_letters() == []
    assert {tid: len(outs) for tid, outs in outputs.by_id.items() if len(outs) != 1} == {}
    decisions = [d.json for d in outputs.decisions()]
    late = [
        (d["latency_ms"], d["fallback_reason"])
        for d in decisions
        if d["latency_ms"] > SLA_MS + LATE_MARGIN_MS
    ]
    assert late == []
    assert "circuit_open" in {d["fallback_reason"] for d in decisions if d["fallback"]}
