"""kill -9 of the processor under steady load, again and again: no event is lost; events decided
twice are counted (at-least-once) and there are none for read_committed readers (exactly-once).

Short run (``make test``): 3 kills. Long run (``make chaos``): 10 kills.

Every other kill lands just after the group's committed position moved: the moment when a commit
that ran ahead of the acknowledged outputs would lose the most. The API Task answers in 150 ms,
so at every commit some events are still being scored (a 20 ms answer would leave next to none,
and a processor that committed what it had only consumed would pass unnoticed). The kills in
between land at a random moment, as crashes do, which is what the duplicate count is about.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from bench.stack import emulator
from tests.fixtures.faults import FaultSession
from tests.integration.faults.processes import (
    SHORT_SESSION,
    group_run,
    load,
    processing_lines,
)
from tests.integration.faults.topics import (
    TopicsFactory,
    outcome,
)

pytestmark = pytest.mark.integration

RATE = 150  # events/s offered throughout
MALFORMED_RATIO = 0.05  # dead-lettered, never decided: they must come out exactly once too
LATENCY_MS, LIMIT = 150.0, 32  # 213 executes/s: every event can be scored, none is fast


def test_kill_loop_loses_no_event(
    kafka_bootstrap: str,
    faults: FaultSession,
    tmp_path: Path,
    delivery: str,
    fault_topics: TopicsFactory,
) -> None:
    """Killed with SIGKILL again and again under 150 events/s (5% malformed), and started
    again each time, the processor still gives every event a decision or a dead letter;
    with exactly-once delivery no event has two."""
    kills = 10 if faults.long else 3
    rng = random.Random(7)
    topics = fault_topics(kafka_bootstrap, partitions=3)
    with (
        emulator(LIMIT, LATENCY_MS) as emu,
        group_run(
            kafka_bootstrap, topics, emu.url, tmp_path,
            processing=processing_lines(delivery), kafka=SHORT_SESSION,
        ) as run,
        load(kafka_bootstrap, topics.input, rate=RATE, malformed_ratio=MALFORMED_RATIO),
    ):  # fmt: skip
        for kill in range(kills):
            run.caught_up()  # running steadily again: what waited for the restart is done
            time.sleep(rng.uniform(0.0, 1.5))  # a random moment of steady running
            if kill % 2 == 0:
                run.commits.wait_for_advance(5.0)
            run.processor.kill()
            run.processor.start()
            run.processor.wait_ready()
        run.caught_up()
    result = outcome(kafka_bootstrap, topics).tally
    faults.report(
        "a: kill -9 loop",
        delivery,
        lost=len(result.lost),
        duplicated=result.duplicated,
        details=f"kills={kills} {result.describe()}",
    )
    assert result.lost == [], f"{len(result.lost)} events without an output"
    assert result.unknown == 0
    assert result.dead_letters > 0, "the malformed records must have been dead-lettered"
    if delivery == "exactly_once":
        assert result.duplicated == 0
