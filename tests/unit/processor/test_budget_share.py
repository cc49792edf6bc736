"""BudgetSplitter: each replica's share of an allocation budget follows its assignment."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from streamproc.kafka.records import TopicPartition
from streamproc.observability.metrics import ProcessorMetrics
from streamproc.processor.budget_share import BudgetSplitter
from tests.unit.processor.conftest import MakeHarness
from tests.unit.processor.fakes import TP0, TP1, TP2, eventually, record, sample, settle

METRICS = ProcessorMetrics()


class Share:
    """A budget as the splitter sees it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def set_limit(self, limit: int) -> None:
        self.limit = limit


def splitter(total: int = 6, **limits: int) -> tuple[BudgetSplitter, dict[str, Share]]:
    budgets = {name: Share(limit) for name, limit in limits.items()}

    async def total_partitions() -> int:
        return total

    return BudgetSplitter(budgets, limits, total_partitions, METRICS), budgets


def tps(count: int) -> list[TopicPartition]:
    return [TopicPartition("transactions", p) for p in range(count)]


async def test_each_budget_is_split_by_the_share_of_partitions_owned() -> None:
    """Owning k of n input partitions gives floor(limit * k / n) of every allocation, min 1."""
    split, budgets = splitter(total=6, fraud=9, aml=4)
    await split(tps(2))
    assert (budgets["fraud"].limit, budgets["aml"].limit) == (3, 1)
    await split(tps(6))
    assert (budgets["fraud"].limit, budgets["aml"].limit) == (9, 4)
    await split([])
    assert (budgets["fraud"].limit, budgets["aml"].limit) == (1, 1)


async def test_a_shrinking_share_keeps_running_executes(make_harness: MakeHarness) -> None:
    """A smaller share applies to new executes; executes already running keep their slots."""
    h = make_harness(limits={"fraud": 4})
    holds = {o: h.executor.hold(f"p0-{o}") for o in range(6)}
    await h.start()
    h.source.feed(*(record(o, key=f"k{o}") for o in range(6)))
    await eventually(lambda: h.executor.running == 4, "four executes")
    h.allocation.set_limit(2)
    await settle()
    assert h.executor.running == 4
    for o in range(3):
        holds[o].release()
    await eventually(lambda: len(h.sink.sent) == 3, "three answered")
    await eventually(lambda: h.executor.running == 2, "one new execute beside the old one")
    await settle()
    assert h.executor.running == 2
    assert h.executor.max_running == 4
    assert h.allocation.in_flight == 2


async def test_the_processor_re_splits_after_every_rebalance(make_harness: MakeHarness) -> None:
    """on_assignment is called with the owned partitions after assign, revoke and lost."""
    seen: list[set[TopicPartition]] = []

    async def on_assignment(assignment: Sequence[TopicPartition]) -> None:
        seen.append(set(assignment))

    h = make_harness(assignment=(TP0, TP1), on_assignment=on_assignment)
    await h.start()
    assert seen == [{TP0, TP1}]
    await h.source.assign([TP2])
    await h.source.revoke([TP0])
    await h.source.lose([TP1])
    assert seen == [{TP0, TP1}, {TP0, TP1, TP2}, {TP1, TP2}, {TP2}]


async def test_a_failing_re_split_does_not_stop_processing(make_harness: MakeHarness) -> None:
    """A re-split that fails keeps the previous shares, and events keep flowing."""

    async def on_assignment(assignment: Sequence[TopicPartition]) -> None:
        raise ConnectionError("describe_partitions timed out")

    h = make_harness(on_assignment=on_assignment)
    with structlog.testing.capture_logs() as logs:
        await h.start()
        await h.source.assign([TP1])
    h.source.feed(record(0), record(0, partition=1))
    await h.outputs(2)
    assert [e["event"] for e in logs].count("assignment_listener_failed") == 2
    await eventually(lambda: h.source.committed(TP1) == 1, "the commit")


async def test_the_budget_metric_follows_the_share() -> None:
    """The allocation budget gauge shows the share in force, per API Task."""
    split, _ = splitter(total=4, metered=8)
    await split(tps(1))
    assert sample(METRICS, "streamproc_allocation_budget", task="metered") == 2
    await split(tps(4))
    assert sample(METRICS, "streamproc_allocation_budget", task="metered") == 8


async def test_the_partition_count_is_not_read_on_every_rebalance() -> None:
    """Rebalance callbacks must not wait on the network: the count is read once, and only
    refreshed in the background once it is older than ``refresh_s``."""
    reads: list[int] = []
    counts = iter([4, 8])
    now = [0.0]

    async def total_partitions() -> int:
        reads.append(1)
        return next(counts)

    budgets = {"fraud": Share(8)}
    split = BudgetSplitter(
        budgets, {"fraud": 8}, total_partitions, METRICS, refresh_s=60, clock=lambda: now[0]
    )
    await split.prime()
    await split(tps(2))
    await split(tps(1))
    assert len(reads) == 1
    assert budgets["fraud"].limit == 2  # 8 * 1 // 4
    now[0] = 61.0
    await split(tps(2))  # still the old count: the refresh runs in the background
    assert budgets["fraud"].limit == 4
    await eventually(lambda: len(reads) == 2, "the background refresh")
    await split(tps(2))
    assert budgets["fraud"].limit == 2  # 8 * 2 // 8


async def test_a_revoke_waits_until_the_executes_fit_the_smaller_share(
    make_harness: MakeHarness,
) -> None:
    """The next owner takes its share when the revoke returns: until the executes still
    running here fit this replica's smaller share, the revoke does not return."""
    shares = {2: 4, 1: 2}

    async def split(assignment: Sequence[TopicPartition]) -> None:
        h.allocation.set_limit(shares[len(assignment)])

    h = make_harness(assignment=(TP0, TP1), limits={"fraud": 4}, on_assignment=split)
    holds = {o: h.executor.hold(f"p1-{o}") for o in range(4)}
    await h.start()
    h.source.feed(*(record(o, partition=1, key=f"k{o}") for o in range(4)))
    await eventually(lambda: h.executor.running == 4, "four executes on partition 1")
    revoking = asyncio.create_task(h.source.revoke([TP0]))
    await eventually(lambda: h.allocation.limit == 2, "the smaller share")
    await settle()
    assert not revoking.done()
    holds[0].release()
    holds[1].release()
    await asyncio.wait_for(revoking, 3)
    assert h.allocation.in_flight <= 2
    for held in holds.values():
        held.release()
