"""ProcessorMetrics: a registry per processor, and totals for progress lines."""

from __future__ import annotations

from streamproc.observability.metrics import ProcessorMetrics


def test_each_processor_has_a_registry_of_its_own() -> None:
    """Two processors in one process count separately and expose only streamproc metrics."""
    first, second = ProcessorMetrics(), ProcessorMetrics()
    first.consumed.inc(2)
    second.consumed.inc(5)
    assert b"streamproc_events_consumed_total 2.0" in first.exposition()
    assert b"streamproc_events_consumed_total 5.0" in second.exposition()
    names = {
        line.split(b"{")[0].split(b" ")[0]
        for line in first.exposition().splitlines()
        if line and not line.startswith(b"#")
    }
    assert all(name.startswith(b"streamproc_") for name in names)


def test_totals_sum_counters_over_their_labels() -> None:
    """totals() adds up every label combination (and ignores the _created samples)."""
    metrics = ProcessorMetrics()
    metrics.consumed.inc(10)
    metrics.decided.labels("APPROVE", "false").inc(6)
    metrics.decided.labels("REVIEW", "true").inc(2)
    metrics.fallbacks.labels("deadline").inc(2)
    metrics.dead_letters.labels("decode").inc()
    metrics.dead_letters.labels("execute").inc()
    metrics.in_flight_events.set(3)
    assert metrics.totals() == {
        "consumed": 10,
        "decided": 8,
        "fallbacks": 2,
        "dead_letters": 2,
        "late_results": 0,
        "in_flight": 3,
    }
