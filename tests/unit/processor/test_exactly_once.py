"""Exactly once: outputs and input offsets committed in one transaction; a transaction that
cannot commit is aborted and its events decided again, seen once by read_committed readers."""

from __future__ import annotations

from collections import Counter

import pytest

from streamproc.errors import KafkaDeliveryError, KafkaTransactionError
from tests.unit.processor.conftest import MakeHarness
from tests.unit.processor.fakes import (
    DECISIONS,
    TP0,
    Harness,
    Hold,
    answering,
    eventually,
    make_settings,
    record,
    sample,
    settle,
    source_of,
    verdict,
)


def exactly_once(make_harness: MakeHarness, **processing: object) -> Harness:
    settings = make_settings(
        delivery="exactly_once", transaction_interval_ms=20, commit_interval_ms=60_000,
        **processing,
    )  # fmt: skip
    return make_harness(settings)


def seen(h: Harness) -> Counter[tuple[int, int]]:
    """Outputs a read_committed consumer sees, by the input they answer."""
    return Counter(source_of(out) for out in h.sink.visible)


async def test_outputs_and_offsets_are_committed_together_by_the_transaction(
    make_harness: MakeHarness,
) -> None:
    """Each output becomes visible with the commit of the transaction that also holds its
    input offset; the consumer itself commits nothing."""
    h = exactly_once(make_harness)
    await h.start()
    h.source.feed(*(record(o, key=f"card-{o}") for o in range(5)))
    await eventually(lambda: len(h.sink.visible) == 5, "five visible outputs")
    await eventually(
        lambda: any(p.get(TP0, (0,))[0] == 5 for p in h.sink.transaction_offsets),
        "the offsets in a transaction",
    )
    assert seen(h) == Counter({(0, o): 1 for o in range(5)})
    assert all(out.topic == DECISIONS for out in h.sink.visible)
    assert h.source.commits == []


async def test_a_transaction_that_cannot_commit_is_aborted_and_its_events_redone(
    make_harness: MakeHarness,
) -> None:
    """A commit that fails aborts the transaction: its outputs are never visible, the
    partition is read again from its last commit, and every event is seen exactly once."""
    h = exactly_once(make_harness)
    failure = KafkaTransactionError("broker went away", operation="commit", abortable=True)
    await h.start()
    h.source.feed(*(record(o, key=f"card-{o}") for o in range(3)))
    await eventually(lambda: len(h.sink.visible) == 3, "the first transaction")
    h.sink.commit_failures.append(failure)
    h.source.feed(*(record(o, key=f"card-{o}") for o in range(3, 6)))
    await eventually(lambda: h.sink.aborted != [], "the aborted transaction")
    await eventually(lambda: len(h.sink.visible) == 6, "the events redone")
    assert h.source.seeks[0][TP0] == 3
    assert seen(h) == Counter({(0, o): 1 for o in range(6)})
    assert sample(h.metrics, "streamproc_commits_total", outcome="aborted") == 1


async def test_a_failed_delivery_aborts_instead_of_stopping(make_harness: MakeHarness) -> None:
    """An output the broker refuses makes its transaction abort and its events be decided
    again; the processor goes on."""
    h = exactly_once(make_harness)
    h.sink.fail(answering(0, 1), KafkaDeliveryError("Local: timed out", topic=DECISIONS))
    await h.start()
    h.source.feed(*(record(o, key=f"card-{o}") for o in range(3)))
    await eventually(lambda: h.sink.aborted != [], "the abort")
    h.sink._failures.clear()
    await eventually(lambda: len(h.sink.visible) == 3, "the events redone")
    assert seen(h) == Counter({(0, o): 1 for o in range(3)})
    assert not h.running.done()


