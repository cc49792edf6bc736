"""The status page's model: what one replica is doing now, as one JSON-able snapshot.

Everything is read when the page asks, never pushed per event: counters and histograms from
:class:`~streamproc.observability.metrics.ProcessorMetrics`, each allocation's budget, queue and
breaker, the processor's assignment and in-flight count, librdkafka's last statistics, and the
recent outputs (:mod:`.recent`). Rates are differences between two samples of the counters,
taken when a snapshot is made, over about the last :data:`WINDOW_S` seconds; so are the
latency histogram and its p50 and p99 ("now", not since start, which a long run would freeze).

The budget bar is honest: an allocation's in-flight count is shown capped at its limit, with
``over_limit`` set when the count says more. That happens only for a moment after a rebalance
shrank the budget while executes were running (they are kept, not cut off), and the page says
so rather than draw a bar past its end.
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from streamproc.core.decisions import rfc3339_utc
from streamproc.core.offsets import TopicPartition
from streamproc.kafka.admin import GroupDescription, GroupMember
from streamproc.kafka.statistics import GroupState
from streamproc.observability.metrics import Observations, Tally
from streamproc.observability.recent import RecentOutputs
from streamproc.processor.engine import Processor

# Rates and the latency histogram cover about this many seconds.
WINDOW_S = 10.0
# Snapshots closer together than this are one snapshot, however many pages watch.
SAMPLE_GAP_S = 0.5
# How often the group's coordinator is asked who this member is, at most (while watched).
MEMBER_LOOKUP_GAP_S = 10.0
MEMBER_LOOKUP_MAX_AGE_S = 60.0


@dataclass(frozen=True, slots=True)
class Identity:
    """Which replica this is, as an operator would look for it."""

    client_id: str
    group_id: str
    host: str
    pid: int
    started_at: str

    @classmethod
    def here(cls, client_id: str, group_id: str, now_epoch: float) -> Identity:
        return cls(client_id, group_id, socket.gethostname(), os.getpid(), rfc3339_utc(now_epoch))


@dataclass(frozen=True, slots=True)
class _Sample:
    at: float  # monotonic seconds
    consumed: float
    produced: float
    executes: dict[str, float]
    latency: tuple[int, ...]


class StatusBoard:
    """Builds snapshots of one processor for the status page; see the module docstring."""

    def __init__(
        self,
        processor: Processor,
        recent: RecentOutputs,
        identity: Identity,
        *,
        group: Callable[[], GroupState | None] = lambda: None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.processor = processor
        self.metrics = processor.metrics
        self.recent = recent
        self.identity = identity
        self._group = group
        self._clock = clock
        self._monotonic = monotonic
        self._started = monotonic()
        # A sample from the start, so the first snapshot has rates (since start) already.
        self._samples: deque[_Sample] = deque([self._sample(self._started)])
        self._latest: dict[str, Any] | None = None
        self._member: GroupMember | None = None
        self._coordinator: GroupDescription | None = None
        self._looked_up_at = float("-inf")
        self._looked_up_for: tuple[frozenset[TopicPartition], int] | None = None

    # -- the group member's id, from the coordinator ------------------------------------------

    def wants_member_lookup(self) -> bool:
        """Whether asking the coordinator again could tell something new: the assignment or
        the rebalance count moved since the last answer, or it is getting old."""
        now = self._monotonic()
        if now - self._looked_up_at < MEMBER_LOOKUP_GAP_S:
            return False
        return (
            self._looked_up_for != self._membership_key()
            or now - self._looked_up_at >= MEMBER_LOOKUP_MAX_AGE_S
        )

    def member_looked_up(self, description: GroupDescription | None) -> None:
        """The coordinator's answer (None when it did not answer)."""
        self._looked_up_at = self._monotonic()
        key = self._membership_key()
        self._looked_up_for = key
        self._coordinator = description
        if description is not None:
            self._member = this_member(description, key[0], self.identity.client_id)

    def _membership_key(self) -> tuple[frozenset[TopicPartition], int]:
        group = self._group()
        return frozenset(self.processor.assignment), group.rebalances if group else -1

    # -- snapshots ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The page's data now; at most one is made per :data:`SAMPLE_GAP_S`."""
        now = self._monotonic()
        if self._latest is not None and now - self._samples[-1].at < SAMPLE_GAP_S:
            return self._latest
        sample = self._sample(now)
        self._samples.append(sample)
        while len(self._samples) > 2 and now - self._samples[1].at >= WINDOW_S:
            self._samples.popleft()
        first = self._samples[0]
        span = now - first.at
        self._latest = {
            "at": rfc3339_utc(self._clock()),
            "uptime_s": round(now - self._started, 1),
            "identity": self._identity(),
            "group": self._group_view(now),
            "intake": {
                "in_flight": self.processor.in_flight,
                "max_in_flight": self.processor.settings.processing.max_in_flight,
                "paused": self.processor.paused,
            },
            "partitions": self._partitions(),
            "rates": _rates(first, sample, span),
            "totals": {
                "consumed": int(self.metrics.consumed.total),
                "decisions": int(self.metrics.decided.total),
                "dead_letters": int(self.metrics.dead_letters.total),
                "fallbacks": int(self.metrics.fallbacks.total),
                "late_results": int(self.metrics.late_results.total),
            },
            "allocations": self._allocations(now, first, sample, span),
            "decisions": _by_first_label(self.metrics.decided),
            "fallbacks": _by_first_label(self.metrics.fallbacks),
            "dead_letters": _by_first_label(self.metrics.dead_letters),
            "latency": self._latency(first, sample, span),
            "recent": {
                "decisions": [asdict(d) for d in self.recent.decisions()],
                "dead_letters": [asdict(d) for d in self.recent.dead_letters()],
            },
        }
        return self._latest

    def _sample(self, now: float) -> _Sample:
        m = self.metrics
        executes: dict[str, float] = {}
        for (task, _outcome), count in m.attempts.children.items():
            executes[task] = executes.get(task, 0.0) + count.value
        return _Sample(
            at=now,
            consumed=m.consumed.total,
            produced=m.decided.total + m.dead_letters.total,
            executes=executes,
            latency=tuple(m.decision_latency.children[()].counts),
        )

    def _identity(self) -> dict[str, Any]:
        member = self._member
        return {
            **asdict(self.identity),
            "member_id": member.member_id if member else None,
            "member_host": member.host if member else None,
        }

    def _group_view(self, now: float) -> dict[str, Any]:
        group = self._group()
        coordinator = self._coordinator
        return {
            "state": group.state if group else None,
            "join_state": group.join_state if group else None,
            "rebalances": group.rebalances if group else None,
            "last_rebalance_s": (
                round(group.rebalance_age_s + now - group.received_monotonic, 1)
                if group and group.rebalance_age_s is not None
                else None
            ),
            "rebalance_reason": group.rebalance_reason if group else None,
            "statistics_age_s": round(now - group.received_monotonic, 1) if group else None,
            "coordinator_state": coordinator.state if coordinator else None,
            "members": len(coordinator.members) if coordinator else None,
        }

    def _partitions(self) -> dict[str, Any]:
        lags: dict[tuple[str, int], int] = {}
        for family in self.metrics.consumer_lag.collect():
            for sample in family.samples:
                key = (sample.labels["topic"], int(sample.labels["partition"]))
                lags[key] = int(sample.value)
        owned = sorted(self.processor.assignment)
        known = [lags[tp] for tp in owned if tp in lags]
        return {
            "owned": [
                {"topic": tp.topic, "partition": tp.partition, "lag": lags.get(tp)} for tp in owned
            ],
            "lag_total": sum(known) if known else None,
        }

    def _allocations(
        self, now: float, first: _Sample, last: _Sample, span: float
    ) -> list[dict[str, Any]]:
        shown = []
        for name, allocation in self.processor.allocations.items():
            limit, in_flight = allocation.limit, allocation.in_flight
            executes = last.executes.get(name, 0.0) - first.executes.get(name, 0.0)
            shown.append(
                {
                    "name": name,
                    "limit": limit,
                    "in_flight": in_flight,
                    **budget_bar(in_flight, limit),
                    "queued": len(allocation.queue),
                    "circuit": allocation.circuit.state(now),
                    "executes_per_s": round(executes / span, 1) if span > 0 else None,
                }
            )
        return shown

    def _latency(self, first: _Sample, last: _Sample, span: float) -> dict[str, Any]:
        bounds = self.metrics.decision_latency.buckets
        window = Observations(bounds)
        window.counts = [b - a for a, b in zip(first.latency, last.latency, strict=True)]
        total = self.metrics.decision_latency.children[()]
        return {
            "window_s": round(span, 1),
            "buckets": [
                {"le": bound, "count": count}
                for bound, count in zip((*bounds, None), window.counts, strict=True)
            ],
            "count": window.count,
            # A quantile in the last bucket is only known to be above its lower bound.
            "top_ms": _ms(bounds[-1]),
            "p50_ms": _ms(window.quantile(0.5)),
            "p99_ms": _ms(window.quantile(0.99)),
            "total_count": total.count,
            "total_p50_ms": _ms(total.quantile(0.5)),
            "total_p99_ms": _ms(total.quantile(0.99)),
        }


