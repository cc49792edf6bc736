"""Replicas scaled out and in under load at the allocation's bound: 1 -> 3 -> 1.

The API Task's allocation allows 8 concurrent executes of 20 ms, the group's shared bound. The
load offers 480 events/s, more than 8 / 0.020 s = 400 executes/s, so every replica always has
work for all of its share. Replicas are started (scale out) and stopped with SIGTERM (scale
in), as an orchestrator does. One run per delivery mode; the tests below read its figures.

- The emulator refuses an execute over the limit with a 429 and counts it as rejected, so its
  maxInFlight never exceeds the limit: ``rejected`` is what says the group tried to.
- How much of the bound the group reaches is its executes per second in a steady phase over
  8 / 0.020 s, as the emulator counts them. The slots' occupancy (the emulator's ``inFlight``,
  sampled every 50 ms, averaged over a phase, over the limit) is reported beside it.

Short run (``make test``): 5 s per phase; long run (``make chaos``): 20 s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import pairwise
from statistics import fmean
from typing import Any

import pytest

from bench.stack import emulator
from tests.fixtures.faults import long_runs, record_figures
from tests.fixtures.kafka import wait_until
from tests.integration.faults.processes import (
    Replica,
    Sampler,
    group_run,
    load,
    processing_lines,
)
from tests.integration.faults.topics import (
    Tally,
    assignment,
    delete_topics,
    fresh_topics,
    longest_gap,
    outcome,
)

pytestmark = pytest.mark.integration

# Exactly-once here runs in the long version only (make chaos).
SHORT_RUN_MODES = ("at_least_once",)

LIMIT, LATENCY_MS = 8, 20.0
RATE = 480  # events/s: 1.2 times what the allocation can score
PARTITIONS = 6
# The long run's 20 s phases hold the bound; the short run's 5 s ones are noisier on a
# shared machine, and its lower bar still fails the proportional floor's 6 of 8 slots (0.75).
MIN_SHARE_OF_BOUND = {"long": 0.9, "short": 0.8}
BOUND = LIMIT / (LATENCY_MS / 1000)


@dataclass(frozen=True)
class Phase:
    name: str
    start: float
    end: float
    executes: int = 0


@dataclass(frozen=True)
class ScalingRun:
    result: Tally
    phases: list[Phase]
    occupancy: dict[str, float]  # steady phase -> mean share of the limit in flight
    gaps: dict[str, float]  # rebalance -> the longest stall of a decisions partition (s)
    expired: dict[str, int]  # rebalance -> decisions "expired_on_arrival" written meanwhile
    high_water: int  # the emulator's maxInFlight
    rejections: list[tuple[str, int]]  # (when, how many more) each time the count grew
    in_flight_over_limit: list[tuple[str, float]]  # (when, the replicas' summed in-flight)
    held_by_three: list[float]  # the 3 replicas' summed budgets, sampled in their steady phase


def _replica_figures(group: list[Replica]) -> dict[int, tuple[float, float]]:
    """(budget, executes in flight) of each live replica, by its index."""
    seen: dict[int, tuple[float, float]] = {}
    for i, replica in enumerate(group):
        if replica.alive():
            metrics = replica.metrics()
            seen[i] = (
                metrics.metric("streamproc_allocation_budget", task="fraud"),
                metrics.metric("streamproc_allocation_in_flight", task="fraud"),
            )
    return seen


@pytest.fixture(scope="module")
def scaling_run(
    request: pytest.FixtureRequest,
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
    delivery: str,
) -> ScalingRun:
    phase_s = 20.0 if long_runs(request.config) else 5.0
    topics = fresh_topics(kafka_bootstrap, partitions=PARTITIONS)
    phases: list[Phase] = []
    try:
        with (
            emulator(LIMIT, LATENCY_MS) as emu,
            group_run(
                kafka_bootstrap, topics, emu.url, tmp_path_factory.mktemp(f"scaling-{delivery}"),
                processing=processing_lines(delivery), members=3,
            ) as run,
            load(kafka_bootstrap, topics.input, rate=RATE),
            Sampler(emu.stats, 0.05) as endpoint,
            Sampler(lambda: _replica_figures(run.members), 0.1) as processors,
        ):  # fmt: skip
            first, *others = run.members

            def steady(name: str) -> None:
                before, start = emu.stats()["executed"], time.time()
                time.sleep(phase_s)  # the phase lasts this long
                phases.append(Phase(name, start, time.time(), emu.stats()["executed"] - before))

            run.caught_up()
            steady("1 replica")
            out_at = time.time()
            for replica in others:
                replica.start()
            for replica in others:
                replica.wait_ready()
            wait_until(
                lambda: assignment(kafka_bootstrap, first.group) == [2, 2, 2],
                60, 0.2, "3 replicas owning 2 partitions each",
            )  # fmt: skip
            phases.append(Phase("scale out", out_at, time.time()))
            steady("3 replicas")
            in_at = time.time()
            for replica in others:
                assert replica.stop() == 0, replica.tail()
            wait_until(
                lambda: assignment(kafka_bootstrap, first.group) == [PARTITIONS],
                60, 0.2, "the last replica owning every partition",
            )  # fmt: skip
            phases.append(Phase("scale in", in_at, time.time()))
            steady("1 replica again")
        end = outcome(kafka_bootstrap, topics)
    finally:
        delete_topics(kafka_bootstrap, topics)
    outputs, result = end.outputs, end.tally

    def when(moment: float) -> str:
        for phase in phases:
            if phase.start <= moment <= phase.end:
                return f"{phase.name} +{moment - phase.start:.2f}s"
        return "between phases"

    stats: list[tuple[float, dict[str, Any]]] = endpoint.samples
    scaling = ScalingRun(
        result=result,
        phases=phases,
        occupancy={
            p.name: fmean(int(s["inFlight"]) for t, s in stats if p.start <= t <= p.end) / LIMIT
            for p in phases
            if p.executes
        },
        gaps={
            p.name: longest_gap(outputs, p.start, p.end, range(PARTITIONS))
            for p in phases
            if not p.executes
        },
        expired={
            p.name: sum(
                1
                for o in outputs
                if o.decision is not None
                and o.decision["fallback_reason"] == "expired_on_arrival"
                and p.start <= o.appended <= p.end
            )
            for p in phases
            if not p.executes
        },
        high_water=max(int(s["maxInFlight"]) for _, s in stats),
        rejections=[
            (when(moment), int(s["rejected"]) - int(prev["rejected"]))
            for (_, prev), (moment, s) in pairwise(stats)
            if int(s["rejected"]) > int(prev["rejected"])
        ],
        in_flight_over_limit=[
            (when(moment), total)
            for moment, seen in processors.samples
            if (total := sum(f for _, f in seen.values())) > LIMIT
        ],
        held_by_three=[
            sum(budget for budget, _ in seen.values())
            for moment, seen in processors.samples
            if len(seen) == 3
            and any(p.name == "3 replicas" and p.start <= moment <= p.end for p in phases)
        ],
    )
    rates = " ".join(
        f"{p.name.replace(' ', '_')}={scaling.occupancy[p.name]:.2f}"
        f"({p.executes / (p.end - p.start) / BOUND:.2f}_of_{BOUND:g}/s)"
        for p in phases
        if p.executes
    )
    record_figures(
        request.config,
        "d: scale 1-3-1",
        delivery,
        lost=len(result.lost),
        duplicated=result.duplicated,
        max_in_flight=scaling.high_water,
        gap_s=max(scaling.gaps.values()),
        details=(
            f"occupancy {rates} "
            + " ".join(f"gap_{k.replace(' ', '_')}={v:.1f}s" for k, v in scaling.gaps.items())
            + " "
            + " ".join(f"expired_{k.replace(' ', '_')}={n}" for k, n in scaling.expired.items())
            + f" rejected={sum(n for _, n in scaling.rejections)} at {scaling.rejections[:5]}"
            f" in_flight_over_limit_at={scaling.in_flight_over_limit[:5]}"
        ),
    )
    return scaling


def test_scaling_keeps_the_group_within_the_allocation(scaling_run: ScalingRun) -> None:
    """Scaled 1 -> 3 -> 1 under load, the replicas never together ask the endpoint for more
    than the allocation's 8 executes, also while partitions move, and lose no event."""
    assert scaling_run.high_water <= LIMIT
    rejected = sum(n for _, n in scaling_run.rejections)
    assert rejected == 0, (
        f"{rejected} executes over the limit, first: {scaling_run.rejections[:10]}"
    )
    assert scaling_run.result.lost == []


def test_three_replicas_hold_the_whole_allocation_between_them(scaling_run: ScalingRun) -> None:
    """Split by the partitions they own, the 3 replicas' budgets add up to the allocation's
    limit: no slot is left to nobody (a proportional floor would give each 2 of 8)."""
    assert scaling_run.held_by_three, "no sample of the 3 replicas' budgets"
    assert set(scaling_run.held_by_three) == {LIMIT}, scaling_run.held_by_three


def test_three_replicas_reach_nine_tenths_of_the_bound(
    scaling_run: ScalingRun, request: pytest.FixtureRequest
) -> None:
    """With 3 replicas sharing the allocation, the group executes >= 0.9 of what the
    allocation allows (8 / 20 ms = 400/s) while offered 1.2 times that."""
    phase = next(p for p in scaling_run.phases if p.name == "3 replicas")
    rate = phase.executes / (phase.end - phase.start)
    bar = MIN_SHARE_OF_BOUND["long" if long_runs(request.config) else "short"]
    assert rate / BOUND >= bar, (rate, scaling_run.occupancy)
