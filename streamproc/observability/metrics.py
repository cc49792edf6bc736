"""Prometheus metrics of one processor, on a registry of its own.

A registry per processor (not the global default) lets several processors live in one test
process and keeps the exposition limited to what streamproc owns. Label values are bounded
sets (decision, reason, stage, API Task name, partition): never an event id or a card.
"""

from __future__ import annotations

from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from streamproc.core.decisions import FallbackReason
from streamproc.core.mapping import Decision
from streamproc.errors import Stage

# Buckets around a sub-second decision SLA: fine below 100 ms, coarse above.
_LATENCY_BUCKETS = (
    0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
    0.75, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip


class ProcessorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.consumed = Counter("streamproc_events_consumed", "Input records consumed.", registry=r)
        self.decided = Counter(
            "streamproc_decisions",
            "Decisions published, by decision and whether it was a fallback.",
            ["decision", "fallback"],
            registry=r,
        )
        self.fallbacks = Counter(
            "streamproc_fallbacks", "Fallback decisions, by reason.", ["reason"], registry=r
        )
        self.dead_letters = Counter(
            "streamproc_dead_letters", "Dead letters published, by stage.", ["stage"], registry=r
        )
        self.late_results = Counter(
            "streamproc_late_results",
            "API Task results that arrived after the event was decided by fallback (dropped).",
            ["task"],
            registry=r,
        )
        self.attempts = Counter(
            "streamproc_execute_attempts",
            "Execute attempts, by API Task and outcome.",
            ["task", "outcome"],
            registry=r,
        )
        self.execute_latency = Histogram(
            "streamproc_execute_latency_seconds",
            "Latency of one execute attempt.",
            ["task"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.decision_latency = Histogram(
            "streamproc_decision_latency_seconds",
            "End-to-end latency from the event's occurred_at to its decision being acknowledged.",
            buckets=_LATENCY_BUCKETS,
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
        self.commits = Counter(
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
        return {
            "consumed": _total(self.consumed),
            "decided": _total(self.decided),
            "fallbacks": _total(self.fallbacks),
            "dead_letters": _total(self.dead_letters),
            "late_results": _total(self.late_results),
            "in_flight": _total(self.in_flight_events),
        }


def _total(metric: Counter | Gauge) -> float:
    return sum(
        sample.value
        for family in metric.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    )
