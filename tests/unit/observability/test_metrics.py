"""ProcessorMetrics: one registry per processor."""

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
