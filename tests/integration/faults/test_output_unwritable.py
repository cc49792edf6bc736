"""The decisions topic unwritable under load, then writable again.

On the 3-node cluster the decisions topic has two replicas per partition, on nodes 2 and 3,
and ``min.insync.replicas`` 2. Killing node 2 (SIGKILL) leaves one in-sync replica: every
acks=all write to the topic is refused (NOT_ENOUGH_REPLICAS) until node 2 is back. The input,
dead-letter and internal topics keep three replicas, so consuming, dead-lettering and the
group go on.

The processor is not restarted, by a supervisor or otherwise: its producer keeps retrying the
refused outputs (librdkafka gives up on a record only after ``message.timeout.ms``, 5 minutes
by default; then the processor stops with exit status 1, for an orchestrator to restart it).
Once node 2 is back, the retried outputs are written and processing goes on by itself.

"Nothing committed past an unacknowledged output" is checked against the broker's clock: the
group's committed positions are sampled every 100 ms throughout, and every input record below
a committed position must have an output the broker had written (append time) by the moment
that position was read. Short run (``make test``): 10 s unwritable. Long run (``make chaos``):
30 s.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from bench.stack import emulator
from tests.fixtures.faults import FaultSession
from tests.fixtures.kafka import wait_until
from tests.fixtures.kafka_cluster import Cluster
from tests.integration.faults.processes import (
    Sampler,
    group_run,
    load,
    processing_lines,
)
from tests.integration.faults.topics import (
    Commits,
    InputRecord,
    OutputRecord,
    TopicsFactory,
    longest_gap,
    outcome,
)

pytestmark = pytest.mark.integration

# Exactly-once here runs in the long version only (make chaos).
SHORT_RUN_MODES = ("at_least_once",)

RATE = 150
PARTITIONS = 3
MALFORMED_RATIO = 0.02
DOWN_NODE = 2
# Node 2 and node 3 hold the decisions partitions, each leading every other one.
DECISIONS_REPLICAS = [[2, 3] if p % 2 == 0 else [3, 2] for p in range(PARTITIONS)]
RESUMES_WITHIN_S = 60.0


def commits_ahead_of_outputs(
    samples: list[tuple[float, Mapping[int, int]]],
    inputs: Mapping[str, InputRecord],
    outputs: list[OutputRecord],
) -> list[tuple[float, int, int]]:
    """(when, partition, offset) of each input record a sampled commit had covered before the
    broker had written an output for it."""
    written: dict[tuple[int, int], float] = {}
    for out in outputs:
        record = inputs.get(out.event_id)
        if record is not None:
            key = (record.partition, record.offset)
            written[key] = min(written.get(key, out.appended), out.appended)
    ahead: list[tuple[float, int, int]] = []
    covered = dict.fromkeys(range(PARTITIONS), 0)
    for moment, positions in samples:
        for partition, position in positions.items():
            for offset in range(covered[partition], max(covered[partition], position)):
                if written.get((partition, offset), float("inf")) > moment:
                    ahead.append((moment, partition, offset))
            covered[partition] = max(covered[partition], position)
    return ahead


def test_outputs_refused_for_a_while_are_neither_lost_nor_committed_past(
    kafka_cluster: Cluster,
    faults: FaultSession,
    fault_topics: TopicsFactory,
    tmp_path: Path,
    delivery: str,
) -> None:
    """While the decisions topic refuses writes under 150 events/s, the group commits no input
    whose output the broker has not written; when it takes writes again, processing resumes by
    itself and every event has its output."""
    down_s = 30.0 if faults.long else 10.0
    servers = kafka_cluster.bootstrap
    topics = fault_topics(
        servers,
        partitions=PARTITIONS,
        replication=3,
        decisions_replicas=DECISIONS_REPLICAS,
        decisions_config={"min.insync.replicas": "2"},
    )
    with (
        emulator(8, 20.0) as emu,
        group_run(servers, topics, emu.url, tmp_path, processing=processing_lines(delivery)) as run,
        load(servers, topics.input, rate=RATE, malformed_ratio=MALFORMED_RATIO),
        Commits(servers, run.processor.group, topics.input) as watched,
        Sampler(watched, 0.1) as sampled,
    ):
        run.caught_up()
        killed = kafka_cluster.kill(DOWN_NODE)
        time.sleep(down_s)  # the decisions topic stays unwritable this long
        restarting = time.time()
        restarted = kafka_cluster.restart()
        resumed = run.caught_up(RESUMES_WITHIN_S)
        wait_until(lambda: kafka_cluster.in_sync([topics.decisions]), 60, 0.2, "node 2 in sync")
        assert run.processor.starts == 1
        assert run.processor.alive(), run.processor.tail()  # never exited
    end = outcome(servers, topics)
    inputs, outputs, result = end.inputs, end.outputs, end.tally
    ahead = commits_ahead_of_outputs(sampled.samples, inputs, outputs)
    during = [s for moment, s in sampled.samples if killed <= moment <= restarted]
    faults.report(
        "e: output unwritable",
        delivery,
        lost=len(result.lost),
        duplicated=result.duplicated,
        gap_s=longest_gap(outputs, killed, resumed, range(PARTITIONS)),
        details=(
            f"unwritable={down_s:g}s commits_ahead_of_outputs={len(ahead)} "
            f"commit_samples_in_outage={len(during)} node_restart_s={restarted - restarting:.1f} "
            f"caught_up_after_s={resumed - restarted:.1f} {result.describe()}"
        ),
    )
    assert len(during) > 5 * down_s, "the commits must have been watched through the outage"
    assert ahead == [], f"committed before the output was written: {ahead[:10]}"
    assert result.lost == []
    assert result.unknown == 0
    if delivery == "exactly_once":
        assert result.duplicated == 0
