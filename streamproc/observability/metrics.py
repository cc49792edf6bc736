"""Prometheus metrics of one processor, on a registry of its own.

A registry per processor (not the global default) lets several processors live in one test
process and keeps the exposition limited to what streamproc owns. Label values are bounded
sets (decision, reason, stage, API Task name, partition): never an event id or a card.

Counters and histograms that move per event are :class:`Tally` and :class:`Distribution`:
plain integers and floats, read when scraped. prometheus_client's own take a lock per
increment, which the hot path (one event loop, one thread) does not need; a scrape runs on the
same loop, so it never sees a half-made update. Gauges set now and then stay prometheus_client
gauges.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import get_args

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from streamproc.core.decisions import FallbackReason
from streamproc.core.mapping import Decision
from streamproc.errors import Stage

# Buckets around a sub-second decision SLA: fine below 100 ms, coarse above.
LATENCY_BUCKETS = (
    0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
    0.75, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip


class Count:
    """One counter child: ``inc`` is an integer addition."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class Tally(Collector):
    """A counter family whose children are :class:`Count`; ``labels`` caches them."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.children: dict[tuple[str, ...], Count] = {}
        if not self.labelnames:
            self.children[()] = Count()
        if registry is not None:
            registry.register(self)

    def labels(self, *values: str) -> Count:
        child = self.children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
            child = self.children[values] = Count()
        return child

    def inc(self, amount: float = 1.0) -> None:
        self.children[()].value += amount

    @property
    def total(self) -> float:
        return sum(child.value for child in self.children.values())

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in self.children.items():
            family.add_metric(list(values), child.value)
        yield family

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)


class Observations:
    """One histogram child: a bucket index and two additions per observation."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding the ``q`` quantile; None when empty."""
        total = self.count
        if total == 0:
            return None
        rank, seen = q * total, 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            seen += n
            if seen >= rank:
                return bound
        return float("inf")


class Distribution(Collector):
    """A histogram family whose children are :class:`Observations`."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: tuple[float, ...] = LATENCY_BUCKETS,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.buckets = tuple(sorted(buckets))
        self.children: dict[tuple[str, ...], Observations] = {}
        if not self.labelnames:
            self.children[()] = Observations(self.buckets)
        if registry is not None:
            registry.register(self)

    def labels(self, *values: str) -> Observations:
        child = self.children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
            child = self.children[values] = Observations(self.buckets)
        return child

    def observe(self, value: float) -> None:
        self.children[()].observe(value)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in self.children.items():
            cumulative, buckets = 0, []
            for bound, n in zip((*child.bounds, float("inf")), child.counts, strict=True):
                cumulative += n
                buckets.append((_le(bound), float(cumulative)))
            family.add_metric(list(values), buckets, child.sum)
        yield family

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class ProcessorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.consumed = Tally("streamproc_events_consumed", "Input records consumed.", registry=r)
        self.decided = Tally(
            "streamproc_decisions",
            "Decisions published, by decision and whether it was a fallback.",
            ["decision", "fallback"],
            registry=r,
        )
        self.fallbacks = Tally(
            "streamproc_fallbacks", "Fallback decisions, by reason.", ["reason"], registry=r
        )
        self.dead_letters = Tally(
            "streamproc_dead_letters", "Dead letters published, by stage.", ["stage"], registry=r
        )
        self.late_results = Tally(
            "streamproc_late_results",
            "API Task results that arrived after the event was decided by fallback (dropped).",
            ["task"],
            registry=r,
        )
        self.attempts = Tally(
            "streamproc_execute_attempts",
            "Execute attempts, by API Task and outcome.",
            ["task", "outcome"],
            registry=r,
        )
        self.execute_latency = Distribution(
            "streamproc_execute_latency_seconds",
            "Latency of one execute attempt.",
            ["task"],
            registry=r,
        )
        self.decision_latency = Distribution(
            "streamproc_decision_latency_seconds",
            "End-to-end latency from the event's occurred_at to its decision being produced.",
            registry=r,
        )
        self.in_flight_events = Gauge(
            "streamproc_in_flight_events", "Events consumed and not yet completed.", registry=r
        )
        self.paused = Gauge(
            "streamproc_intake_paused",
            "1 while partitions are paused for backpressure.",
            registry=r,
        )
        self.allocation_in_flight = Gauge(
            "streamproc_allocation_in_flight",
            "Executes in flight per API Task allocation.",
            ["task"],
            registry=r,
        )
        self.allocation_budget = Gauge(
            "streamproc_allocation_budget",
            "Concurrency budget per API Task allocation.",
            ["task"],
            registry=r,
        )
        self.circuit_state = Gauge(
            "streamproc_circuit_state",
            "Circuit breaker per API Task allocation: 0 closed, 1 half-open, 2 open.",
            ["task"],
            registry=r,
        )
        self.commit_lag = Gauge(
            "streamproc_commit_lag",
            "Records consumed beyond the last committed offset, per partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.corrections = Tally(
            "streamproc_corrections",
            "Corrections published: a verdict that came after its event's fallback decision.",
            registry=r,
        )
        self.skipped = Tally(
            "streamproc_events_skipped",
            "Input records skipped as already decided: completed beyond a previous owner's "
            "committed position, as its commit metadata says.",
            registry=r,
        )
        self.commit_metadata_dropped = Tally(
            "streamproc_commit_metadata_dropped",
            "Commits whose completed-offsets metadata did not fit the broker's limit and "
            "went without it (those events are redone after a crash).",
            registry=r,
        )
        self.commits = Tally(
            "streamproc_commits", "Offset commits, by outcome.", ["outcome"], registry=r
        )
        self.consumer_lag = Gauge(
            "streamproc_consumer_lag",
            "Records of an assigned partition not yet consumed: from the consumer's position "
            "to the partition's end, per librdkafka's last statistics.",
            ["topic", "partition"],
            registry=r,
        )
        self.intake_idle = Gauge(
            "streamproc_intake_idle_seconds",
            "Seconds since the intake last polled Kafka.",
            registry=r,
        )
        self.intake_stall = Gauge(
            "streamproc_intake_stall_seconds",
            "Intake idle longer than this is a stall: /healthz answers 503.",
            registry=r,
        )
        # Every bounded label value is exported from the start, at 0: a rate over a series that
        # does not exist yet is no rate at all, and an alert on the first fallback of a kind
        # would otherwise wait for its second.
        for decision in get_args(Decision):
            for fallback in ("true", "false"):
                self.decided.labels(decision, fallback)
        for reason in get_args(FallbackReason):
            self.fallbacks.labels(reason)
        for stage in get_args(Stage):
            self.dead_letters.labels(stage)
        for outcome in ("ok", "failed"):
            self.commits.labels(outcome)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def totals(self) -> dict[str, float]:
        """Counters summed over their labels, and the in-flight gauge: for progress lines."""
        in_flight = self.registry.get_sample_value("streamproc_in_flight_events") or 0.0
        return {
            "consumed": self.consumed.total,
            "decided": self.decided.total,
            "fallbacks": self.fallbacks.total,
            "dead_letters": self.dead_letters.total,
            "late_results": self.late_results.total,
            "in_flight": in_flight,
        }
