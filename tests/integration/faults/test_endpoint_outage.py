"""The API Task's endpoint down under steady load, with the processor as a process of its own:
every event still gets an on-time fallback, the circuit breaker stops spending executes, and
scoring comes back within seconds of the endpoint's recovery.

The outage answers every execute with 503 for its first half and hangs every execute (3 s,
past the 2 s attempt timeout) for its second half. Short run (``make test``): 10 s of outage.
Long run (``make chaos``): 60 s. (``tests/integration/processor/test_outage.py`` covers short
spells of each kind with the processor in the test's own process.)
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest

from bench.stack import emulator
from tests.fixtures.faults import FaultSession
from tests.integration.faults.processes import (
    Sampler,
    group_run,
    load,
    processing_lines,
)
from tests.integration.faults.topics import (
    TopicsFactory,
    outcome,
)

pytestmark = pytest.mark.integration

# Exactly-once here runs in the long version only (make chaos).
SHORT_RUN_MODES = ("at_least_once",)

RATE = 150
SLA_MS = 500
# A fallback is published at the deadline; the margin is for a loaded 2-core machine.
LATE_MARGIN_MS = 300
RESUME_WITHIN_S = 5.0
CALM_S, AFTER_S = 2.0, 6.0  # healthy load before and after the outage
FAULTS = (
    {"error_rate": 1.0, "error_status": 503},
    {"error_rate": 0.0, "hang_rate": 1.0, "hang_max_seconds": 3},
)
HEALED = {"error_rate": 0.0, "hang_rate": 0.0}


def _epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def test_outage_falls_back_on_time_and_spends_few_executes(
    kafka_bootstrap: str,
    faults: FaultSession,
    tmp_path: Path,
    delivery: str,
    fault_topics: TopicsFactory,
) -> None:
    """Through an outage of 503s then hangs under 150 events/s, every event offered gets one
    on-time fallback decision and none is dead-lettered; the open circuit keeps the executes
    the endpoint sees under 5% of the events; scoring resumes within 5 s of the recovery."""
    outage_s = 60.0 if faults.long else 10.0
    topics = fault_topics(kafka_bootstrap, partitions=3)
    with (
        emulator(8, 20.0) as emu,
        group_run(
            kafka_bootstrap, topics, emu.url, tmp_path,
            processing=processing_lines(delivery, f"decision_sla_ms = {SLA_MS}\n"),
        ) as run,
        load(kafka_bootstrap, topics.input, rate=RATE),
        Sampler(lambda: run.processor.metrics().metric("streamproc_circuit_state"), 0.2) as circuit,
    ):  # fmt: skip
        run.caught_up()
        time.sleep(CALM_S)  # the healthy lead-in of the load's schedule
        before = emu.attempted()
        started = time.time()
        for fault in FAULTS:
            emu.set_behavior(**fault)
            time.sleep(outage_s / len(FAULTS))  # the outage lasts this long
        emu.set_behavior(**HEALED)
        healed = time.time()
        executes = emu.attempted() - before
        time.sleep(AFTER_S)  # the load goes on after the recovery
    end = outcome(kafka_bootstrap, topics)
    inputs, out, result = end.inputs, end.outputs, end.tally
    # Events offered once the fault was in place, until the endpoint was healed.
    offered = {e for e, i in inputs.items() if started + 0.5 <= i.appended < healed}
    decisions = [o.decision for o in out if o.decision is not None]
    in_outage = [d for d in decisions if d["event_id"] in offered]
    fallbacks = [d for d in in_outage if d["fallback"]]
    late = [d for d in in_outage if d["latency_ms"] > SLA_MS + LATE_MARGIN_MS]
    worst_ms = max(d["latency_ms"] for d in in_outage)
    resumed_s = min(
        (_epoch(d["decided_at"]) - healed for d in decisions if not d["fallback"]
         and _epoch(d["decided_at"]) > healed),
        default=float("inf"),
    )  # fmt: skip
    states = {value for moment, value in circuit.samples if started + 2 <= moment < healed}
    reasons = sorted({str(d["fallback_reason"]) for d in fallbacks})
    faults.report(
        "c: endpoint down",
        delivery,
        lost=len(result.lost),
        duplicated=result.duplicated,
        outage_fallbacks=len(fallbacks),
        details=(
            f"outage={outage_s:g}s offered_in_outage={len(offered)} executes_in_outage="
            f"{executes} resumed_after_s={resumed_s:.2f} late_in_outage={len(late)} "
            f"worst_ms={worst_ms:.0f} "
            f"dead_letters={result.dead_letters} reasons={','.join(reasons)}"
        ),
    )
    assert result.lost == []
    assert result.duplicated == 0
    assert result.dead_letters == 0
    assert len(offered) > RATE * outage_s * 0.8
    assert len(fallbacks) == len(offered), "every event offered in the outage falls back"
    assert late == [], f"{len(late)} fallbacks later than the SLA + {LATE_MARGIN_MS} ms"
    assert executes < 0.05 * len(offered), f"{executes} executes for {len(offered)} events"
    assert states & {1.0, 2.0}, f"the circuit was never seen open: {sorted(states)}"
    assert "circuit_open" in reasons
    assert resumed_s <= RESUME_WITHIN_S
