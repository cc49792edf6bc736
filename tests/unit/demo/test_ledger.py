"""End-to-end accounting by event id: percentiles, rates, and the nothing-lost verdict."""

from __future__ import annotations

from typing import Any

import pytest

from streamproc.demo.ledger import Ledger, Output, RateMeter, percentile, verdict


def decision(event_id: str, decision: str = "APPROVE", **kw: Any) -> Output:
    return Output(kind="decision", event_id=event_id, decision=decision, **kw)


def dead_letter(event_id: str | None, stage: str) -> Output:
    return Output(kind="dead_letter", event_id=event_id, stage=stage)


@pytest.mark.parametrize(
    ("q", "expected"),
    [(50, 50.0), (99, 99.0), (100, 100.0), (1, 1.0), (0.5, 1.0), (99.5, 100.0)],
)
def test_percentile_is_the_nearest_rank(q: float, expected: float) -> None:
    """The q-th percentile of 1..100 is the value at rank ceil(q% of n)."""
    assert percentile([float(v) for v in range(100, 0, -1)], q) == expected


def test_percentile_of_few_values_is_a_measured_value() -> None:
    """With two values, p50 is the lower and p99 the higher; never an interpolation."""
    assert percentile([30.0, 10.0], 50) == 10.0
    assert percentile([30.0, 10.0], 99) == 30.0
    assert percentile([7.0], 99) == 7.0


def test_percentile_of_nothing_is_none_and_q_must_be_a_percentage() -> None:
    """No values, no percentile; q outside (0, 100] is a programming error."""
    assert percentile([], 50) is None
    for q in (0, -1, 101):
        with pytest.raises(ValueError, match="q must be"):
            percentile([1.0], q)


def test_rates_are_per_second_over_the_window() -> None:
    """Rates are the counters' growth over the samples in the window, per second."""
    meter = RateMeter(window_s=5.0)
    assert meter.add(100.0, 0, 0) == (0.0, 0.0)
    assert meter.add(101.0, 200, 150) == (200.0, 150.0)
    assert meter.add(102.0, 400, 350) == (200.0, 175.0)
    for t in range(103, 110):
        rates = meter.add(float(t), 400 + 100 * (t - 102), 350 + 100 * (t - 102))
    # Only the last five seconds count: the early 200/s have left the window.
    assert rates == (100.0, 100.0)


def test_a_rate_over_no_time_is_zero() -> None:
    """Two samples at the same instant give no rate rather than a division by zero."""
    meter = RateMeter()
    meter.add(5.0, 10)
    assert meter.add(5.0, 20) == (0.0,)


def test_every_event_out_exactly_once_is_ok() -> None:
    """One output per event sent: nothing missing, nothing doubled, verdict OK."""
    ledger = Ledger()
    for i in range(5):
        ledger.sent(f"e{i}", "valid")
    ledger.sent("bad", "bad_json")
    for i in range(5):
        ledger.seen(decision(f"e{i}", latency_ms=10.0 * (i + 1)), now=1.0)
    ledger.seen(dead_letter("bad", "decode"), now=1.0)

    snap = ledger.snapshot(1.0, totals=True)

    assert (snap.sent, snap.answered, snap.outstanding, snap.duplicates) == (6, 6, 0, 0)
    assert snap.verdict.ok
    assert snap.decisions == {"APPROVE": 5}
    assert snap.dead_letters == {"decode": 1}
    assert (snap.malformed_sent, snap.malformed_as_expected) == (1, 1)
    assert (snap.total_latency_p50_ms, snap.total_latency_p99_ms) == (30.0, 50.0)


def test_a_missing_output_fails_the_verdict() -> None:
    """An event sent and acknowledged but never answered is counted missing."""
    ledger = Ledger()
    ledger.sent("a", "valid")
    ledger.sent("b", "valid")
    ledger.seen(decision("a"), now=0.0)

    result = ledger.snapshot(0.0).verdict

    assert (result.produced, result.answered, result.missing) == (2, 1, 1)
    assert not result.ok