async def test_a_fenced_producer_is_replaced_and_the_work_redone(make_harness: MakeHarness) -> None:
    """A fatal producer error (fenced by a newer producer with the same id) replaces the
    producer, and the transaction's events are decided again."""
    h = exactly_once(make_harness)
    fenced = KafkaTransactionError("producer fenced", operation="commit", fatal=True)
    h.sink.commit_failures.append(fenced)
    await h.start()
    h.source.feed(*(record(o, key=f"card-{o}") for o in range(2)))
    await eventually(lambda: len(h.sink.visible) == 2, "the events redone")
    assert h.sink.renewals == 1
    assert seen(h) == Counter({(0, 0): 1, (0, 1): 1})


async def test_a_stop_while_a_transaction_commits_lets_that_commit_finish(
    make_harness: MakeHarness,
) -> None:
    """Stopping during a transaction's commit waits for it instead of cutting it off: the
    producer's call would go on regardless, and the final commit would collide with it and
    abort the transaction for nothing."""
    h = exactly_once(make_harness)
    held = h.sink.commit_hold = Hold()
    await h.start()
    h.source.feed(*(record(o, key=f"card-{o}") for o in range(3)))
    await eventually(held.entered.is_set, "the commit under way")
    h.request_stop()
    await settle()
    held.release()
    await h.stop()
    assert h.sink.calls_refused == 0
    assert h.sink.aborted == []
    assert seen(h) == Counter({(0, o): 1 for o in range(3)})
    assert sample(h.metrics, "streamproc_commits_total", outcome="aborted") == 0


async def test_outputs_of_lost_partitions_are_aborted_not_committed(
    make_harness: MakeHarness,
) -> None:
    """Partitions lost (not revoked) take their uncommitted events to another member, which
    decides them again: their outputs in the open transaction are aborted, never committed
    without their offsets."""
    h = make_harness(
        make_settings(
            delivery="exactly_once", transaction_interval_ms=10_000, commit_interval_ms=60_000
        )
    )
    await h.start()
    h.source.feed(*(record(o, key=f"card-{o}") for o in range(3)))
    await h.outputs(3, "outputs in the open transaction")
    await h.source.lose([TP0])
    await h.stop()
    assert seen(h) == Counter()
    assert Counter(source_of(out) for out in h.sink.aborted) == Counter(
        {(0, o): 1 for o in range(3)}
    )


async def test_a_producer_that_cannot_be_replaced_stops_the_processor(
    make_harness: MakeHarness,
) -> None:
    """A fatal producer error whose producer cannot be replaced stops the processor with
    that error (a restart resumes from the last commit), instead of leaving it consuming
    with no commit loop."""
    h = exactly_once(make_harness)
    h.sink.commit_failures.append(
        KafkaTransactionError("producer fenced", operation="commit", fatal=True)
    )
    broken = KafkaTransactionError("no answer within 8 s", operation="init_transactions")
    h.sink.renew_failures.extend([broken, broken])
    await h.start()
    h.source.feed(record(0))
    await eventually(h.running.done, "the processor to stop")
    with pytest.raises(KafkaTransactionError, match="no answer"):
        h.running.result()


async def test_a_late_verdict_during_the_stop_is_not_left_in_a_transaction_never_committed(
    make_harness: MakeHarness,
) -> None:
    """A verdict that comes back while the processor stops, after its event's fallback, does
    not produce a correction after the final commit: that correction would sit in a
    transaction nobody commits, holding back read_committed readers of its partition until
    the broker aborts it."""
    settings = make_settings(
        delivery="exactly_once", sla_ms=60_000, transaction_interval_ms=59_000,
        commit_interval_ms=60_000, corrections_topic="corrections",
    )  # fmt: skip
    h = make_harness(settings)
    late = h.executor.hold("p0-4", then=verdict("DECLINE", "97", "velocity"))
    await h.start()
    h.source.feed(record(4, key="card-4"))
    await eventually(late.entered.is_set, "the execute")
    h.clock.advance(60)
    await eventually(lambda: any(source_of(o) == (0, 4) for o in h.sink.attempted), "fallback")
    final = h.sink.commit_hold = Hold()
    h.request_stop()
    await eventually(final.entered.is_set, "the final commit")
    late.release()
    await settle()
    final.release()
    await h.stop()
    assert h.sink.left_open == []
    assert seen(h) == Counter({(0, 4): 1})
