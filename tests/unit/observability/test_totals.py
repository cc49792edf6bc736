"""Progress totals read from the processor's metrics."""

from __future__ import annotations

from streamproc.observability.metrics import ProcessorMetrics


def test_totals_sum_each_counter_over_its_labels() -> None:
    """Decisions by outcome, fallbacks by reason and dead letters by stage add up to totals,
    and the in-flight gauge is reported as it stands."""
    metrics = ProcessorMetrics()
    metrics.consumed.inc(7)
    metrics.decided.labels("APPROVE", "false").inc(3)
    metrics.decided.labels("REVIEW", "true").inc(2)
    metrics.fallbacks.labels("deadline").inc(2)
    metrics.dead_letters.labels("decode").inc()
    metrics.dead_letters.labels("map").inc()
    metrics.in_flight_events.set(1)
    assert metrics.totals() == {
        "consumed": 7,
        "decided": 5,
        "fallbacks": 2,
        "dead_letters": 2,
        "late_results": 0,
        "in_flight": 1,
    }
