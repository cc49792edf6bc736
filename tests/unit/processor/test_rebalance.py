"""Rebalances: librdkafka's callbacks arrive on the consumer thread and hop to the loop."""

from __future__ import annotations

import asyncio
import threading

from tests.unit.processor.conftest import MakeHarness
from tests.unit.processor.fakes import (
    TP0,
    TP1,
    TP2,
    eventually,
    make_settings,
    record,
    sample,
    settle,
)


async def test_assigned_partitions_are_consumed_from_a_callback_on_another_thread(
    make_harness: MakeHarness,
) -> None:
    """on_assigned, called from the consumer thread, makes a partition's records count."""
    h = make_harness(assignment=(TP0,))
    await h.start()
    await h.source.assign([TP2])
    assert threading.get_ident() not in h.source.callback_threads
    h.source.feed(record(0, partition=2), record(0, partition=1))  # 1 was never assigned
    await eventually(lambda: h.sink.answered(2, 0), "the newly assigned partition")
    await eventually(lambda: h.source.committed(TP2) == 1, "its commit")
    await settle()
    assert not h.sink.answered(1, 0)
    assert h.processor.in_flight == 0


async def test_a_revoke_drops_queued_events_finishes_running_ones_and_returns_the_safe_prefix(
    make_harness: MakeHarness,
) -> None:
    """A revoke drops queued events, waits for running ones and returns the safe prefix."""
    h = make_harness(make_settings(commit_interval_ms=60_000), assignment=(TP0, TP1))
    first = h.executor.hold("p0-0")  # key A, running
    other = h.executor.hold("p0-2")  # key B, running
    await h.start()
    h.source.feed(
        record(0, key="A"),
        record(1, key="A"),  # queued behind offset 0
        record(2, key="B"),
        record(3, key="C"),  # done at once
    )
    await asyncio.wait_for(asyncio.gather(first.entered.wait(), other.entered.wait()), 2)
    await eventually(lambda: h.sink.answered(0, 3), "the unheld event")

    revoking = asyncio.create_task(h.source.revoke([TP0]))
    await eventually(lambda: h.processor.in_flight == 2, "the queued event to be dropped")
    await settle()
    assert not revoking.done()  # blocked on the running events, as a real callback is
    first.release()
    other.release()
    positions = await asyncio.wait_for(revoking, 3)

    assert positions == {TP0: 1}  # 0 done; 1 dropped; 2 and 3 are beyond the gap
    assert not h.executor.called("p0-1")
    assert sorted(h.sink.by_source()) == [(0, 0), (0, 2), (0, 3)]
    assert threading.get_ident() not in h.source.callback_threads
    assert h.processor.in_flight == 0

    # Records of the revoked partition that were fetched before the revoke are ignored.
    h.source.feed(record(4, key="D"), record(0, partition=1, key="E"))
    await eventually(lambda: h.sink.answered(1, 0), "the partition still owned")
    await settle()
    assert not h.executor.called("p0-4")
    assert not h.sink.answered(0, 4)
    await h.stop()
    assert all(TP0 not in c for c in h.source.commits[1:])
    assert h.source.committed(TP1) == 1


async def test_a_revoke_that_outlives_the_drain_timeout_gives_up_on_the_running_event(
    make_harness: MakeHarness,
) -> None:
    """A running event that outlasts drain_timeout_s does not hold the rebalance hostage; its
    execute keeps its budget slot until it answers, and the answer is dropped."""
    h = make_harness(make_settings(drain_timeout_s=0.05, commit_interval_ms=60_000))
    held = h.executor.hold("p0-1")
    await h.start()
    h.source.feed(record(0, key="A"), record(1, key="B"), record(2, key="C"))
    await eventually(lambda: len(h.sink.sent) == 2, "the unheld events")
    positions = await asyncio.wait_for(h.source.revoke([TP0]), 3)
    assert positions == {TP0: 1}
    assert h.processor.in_flight == 0
    assert h.allocation.in_flight == 1
    held.release()
    await eventually(lambda: h.allocation.in_flight == 0, "the slot back")
    await settle()
    assert not h.sink.answered(0, 1)
    assert sample(h.metrics, "streamproc_late_results_total", task="fraud") == 1


async def test_lost_partitions_commit_nothing(make_harness: MakeHarness) -> None:
    """Lost partitions commit nothing, not even completed work; their running executes'
    answers are dropped."""
    h = make_harness(make_settings(commit_interval_ms=60_000), assignment=(TP0, TP1))
    held = h.executor.hold("p0-1")
    await h.start()
    h.source.feed(record(0, key="A"), record(1, key="B"), record(0, partition=1, key="C"))
    await asyncio.wait_for(held.entered.wait(), 2)
    await eventually(lambda: h.sink.answered(0, 0) and h.sink.answered(1, 0), "the others")

    await h.source.lose([TP0])
    assert h.processor.in_flight == 0
    held.release()
    await eventually(lambda: h.allocation.in_flight == 0, "the slot back")
    await h.stop()
    assert all(TP0 not in c for c in h.source.commits)
    assert h.source.committed(TP1) == 1
    assert not h.sink.answered(0, 1)


async def test_losing_the_busy_partitions_while_paused_resumes_the_others(
    make_harness: MakeHarness,
) -> None:
    """Losing the partitions that held the in-flight work resumes the paused others."""
    h = make_harness(make_settings(max_in_flight=2), assignment=(TP0, TP1))
    h.executor.hold("p0-0")
    h.executor.hold("p0-1")
    await h.start()
    h.source.feed(record(0, key="A"), record(1, key="B"))
    await eventually(lambda: h.processor.paused, "the pause")
    h.source.feed(record(0, partition=1, key="C"))
    await settle()
    assert not h.sink.answered(1, 0)
    await h.source.lose([TP0])
    await eventually(lambda: h.sink.answered(1, 0), "partition 1 to be resumed")
    assert not h.processor.paused
    assert [set(tps) for tps in h.source.resumes] == [{TP1}]


async def test_a_partition_reassigned_after_a_revoke_starts_afresh(
    make_harness: MakeHarness,
) -> None:
    """A partition re-assigned after a revoke is consumed afresh from its committed position."""
    h = make_harness()
    await h.start()
    h.source.feed(record(0, key="A"), record(1, key="A"))
    await eventually(lambda: len(h.sink.sent) == 2, "the first pass")
    assert await h.source.revoke([TP0]) in ({TP0: 2}, {})
    await h.source.assign([TP0])
    h.source.feed(record(2, key="A"), record(3, key="A"))
    await eventually(lambda: len(h.sink.sent) == 4, "the second pass")
    await eventually(lambda: h.source.committed(TP0) == 4, "the commit")


async def test_callbacks_outside_a_running_processor_are_harmless(
    make_harness: MakeHarness,
) -> None:
    """A callback that arrives before run() started (or after its loop closed) is a no-op."""
    h = make_harness()
    assert h.processor.on_revoked([TP0]) == {}
    h.processor.on_assigned([TP0])
    h.processor.on_lost([TP0])
    assert h.processor.in_flight == 0
