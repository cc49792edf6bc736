"""Processor: one output per record, commits after acks, order per key, backpressure, stop."""

from __future__ import annotations

import asyncio

import pytest
import structlog

from streamproc.core.mapping import InputVariableSpec, TaskMappingSpec
from streamproc.core.offsets import CommitPoint, TopicPartition, decode_completed, encode_completed
from streamproc.errors import BadRequestError, KafkaDeliveryError
from streamproc.processor.flight import Flight
from streamproc.processor.outcomes import Outcome
from tests.unit.processor.conftest import MakeHarness
from tests.unit.processor.fakes import (
    DECISIONS,
    DLQ,
    T0,
    TP0,
    TP1,
    answering,
    dead_letter_stages,
    eventually,
    header,
    make_settings,
    record,
    sample,
    settle,
    source_of,
)


async def test_every_admitted_record_yields_exactly_one_output(make_harness: MakeHarness) -> None:
    """Decisions, fallbacks and dead letters: each consumed record gets exactly one output."""
    h = make_harness(make_settings(sla_ms=500), assignment=(TP0, TP1))
    h.executor.script(BadRequestError("rejected", status=400), event_id="p0-12")
    await h.start()
    records = [record(o, key=f"card-{o % 3}", partition=p) for p in (0, 1) for o in range(10)]
    records += [
        record(10, value=b"{not json"),  # dead letter: decode
        record(11, occurred_at=T0 - 10),  # fallback: expired on arrival
        record(12),  # dead letter: execute (400)
    ]
    h.source.feed(*records)
    await h.outputs(len(records))
    await h.stop()
    by_source = h.sink.by_source()
    assert sorted(by_source) == sorted((r.partition, r.offset) for r in records)
    assert all(len(outputs) == 1 for outputs in by_source.values())
    assert [out.topic for out in by_source[(0, 10)] + by_source[(0, 12)]] == [DLQ, DLQ]
    assert header(by_source[(0, 11)][0], "streamproc-fallback-reason") == "expired_on_arrival"
    assert sum(out.topic == DECISIONS for out in h.sink.sent) == 21
    assert (h.source.committed(TP0), h.source.committed(TP1)) == (13, 10)
    assert h.processor.in_flight == 0
    assert sample(h.metrics, "streamproc_events_consumed_total") == 23
    assert sample(h.metrics, "streamproc_in_flight_events") == 0


async def test_offsets_are_committed_only_after_the_output_is_acknowledged(
    make_harness: MakeHarness,
) -> None:
    """Commits follow acknowledged outputs, contiguous only: a held ack stops just below it."""
    h = make_harness(assignment=(TP0, TP1))
    first = h.sink.hold(answering(0, 0))
    third = h.sink.hold(answering(0, 2))
    await h.start()
    h.source.feed(*(record(o, key=f"card-{o}") for o in range(6)))
    await eventually(lambda: len(h.sink.sent) == 4, "the unheld outputs")

    def last_point(tp: TopicPartition) -> CommitPoint:
        return [points[tp] for points in h.source.points if tp in points][-1]

    async def commit_round(offset: int) -> None:
        # A commit of partition 1 proves a commit round ran after everything above happened.
        h.source.feed(record(offset, partition=1, key="other"))
        await eventually(lambda: h.source.committed(TP1) == offset + 1, "a commit round")

    await commit_round(0)
    # Offset 0 is decided but not acknowledged: the position stays at 0, and the metadata
    # names the acknowledged ones above it.
    assert h.source.highest_commit(TP0) == 0
    assert decode_completed(0, last_point(TP0).metadata) == {1, 3, 4, 5}

    first.release()
    await eventually(lambda: h.source.committed(TP0) == 2, "the prefix below offset 2")
    await commit_round(1)
    assert h.source.highest_commit(TP0) == 2  # 3, 4 and 5 are acknowledged, 2 is not
    assert decode_completed(2, last_point(TP0).metadata) == {3, 4, 5}

    third.release()
    await eventually(lambda: h.source.committed(TP0) == 6, "everything")
    assert sample(h.metrics, "streamproc_commit_lag", topic="transactions", partition="0") == 0


async def test_same_key_starts_in_offset_order_and_other_keys_overlap(
    make_harness: MakeHarness,
) -> None:
    """Same-key events start in offset order once the previous output is handed to the
    producer; other keys overlap."""
    h = make_harness()
    holds = {o: h.executor.hold(f"p0-{o}") for o in range(4)}
    await h.start()
    h.source.feed(record(0, key="A"), record(1, key="B"), record(2, key="A"), record(3, key="B"))
    await asyncio.wait_for(asyncio.gather(holds[0].entered.wait(), holds[1].entered.wait()), 2)
    await eventually(lambda: h.processor.in_flight == 4, "all four admitted")
    await settle()
    assert h.executor.event_ids() == ["p0-0", "p0-1"]
    holds[0].release()
    await asyncio.wait_for(holds[2].entered.wait(), 2)
    assert not h.executor.called("p0-3")  # B's first event is still running
    assert h.timeline.index("produce", (0, 0)) < h.timeline.index("execute", "p0-2")
    holds[1].release()
    holds[2].release()
    holds[3].release()
    await h.outputs(4)
    assert h.timeline.index("produce", (0, 1)) < h.timeline.index("execute", "p0-3")
    assert h.executor.max_running == 2