def budget_bar(in_flight: int, limit: int) -> dict[str, Any]:
    """What the bar may draw: never more than the limit, and whether the count said more."""
    shown = max(0, min(in_flight, limit))
    return {
        "shown": shown,
        "fraction": shown / limit if limit > 0 else 0.0,
        "over_limit": in_flight > limit,
    }


def this_member(
    description: GroupDescription, assignment: Iterable[TopicPartition], client_id: str
) -> GroupMember | None:
    """This replica among the group's members: the one holding exactly its partitions (each
    partition has one owner), else the only one of its client id holding none; else unknown."""
    mine = frozenset(assignment)
    members = description.members
    if mine:
        exact = [m for m in members if m.assignment == mine]
        if len(exact) == 1:
            return exact[0]
        # Mid-rebalance the coordinator's view may differ a little; one overlap is still us.
        overlapping = [m for m in members if m.assignment & mine]
        return overlapping[0] if len(overlapping) == 1 else None
    idle = [m for m in members if m.client_id == client_id and not m.assignment]
    return idle[0] if len(idle) == 1 else None


def _rates(first: _Sample, last: _Sample, span: float) -> dict[str, Any]:
    if span <= 0:
        return {"window_s": None, "in_per_s": None, "out_per_s": None}
    return {
        "window_s": round(span, 1),
        "in_per_s": round((last.consumed - first.consumed) / span, 1),
        "out_per_s": round((last.produced - first.produced) / span, 1),
    }


def _by_first_label(tally: Tally) -> dict[str, int]:
    """A counter family summed by its first label (decision, reason or stage)."""
    counts: dict[str, int] = {}
    for labels, count in tally.children.items():
        counts[labels[0]] = counts.get(labels[0], 0) + int(count.value)
    return counts


def _ms(seconds: float | None) -> float | None:
    if seconds is None or seconds == float("inf"):
        return None
    return round(seconds * 1000, 1)
