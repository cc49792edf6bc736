"""The status page's model: rates from counter differences, the latency histogram of the last
seconds, an honest budget bar, partitions with their lag, and who this member is."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from streamproc.kafka.admin import GroupDescription, GroupMember
from streamproc.kafka.records import TopicPartition
from streamproc.kafka.statistics import GroupState
from streamproc.observability.recent import RecentOutputs
from streamproc.observability.status import (
    MEMBER_LOOKUP_GAP_S,
    Identity,
    StatusBoard,
    budget_bar,
    this_member,
)
from tests.unit.processor.fakes import INPUT, TP0, TP1, TP2, Harness, build, eventually, record

MakeHarness = Callable[..., Harness]
IDENTITY = Identity("streamproc", "fraud-scoring", "node-7", 4242, "2026-11-28T18:00:00.000Z")


class Ticker:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def make_harness() -> AsyncIterator[MakeHarness]:
    """Processors wired to fakes; each is stopped and drained at teardown."""
    made: list[Harness] = []

    def make(**kwargs: Any) -> Harness:
        made.append(build(**kwargs))
        return made[-1]

    yield make
    for harness in made:
        await harness.aclose()


def board_of(h: Harness, ticker: Ticker, **kwargs: Any) -> StatusBoard:
    return StatusBoard(h.processor, RecentOutputs(), IDENTITY, monotonic=ticker, **kwargs)


def test_rates_are_differences_over_the_last_seconds(make_harness: MakeHarness) -> None:
    """Events in and out per second, and executes per second per allocation, come from counter
    differences over about the last ten seconds: a processor gone quiet shows 0/s, not its
    average since start."""
    h = make_harness()
    ticker = Ticker()
    board = board_of(h, ticker)
    m = h.metrics
    ticker.now += 2
    m.consumed.inc(100)
    m.decided.labels("APPROVE", "false").inc(80)
    m.dead_letters.labels("decode").inc(10)
    m.attempts.labels("fraud", "ok").inc(30)
    m.attempts.labels("fraud", "ServerError").inc(10)
    first = board.snapshot()
    assert first["rates"] == {"window_s": 2.0, "in_per_s": 50.0, "out_per_s": 45.0}
    (allocation,) = first["allocations"]
    assert allocation["executes_per_s"] == 20.0
    assert first["totals"]["consumed"] == 100
    ticker.now += 2
    m.consumed.inc(100)
    assert board.snapshot()["rates"]["in_per_s"] == 50.0  # 200 over 4 s
    ticker.now += 16  # nothing more arrives
    quiet = board.snapshot()
    assert quiet["rates"] == {"window_s": 16.0, "in_per_s": 0.0, "out_per_s": 0.0}
    assert quiet["allocations"][0]["executes_per_s"] == 0.0
    assert quiet["totals"]["consumed"] == 200


def test_snapshots_close_together_are_one(make_harness: MakeHarness) -> None:
    """Several pages watching at once share a snapshot: within half a second the same one is
    returned, so the work does not grow with the number of readers."""
    h = make_harness()
    ticker = Ticker()
    board = board_of(h, ticker)
    ticker.now += 1
    first = board.snapshot()
    h.metrics.consumed.inc(5)
    ticker.now += 0.2
    assert board.snapshot() is first
    ticker.now += 0.4
    assert board.snapshot()["totals"]["consumed"] == 5


def test_the_latency_histogram_covers_the_last_seconds(make_harness: MakeHarness) -> None:
    """p50 and p99 and the histogram describe the decisions of about the last ten seconds; the
    figures since start stay alongside."""
    h = make_harness()
    ticker = Ticker()
    board = board_of(h, ticker)
    latency = h.metrics.decision_latency
    for _ in range(99):
        latency.observe(0.018)
    latency.observe(0.9)
    ticker.now += 1
    early = board.snapshot()["latency"]
    assert (early["count"], early["p50_ms"], early["p99_ms"]) == (100, 20.0, 20.0)
    buckets = {b["le"]: b["count"] for b in early["buckets"]}
    assert (buckets[0.02], buckets[1.0], buckets[None]) == (99, 1, 0)
    ticker.now += 12
    board.snapshot()
    for _ in range(300):
        latency.observe(0.35)
    ticker.now += 1
    late = board.snapshot()["latency"]
    assert (late["count"], late["p50_ms"], late["p99_ms"]) == (300, 400.0, 400.0)
    assert (late["total_count"], late["total_p50_ms"]) == (400, 400.0)
    slow = {b["le"]: b["count"] for b in late["buckets"]}
    assert (slow[0.02], slow[0.4]) == (0, 300)


def test_a_quantile_beyond_the_last_bucket_is_not_given_a_number(
    make_harness: MakeHarness,
) -> None:
    """A p99 that falls past the largest bucket is unknown (shown as "over" its lower bound),
    not an infinity the page cannot print."""
    h = make_harness()
    ticker = Ticker()
    board = board_of(h, ticker)
    for _ in range(10):
        h.metrics.decision_latency.observe(30.0)
    ticker.now += 1
    latency = board.snapshot()["latency"]
    assert (latency["p99_ms"], latency["top_ms"]) == (None, 10_000.0)


def test_the_budget_bar_never_shows_more_than_the_limit() -> None:
    """What the bar draws is the in-flight count capped at the limit; a count above it is
    flagged instead of drawn past the bar's end."""
    assert budget_bar(3, 8) == {"shown": 3, "fraction": 0.375, "over_limit": False}
    assert budget_bar(8, 8) == {"shown": 8, "fraction": 1.0, "over_limit": False}
    assert budget_bar(12, 8) == {"shown": 8, "fraction": 1.0, "over_limit": True}
    assert budget_bar(0, 0) == {"shown": 0, "fraction": 0.0, "over_limit": False}
    assert budget_bar(2, 0) == {"shown": 0, "fraction": 0.0, "over_limit": True}