async def test_a_key_moves_on_before_the_broker_acknowledges_and_keeps_its_order(
    make_harness: MakeHarness,
) -> None:
    """The next event of a key does not wait for the previous output's acknowledgement (the
    producer keeps their order), and the offsets are committed only once both are acked."""
    h = make_harness()
    ack = h.sink.hold(answering(0, 0))
    await h.start()
    h.source.feed(record(0, key="A"), record(1, key="A"))
    await eventually(lambda: len(h.sink.attempted) == 2, "both outputs produced")
    assert [source_of(out) for out in h.sink.attempted] == [(0, 0), (0, 1)]
    await settle()
    assert h.source.committed(TP0) is None
    ack.release()
    await eventually(lambda: h.source.committed(TP0) == 2, "the commit after both acks")


async def test_unkeyed_events_keep_their_order_among_themselves(make_harness: MakeHarness) -> None:
    """Events without a key form one lane per partition, without holding keyed events back."""
    h = make_harness()
    held = h.executor.hold("p0-0")
    await h.start()
    h.source.feed(record(0, key=None), record(1, key=None), record(2, key="A"))
    await asyncio.wait_for(held.entered.wait(), 2)
    await eventually(lambda: h.sink.answered(0, 2), "the keyed event")
    assert not h.executor.called("p0-1")
    held.release()
    await h.outputs(3)


async def test_partition_mode_runs_one_event_at_a_time_per_partition(
    make_harness: MakeHarness,
) -> None:
    """In "partition" mode events of one partition run one by one; partitions overlap."""
    h = make_harness(make_settings(ordering="partition"), assignment=(TP0, TP1))
    held = h.executor.hold("p0-0")
    other = h.executor.hold("p1-0")
    await h.start()
    h.source.feed(record(0, key="A"), record(1, key="B"), record(0, partition=1, key="C"))
    await asyncio.wait_for(asyncio.gather(held.entered.wait(), other.entered.wait()), 2)
    await eventually(lambda: h.processor.in_flight == 3, "all three admitted")
    await settle()
    assert not h.executor.called("p0-1")  # another key, but the same partition
    held.release()
    await eventually(lambda: h.sink.answered(0, 1), "the second event of partition 0")
    other.release()
    await h.outputs(3)
    assert h.timeline.index("produce", (0, 0)) < h.timeline.index("execute", "p0-1")


async def test_unordered_mode_runs_same_key_events_concurrently(make_harness: MakeHarness) -> None:
    """In "unordered" mode even events of one key run at the same time."""
    h = make_harness(make_settings(ordering="unordered"))
    holds = [h.executor.hold(f"p0-{o}") for o in range(3)]
    await h.start()
    h.source.feed(*(record(o, key="A") for o in range(3)))
    await asyncio.wait_for(asyncio.gather(*(held.entered.wait() for held in holds)), 2)
    assert h.executor.running == 3
    for held in reversed(holds):
        held.release()
    await h.outputs(3)
    await eventually(lambda: h.source.committed(TP0) == 3, "the commit")


async def test_malformed_records_are_dead_lettered_without_blocking_their_key(
    make_harness: MakeHarness,
) -> None:
    """Bad records are dead-lettered at their stage at once, never blocking their key."""
    mapping = TaskMappingSpec(
        inputs=(
            InputVariableSpec(name="iStrEventId", type="STRING", source="event_id"),
            InputVariableSpec(name="iStrCardId", type="STRING", source="card_id", required=True),
        )
    )
    h = make_harness(make_settings(task_overrides={"mapping": mapping}))
    held = h.executor.hold("p0-0")
    await h.start()
    no_event_id = b'{"occurred_at": "2023-11-14T22:13:20Z", "amount": 1}'
    h.source.feed(
        record(0, key="A", card_id="c-1"),
        record(1, key="A", value=b"{not json"),
        record(2, key="A", value=no_event_id),
        record(3, key="A", value=b"[1, 2]"),
        record(4, key="A"),  # no card_id: the mapping fails
        record(5, key="A", card_id="c-1"),
    )
    await eventually(lambda: len(h.sink.sent) == 3, "the three bad records")
    assert dead_letter_stages(h.sink.sent) == {
        (0, 1): "decode",
        (0, 2): "validate",
        (0, 3): "decode",
    }
    assert h.executor.event_ids() == ["p0-0"]
    held.release()
    await h.outputs(6)
    assert dead_letter_stages(h.sink.sent)[(0, 4)] == "map"
    assert h.executor.event_ids() == ["p0-0", "p0-5"]
    await eventually(lambda: h.source.committed(TP0) == 6, "the commit past the dead letters")
    assert sample(h.metrics, "streamproc_dead_letters_total", stage="decode") == 2


