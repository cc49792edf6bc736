"""A broker dies under load: on the 3-node cluster (replication factor 3, min.insync.replicas
2), the node leading an input partition and a decisions partition is killed with SIGKILL, and
comes back after a while. Processing goes on after the leader elections with the node still
down, no event is lost, and the gap each death caused is measured: the longest time a decisions
partition got no record, by the broker's append times.

With 3 partitions over 3 nodes, each node leads one partition of each topic, so each kill takes
an input leader and a decisions leader at once. A killed node is fenced after 4 s without a
heartbeat (``scripts/kafka.sh --cluster``): a gap of about 4-7 s is the cluster's failover, not
the processor's. Short run (``make test``): one node killed, down for 5 s. Long run
(``make chaos``): each of the three nodes in turn, down for 15 s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.stack import emulator
from tests.fixtures.faults import FaultSession
from tests.fixtures.kafka import wait_until
from tests.fixtures.kafka_cluster import Cluster
from tests.integration.faults.processes import (
    group_run,
    load,
    processing_lines,
)
from tests.integration.faults.topics import (
    TopicsFactory,
    longest_gap,
    outcome,
)

pytestmark = pytest.mark.integration

RATE = 150
PARTITIONS = 3
MALFORMED_RATIO = 0.02
# Processing must go on this soon after a leader's death (failover itself takes about 5 s).
CONTINUES_WITHIN_S = 30.0
# Exactly-once, a death of the group's coordinator can leave send_offsets_to_transaction waiting
# for good (librdkafka 2.16.0 does not time it out while the coordinator is unreachable:
# confluentinc/librdkafka#5456, #5511). The producer adapter gives such a call up and replaces
# the producer, so every death must be survived, in both modes.


@dataclass(frozen=True)
class Fault:
    node: int
    inputs: list[int]  # the input partitions it led
    decisions: list[int]  # the decisions partitions it led
    coordinator: bool  # it was the group's coordinator
    killed: float
    elected: float  # every partition it led had a new leader
    back: float  # restarted, in sync, and the input processed and committed


def test_processing_goes_on_when_a_leader_dies(
    kafka_cluster: Cluster,
    faults: FaultSession,
    fault_topics: TopicsFactory,
    tmp_path: Path,
    delivery: str,
) -> None:
    """With the leader of an input and a decisions partition killed under 150 events/s, the
    processor goes on deciding once new leaders are elected, without a restart of its own, and
    every event gets its output."""
    rounds, down_s = (3, 15.0) if faults.long else (1, 5.0)
    servers = kafka_cluster.bootstrap
    topics = fault_topics(servers, partitions=PARTITIONS, replication=3)
    deaths: list[Fault] = []
    stalled: Fault | None = None
    with (
        emulator(8, 20.0) as emu,
        group_run(servers, topics, emu.url, tmp_path, processing=processing_lines(delivery)) as run,
        load(servers, topics.input, rate=RATE, malformed_ratio=MALFORMED_RATIO),
    ):
        run.caught_up()
        for round_ in range(rounds):
            node = kafka_cluster.leader(topics.input, round_ % PARTITIONS)
            led = {t: kafka_cluster.led_by(t, node) for t in (topics.input, topics.decisions)}
            assert led[topics.decisions], f"node {node} leads no decisions partition"
            coordinator = kafka_cluster.coordinator(run.processor.group)
            killed = kafka_cluster.kill(node)
            for topic, partitions in led.items():
                for partition in partitions:
                    kafka_cluster.leader(topic, partition)  # waits for the election
            elected = time.time()
            try:
                run.caught_up(CONTINUES_WITHIN_S)  # with the node still down: processing goes on
            except TimeoutError:
                stalled = Fault(node, led[topics.input], led[topics.decisions],
                                coordinator == node, killed, elected, time.time())  # fmt: skip
                run.abandon()
                break
            time.sleep(max(0.0, killed + down_s - time.time()))  # the node stays down
            kafka_cluster.restart()
            wait_until(
                lambda: kafka_cluster.in_sync([topics.input, topics.decisions]),
                60, 0.2, "every replica back in sync",
            )  # fmt: skip
            deaths.append(
                Fault(node, led[topics.input], led[topics.decisions],
                      coordinator == node, killed, elected, run.caught_up())
            )  # fmt: skip
        if stalled is None:
            assert run.processor.starts == 1
            assert run.processor.alive(), run.processor.tail()  # never exited
    if stalled is not None:
        role = "the group's coordinator" if stalled.coordinator else "not the coordinator"
        faults.report(
            "b: broker failover",
            delivery,
            details=f"stopped: nothing committed within {CONTINUES_WITHIN_S:g} s after node "
            f"{stalled.node} ({role}) died; {len(deaths)} earlier death(s) were survived",
        )
        pytest.fail(f"processing stopped after node {stalled.node} ({role}) died")
    end = outcome(servers, topics)
    outputs, result = end.outputs, end.tally
    gaps = [longest_gap(outputs, f.killed, f.back, range(PARTITIONS)) for f in deaths]
    faults.report(
        "b: broker failover",
        delivery,
        lost=len(result.lost),
        duplicated=result.duplicated,
        gap_s=max(gaps),
        details=" ".join(
            f"node{f.node}(input{f.inputs},decisions{f.decisions}"
            f"{',coordinator' if f.coordinator else ''}): "
            f"election={f.elected - f.killed:.1f}s gap={gap:.1f}s"
            for f, gap in zip(deaths, gaps, strict=True)
        )
        + f" {result.describe()}",
    )
    assert result.lost == []
    assert result.unknown == 0
    if delivery == "exactly_once":
        assert result.duplicated == 0
    assert max(gaps) < CONTINUES_WITHIN_S