async def test_a_budget_shrunk_under_running_executes_is_capped_and_flagged(
    make_harness: MakeHarness,
) -> None:
    """After a rebalance shrinks an allocation's budget while its executes run (they are kept),
    the page shows the limit, full, and says the count is above it."""
    h = make_harness(limits={"fraud": 4})
    holds = [h.executor.hold(f"p0-{o}") for o in range(4)]
    ticker = Ticker()
    board = board_of(h, ticker)
    await h.start()
    h.source.feed(*(record(o, key=f"card-{o}") for o in range(4)))
    await eventually(lambda: all(held.entered.is_set() for held in holds), "4 executes")
    h.allocation.set_limit(2)
    ticker.now += 1
    (allocation,) = board.snapshot()["allocations"]
    assert allocation["limit"] == 2
    assert allocation["in_flight"] == 4
    assert (allocation["shown"], allocation["fraction"], allocation["over_limit"]) == (2, 1.0, True)
    assert allocation["circuit"] == "closed"
    for held in holds:
        held.release()
    await h.outputs(4)
    ticker.now += 1
    (allocation,) = board.snapshot()["allocations"]
    assert (allocation["shown"], allocation["over_limit"]) == (0, False)


async def test_owned_partitions_are_shown_with_their_lag(make_harness: MakeHarness) -> None:
    """The partitions this member owns are listed with the consumer lag of the last statistics,
    and their total; a partition whose lag is not known yet has none."""
    h = make_harness(assignment=(TP1, TP0))
    ticker = Ticker()
    board = board_of(h, ticker)
    await h.start()
    await eventually(lambda: len(h.processor.assignment) == 2, "the assignment")
    h.metrics.consumer_lag.labels(INPUT, "0").set(7)
    h.metrics.consumer_lag.labels(INPUT, "2").set(99)  # not ours (any more)
    ticker.now += 1
    partitions = board.snapshot()["partitions"]
    assert partitions == {
        "owned": [
            {"topic": INPUT, "partition": 0, "lag": 7},
            {"topic": INPUT, "partition": 1, "lag": None},
        ],
        "lag_total": 7,
    }


def member(member_id: str, *tps: TopicPartition, client_id: str = "streamproc") -> GroupMember:
    return GroupMember(member_id, client_id, "/10.0.0.7", frozenset(tps))


def test_this_member_is_the_one_holding_our_partitions() -> None:
    """Among the group's members, this replica is the one holding exactly its partitions, or
    the only one overlapping them mid-rebalance, or the only idle one of its client id."""
    group = GroupDescription(
        "g", "stable", (member("a", TP0, TP1), member("b", TP2), member("c", client_id="other"))
    )
    assert this_member(group, [TP1, TP0], "streamproc") == group.members[0]
    assert this_member(group, [TP0], "streamproc") == group.members[0]
    assert this_member(group, [], "other") == group.members[2]
    assert this_member(group, [], "streamproc") is None  # a and b hold partitions
    twins = GroupDescription("g", "stable", (member("a"), member("b")))
    assert this_member(twins, [], "streamproc") is None  # which one is us is not known


async def test_identity_and_group_come_from_statistics_and_the_coordinator(
    make_harness: MakeHarness,
) -> None:
    """The page names the replica (client id, host, pid, group) and its member id once the
    coordinator answered; the group's state comes from the last statistics. The coordinator is
    asked again only when the assignment or the rebalance count moved, at most every 10 s."""
    h = make_harness(assignment=(TP0,))
    ticker = Ticker()
    state = GroupState("up", "steady", 2, 30.0, "", 1, received_monotonic=ticker.now)
    board = board_of(h, ticker, group=lambda: state)
    await h.start()
    await eventually(lambda: h.processor.assignment == [TP0], "the assignment")
    assert board.wants_member_lookup()
    board.member_looked_up(GroupDescription("g", "stable", (member("streamproc-1", TP0),)))
    assert not board.wants_member_lookup()
    ticker.now += 5
    snapshot = board.snapshot()
    assert snapshot["identity"] == {
        "client_id": "streamproc",
        "group_id": "fraud-scoring",
        "host": "node-7",
        "pid": 4242,
        "started_at": "2026-11-28T18:00:00.000Z",
        "member_id": "streamproc-1",
        "member_host": "/10.0.0.7",
    }
    assert snapshot["group"] == {
        "state": "up",
        "join_state": "steady",
        "rebalances": 2,
        "last_rebalance_s": 35.0,
        "rebalance_reason": "",
        "statistics_age_s": 5.0,
        "coordinator_state": "stable",
        "members": 1,
    }
    ticker.now += MEMBER_LOOKUP_GAP_S
    assert not board.wants_member_lookup()  # nothing moved
    state = GroupState("up", "steady", 3, 0.0, "rebalance", 1, received_monotonic=ticker.now)
    assert board.wants_member_lookup()
    board.member_looked_up(None)  # the coordinator did not answer: the last member stays
    ticker.now += 1
    assert board.snapshot()["identity"]["member_id"] == "streamproc-1"