async def test_a_defect_in_decide_is_dead_lettered_instead_of_stalling(
    make_harness: MakeHarness,
) -> None:
    """An unexpected exception while deciding dead-letters that event; its key moves on."""
    h = make_harness()
    decided = h.processor.outcomes.decided

    def exploding(flight: Flight) -> Outcome:
        if flight.event is not None and flight.event.event_id == "p0-1":
            raise ZeroDivisionError("a bug with password=hunter2 in its message")
        return decided(flight)

    h.processor.outcomes.decided = exploding  # type: ignore[method-assign]
    await h.start()
    h.source.feed(*(record(o, key="A") for o in range(3)))
    await h.outputs(3)
    (dead,) = [out for out in h.sink.sent if out.topic == DLQ]
    assert header(dead, "streamproc.error.stage") == "execute"
    assert header(dead, "streamproc.error.class") == "builtins.ZeroDivisionError"
    assert "hunter2" not in (header(dead, "streamproc.error.message") or "")
    assert sorted(h.sink.by_source()) == [(0, 0), (0, 1), (0, 2)]
    await eventually(lambda: h.source.committed(TP0) == 3, "the commit past it")


async def test_backpressure_pauses_at_the_limit_keeps_polling_and_resumes_at_half(
    make_harness: MakeHarness,
) -> None:
    """At max_in_flight partitions pause and the consumer is given no room (it keeps polling
    for the group's sake); they resume at half."""
    h = make_harness(make_settings(max_in_flight=4), assignment=(TP0, TP1))
    holds = {(p, o): h.executor.hold(f"p{p}-{o}") for p in (0, 1) for o in range(5)}
    await h.start()
    h.source.feed(*(record(o, partition=p, key=f"k{p}{o}") for p in (0, 1) for o in range(5)))
    await eventually(lambda: h.source.pauses != [], "the pause")
    assert h.processor.paused
    assert h.processor.in_flight == 4
    assert [set(tps) for tps in h.source.pauses] == [{TP0, TP1}]
    assert sample(h.metrics, "streamproc_intake_paused") == 1
    assert h.source.room == 0
    polls = h.source.polls
    await eventually(lambda: h.source.polls >= polls + 2, "polling while paused")
    assert h.processor.in_flight == 4
    assert len(h.executor.calls) == 4

    running = [key for key, held in holds.items() if held.entered.is_set()]
    holds[running[0]].release()
    await eventually(lambda: h.processor.in_flight == 3, "one event done")
    await settle()
    assert h.source.resumes == []  # 3 > 4 // 2
    holds[running[1]].release()
    await eventually(lambda: h.source.resumes != [], "the resume")
    assert set(h.source.resumes[0]) == {TP0, TP1}
    for held in holds.values():
        held.release()
    await h.outputs(10)
    await eventually(
        lambda: (h.source.committed(TP0), h.source.committed(TP1)) == (5, 5), "the commits"
    )


async def test_a_graceful_stop_drains_in_flight_events_and_commits(
    make_harness: MakeHarness,
) -> None:
    """Stopping waits for running and queued events, publishes them, commits, then leaves."""
    h = make_harness(make_settings(commit_interval_ms=60_000))  # only the stop commits
    held = h.executor.hold("p0-0")
    await h.start()
    h.source.feed(record(0, key="A"), record(1, key="A"), record(2, key="B"))
    await asyncio.wait_for(held.entered.wait(), 2)
    await eventually(lambda: h.sink.answered(0, 2), "the other key")
    h.request_stop()
    await settle()
    assert not h.running.done()
    assert h.source.commits == []
    held.release()
    await h.stop()
    assert sorted(h.sink.by_source()) == [(0, 0), (0, 1), (0, 2)]
    assert h.source.commits == [{TP0: 3}]
    assert h.source.closed


async def test_a_stop_that_cannot_drain_commits_only_the_safe_prefix(
    make_harness: MakeHarness,
) -> None:
    """When an event outlives drain_timeout_s the stop still ends, committing below it."""
    h = make_harness(make_settings(drain_timeout_s=0.05, commit_interval_ms=60_000))
    h.executor.hold("p0-1")
    await h.start()
    h.source.feed(record(0, key="A"), record(1, key="B"), record(2, key="C"))
    await eventually(lambda: len(h.sink.sent) == 2, "the other events")
    await h.stop()
    assert h.source.commits == [{TP0: 1}]
    assert not h.sink.answered(0, 1)