def test_a_second_output_for_one_event_is_a_duplicate_and_counted_once() -> None:
    """A repeated event id is a duplicate: the verdict fails and the tallies do not move."""
    ledger = Ledger()
    ledger.sent("a", "valid")
    ledger.seen(decision("a", "REVIEW"), now=0.0)
    ledger.seen(decision("a", "DECLINE"), now=0.0)

    snap = ledger.snapshot(0.0)

    assert snap.duplicates == 1
    assert snap.decisions == {"REVIEW": 1}
    assert not snap.verdict.ok


def test_outputs_of_events_not_sent_here_are_set_aside() -> None:
    """An output for an unknown event id (another producer's) is foreign, not a duplicate."""
    ledger = Ledger()
    ledger.sent("a", "valid")
    ledger.seen(decision("a"), now=0.0)
    ledger.seen(decision("someone-else"), now=0.0)
    ledger.seen(dead_letter(None, "decode"), now=0.0)

    snap = ledger.snapshot(0.0)

    assert (snap.foreign, snap.duplicates) == (2, 0)
    assert snap.verdict.ok


def test_events_the_broker_refused_are_not_expected_but_fail_the_run() -> None:
    """A refused event is not missing (it never reached the processor), yet the run is not OK."""
    ledger = Ledger()
    ledger.sent("a", "valid")
    ledger.sent("b", "valid")
    ledger.not_produced("b")
    ledger.seen(decision("a"), now=0.0)

    result = ledger.snapshot(0.0).verdict

    assert (result.produced, result.not_produced, result.missing) == (1, 1, 0)
    assert not result.ok


def test_fallbacks_and_stages_are_tallied_and_wrong_stages_noticed() -> None:
    """Fallback reasons and dead-letter stages are counted; a malformed record at another
    stage than its kind calls for is not counted as expected."""
    ledger = Ledger()
    kinds: list[tuple[str, Any]] = [
        ("f1", "valid"),
        ("f2", "valid"),
        ("m1", "empty"),
        ("m2", "empty"),
    ]
    for event_id, kind in kinds:
        ledger.sent(event_id, kind)
    ledger.seen(decision("f1", "REVIEW", fallback_reason="over_budget"), now=0.0)
    ledger.seen(decision("f2", "REVIEW", fallback_reason="deadline"), now=0.0)
    ledger.seen(dead_letter("m1", "decode"), now=0.0)
    ledger.seen(dead_letter("m2", "validate"), now=0.0)

    snap = ledger.snapshot(0.0)

    assert snap.fallbacks == {"over_budget": 1, "deadline": 1}
    assert snap.dead_letters == {"decode": 1, "validate": 1}
    assert (snap.malformed_sent, snap.malformed_as_expected) == (2, 1)


def test_live_latency_covers_only_the_window() -> None:
    """Live percentiles forget latencies older than the window; the run totals keep them."""
    ledger = Ledger(latency_window_s=10.0)
    ledger.sent("old", "valid")
    ledger.sent("new", "valid")
    ledger.seen(decision("old", latency_ms=500.0), now=100.0)
    ledger.seen(decision("new", latency_ms=20.0), now=108.0)

    early = ledger.snapshot(109.0)
    late = ledger.snapshot(111.0, totals=True)

    assert (early.latency_p50_ms, early.latency_p99_ms) == (20.0, 500.0)
    assert (late.latency_p50_ms, late.latency_p99_ms) == (20.0, 20.0)
    assert late.total_latency_p99_ms == 500.0
    assert ledger.snapshot(200.0).latency_p50_ms is None


def test_verdict_from_counts() -> None:
    """missing is produced minus answered, never negative."""
    assert verdict(sent=10, not_produced=0, answered=10, duplicates=0).ok
    assert verdict(sent=10, not_produced=2, answered=7, duplicates=0).missing == 1
    assert verdict(sent=3, not_produced=0, answered=5, duplicates=0).missing == 0
