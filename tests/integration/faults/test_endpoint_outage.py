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
from tests.fixtures.faults import ReportFigures
from tests.integration.faults.stack import (
    Commits,
    OutputCount,
    Sampler,
    caught_up,
    end_offsets,
    fresh_topics,
    load,
    processing_lines,
    read_inputs,
    read_outputs,
    replicas,
    tally,
)

pytestmark = pytest.mark.integration

# Exactly-once here runs in the long version only (make chaos).
SHORT_RUN_MODES = ("at_least_once",)

RATE = 150
SLA_MS = 500
# A fallback is published at the deadline; the margin is for a loaded 2-core machine.
LATE_MARGIN_MS = 300
RESUME_WITHIN_S = 5.0
FAULTS = (
    {"error_rate": 1.0, "error_status": 503},
    {"error_rate": 0.0, "hang_rate": 1.0, "hang_max_seconds": 3},
)
HEALED = {"error_rate": 0.0, "hang_rate": 0.0}


def _epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def test_outage_falls_back_on_time_and_spends_few_executes(
    kafka_bootstrap: str, chaos: bool, report_figures: ReportFigures, tmp_path: Path, delivery: str
) -> None:
    """Through an outage of 503s then hangs under 150 events/s, every event offered gets one
    on-time fallback decision and none is dead-lettered; the open circuit keeps the executes
    the endpoint sees under 5% of the events; scoring resumes within 5 s of the recovery."""
    outage_s = 60.0 if chaos else 10.0
    topics = fresh_topics(kafka_bootstrap, partitions=3)
    with (
        emulator(8, 20.0) as emu,
        replicas(
            topics, emu.url, servers=kafka_bootstrap, log_dir=tmp_path,
            processing=processing_lines(delivery, f"decision_sla_ms = {SLA_MS}\n"),
        ) as (processor,),
    ):  # fmt: skip
        outputs = OutputCount(kafka_bootstrap, topics)
        commits = Commits(kafka_bootstrap, processor.group, topics.input)
        processor.start()
        processor.wait_ready()
        circuit = Sampler(lambda: processor.metrics().metric("streamproc_circuit_state"), 0.2)
        with load(kafka_bootstrap, topics.input, rate=RATE), circuit:
            outputs.wait_for_more(outputs() + 2 * RATE, 60, "two seconds of healthy scoring")
            before = emu.attempted()
            started = time.time()
            for fault in FAULTS:
                emu.set_behavior(**fault)
                time.sleep(outage_s / len(FAULTS))  # the outage lasts this long
            emu.set_behavior(**HEALED)
            healed = time.time()
            executes = emu.attempted() - before
            outputs.wait_for_more(outputs() + 5 * RATE, 60, "five seconds of load after it")
        caught_up(commits, end_offsets(kafka_bootstrap, topics.input))
        assert processor.stop() == 0, processor.tail()
        outputs.close()
        commits.close()
    inputs = read_inputs(kafka_bootstrap, topics)
    out = read_outputs(kafka_bootstrap, topics)
    result = tally(inputs, out)
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
    report_figures(
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