async def test_a_stop_gives_stuck_events_drain_timeout_once(make_harness: MakeHarness) -> None:
    """A stop waits drain_timeout_s once for stuck events, not again when leaving the group."""
    h = make_harness(make_settings(drain_timeout_s=0.3, commit_interval_ms=60_000))
    h.executor.hold("p0-1")
    await h.start()
    h.source.feed(record(0, key="A"), record(1, key="B"), record(2, key="C"))
    await eventually(lambda: len(h.sink.sent) == 2, "the other events")
    loop = asyncio.get_running_loop()
    began = loop.time()
    with structlog.testing.capture_logs() as logs:
        await h.stop()
    elapsed = loop.time() - began
    events = [entry["event"] for entry in logs]
    assert events.count("drain_timeout") == 1
    assert "revoke_drain_timeout" not in events
    assert elapsed < 2 * 0.3
    assert h.source.commits == [{TP0: 1}]
    await eventually(lambda: h.executor.cancelled == 1, "the stuck execute to be cancelled")


async def test_a_delivery_failure_stops_the_processor_without_committing_past_it(
    make_harness: MakeHarness,
) -> None:
    """An unacknowledged output is fatal: run() raises promptly, and no commit passes it."""
    h = make_harness(make_settings(drain_timeout_s=5.0), assignment=(TP0, TP1))
    h.sink.fail(answering(0, 2))
    await h.start()
    h.source.feed(*(record(o, key=f"card-{o}") for o in range(5)))
    h.source.feed(*(record(o, partition=1, key=f"other-{o}") for o in range(3)))
    with pytest.raises(KafkaDeliveryError):
        await asyncio.wait_for(h.running, 2)
    assert max(c.get(TP0, 0) for c in h.source.commits) == 2
    assert h.source.committed(TP1) == 3  # the healthy partition was drained and committed
    assert h.source.closed


async def test_an_unexpected_sink_error_stops_the_processor(make_harness: MakeHarness) -> None:
    """Any other sink exception is fatal too, instead of leaving its partition stuck."""
    h = make_harness()
    h.sink.fail(answering(0, 1), RuntimeError("produce() failed: Local: Fatal error"))
    await h.start()
    h.source.feed(*(record(o, key=f"card-{o}") for o in range(3)))
    with pytest.raises(RuntimeError, match="produce"):
        await asyncio.wait_for(h.running, 2)
    assert max((c.get(TP0, 0) for c in h.source.commits), default=0) <= 1


async def test_a_rejected_commit_is_retried_with_the_next_round(make_harness: MakeHarness) -> None:
    """A commit the group rejects (e.g. mid-rebalance) is counted and sent again later."""
    h = make_harness()
    h.source.commit_results.extend([False])
    await h.start()
    h.source.feed(record(0))
    await eventually(lambda: h.source.committed(TP0) == 1, "the retried commit")
    assert sample(h.metrics, "streamproc_commits_total", outcome="failed") == 1
    assert sample(h.metrics, "streamproc_commits_total", outcome="ok") >= 1


async def test_a_stop_while_paused_does_not_resume_intake(make_harness: MakeHarness) -> None:
    """Events dropped while stopping do not resume a consumer that is about to close."""
    h = make_harness(make_settings(max_in_flight=2, drain_timeout_s=0.05))
    h.executor.hold("p0-0")
    h.executor.hold("p0-1")
    await h.start()
    h.source.feed(record(0, key="A"), record(1, key="B"))
    await eventually(lambda: h.processor.paused, "the pause")
    await h.stop()
    assert h.source.resumes == []
    assert h.processor.in_flight == 0


async def test_offsets_done_beyond_a_previous_commit_are_skipped_not_decided_again(
    make_harness: MakeHarness,
) -> None:
    """After a crash, the offsets the previous owner completed beyond its committed position
    (named in the commit's metadata) get no second output and no execute; the rest are
    decided, and the position moves past all of them."""
    h = make_harness()
    h.source.committed_before = {TP0: CommitPoint(3, encode_completed(3, [4, 6]))}
    await h.start()
    h.source.feed(*(record(o, key=f"card-{o}") for o in range(3, 8)))
    await eventually(lambda: h.source.committed(TP0) == 8, "the commit past all five")
    assert sorted(h.sink.by_source()) == [(0, 3), (0, 5), (0, 7)]
    assert h.executor.event_ids() == ["p0-3", "p0-5", "p0-7"]
    assert sample(h.metrics, "streamproc_events_skipped_total") == 2
