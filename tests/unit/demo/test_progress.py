"""The live view and the summary: wording, figures and the terminal redraw."""

from __future__ import annotations

import io
from typing import Any

import pytest

from streamproc.demo.ledger import Snapshot
from streamproc.demo.progress import (
    LiveView,
    ProcessorView,
    Summary,
    Tick,
    breakdown,
    clock,
    live_line,
    live_lines,
    ms,
    rate,
    share,
    summary_lines,
)


def snapshot(**overrides: Any) -> Snapshot:
    fields: dict[str, Any] = {
        "sent": 1000,
        "not_produced": 0,
        "answered": 1000,
        "duplicates": 0,
        "foreign": 0,
        "decisions": {"APPROVE": 800, "REVIEW": 150, "DECLINE": 30},
        "fallbacks": {"over_budget": 3},
        "dead_letters": {"decode": 12, "validate": 8},
        "malformed_sent": 20,
        "malformed_as_expected": 20,
        "latency_p50_ms": 23.4,
        "latency_p99_ms": 181.0,
        "total_latency_p50_ms": 25.0,
        "total_latency_p99_ms": 190.0,
    }
    return Snapshot(**(fields | overrides))


def tick(**overrides: Any) -> Tick:
    fields: dict[str, Any] = {
        "elapsed_s": 75.0,
        "phase": "running",
        "snapshot": snapshot(),
        "produced_per_s": 200.4,
        "processed_per_s": 198.6,
        "processor": ProcessorView(in_flight=12, budgets=[("fraud", 5, 8)]),
    }
    return Tick(**(fields | overrides))


def test_number_formatting() -> None:
    """Shares to one decimal, latencies to a useful precision, clocks as mm:ss or h:mm:ss."""
    assert share(150, 980) == "15.3%"
    assert share(1, 0) == "-"
    assert (ms(None), ms(7.25), ms(181.4)) == ("-", "7.2 ms", "181 ms")
    assert (clock(75), clock(3725)) == ("01:15", "1:02:05")
    assert (rate(1000, 4.0), rate(5, 0.0)) == (250.0, 0.0)


def test_breakdown_lists_the_given_order_first_then_by_count() -> None:
    """Known keys keep their order; the rest follow by count; empty gives no text."""
    counts = {"DECLINE": 3, "x": 1, "APPROVE": 10, "y": 5}
    assert breakdown(counts, ("APPROVE", "REVIEW", "DECLINE")) == (
        "APPROVE 10 · DECLINE 3 · y 5 · x 1"
    )
    assert breakdown({"a": 1, "b": 3}, shares=True) == "b 3 (75.0%) · a 1 (25.0%)"
    assert breakdown({}) == ""


def test_live_view_shows_rates_outcomes_budget_and_latency() -> None:
    """The live block names every figure the demo promises, with its value."""
    text = "\n".join(live_lines(tick()))
    assert "running · 01:15 · Ctrl-C to stop" in text
    assert "200/s" in text
    assert "199/s" in text
    assert "APPROVE 800 (81.6%) · REVIEW 150 (15.3%) · DECLINE 30 (3.1%)" in text
    assert "over_budget 3" in text
    assert "decode 12 · validate 8" in text
    assert "in flight 12 · API Task fraud: 5/8 slots" in text
    assert "p50 23.4 ms · p99 181 ms" in text


def test_live_view_names_decisions_not_seen_yet_and_backpressure() -> None:
    """All three decisions always appear; a paused intake is said in words."""
    quiet = tick(
        snapshot=snapshot(decisions={}, fallbacks={}, dead_letters={}),
        processor=ProcessorView(in_flight=1000, paused=True),
    )
    text = "\n".join(live_lines(quiet))
    assert "APPROVE 0 (-) · REVIEW 0 (-) · DECLINE 0 (-)" in text
    assert "intake paused: backpressure" in text


def test_plain_line_is_one_line_with_the_same_figures() -> None:
    """Without a terminal, one line carries the counts, latency and budget."""
    line = live_line(tick())
    assert "\n" not in line
    assert line.startswith("[01:15] running: produced 1000 (200/s), processed 1000 (199/s)")
    assert "APPROVE 800 REVIEW 150 DECLINE 30" in line
    assert "p50 23.4 ms, p99 181 ms" in line
    assert "API Task fraud: 5/8 slots" in line


def test_summary_of_a_clean_run_says_ok() -> None:
    """A run with nothing missing or doubled ends with OK, its figures and the log path."""
    lines = summary_lines(
        Summary(snapshot(), elapsed_s=5.0, producing_s=4.8, log_path=".demo/demo.log")
    )
    text = "\n".join(lines)
    assert "produced      1,000 (of them malformed on purpose: 20)" in text
    assert "decisions     980: APPROVE 800 (81.6%)" in text
    assert "fallbacks     3: over_budget 3" in text
    assert "dead letters  20: decode 12 · validate 8 (20 of 20 malformed" in text
    assert "duplicates    0" in text
    assert "missing       0" in text
    assert "throughput    200.0 events/s processed" in text
    assert "p50 25.0 ms · p99 190 ms" in text
    assert lines[-2] == "  result        OK: every produced event came out exactly once"
    assert lines[-1] == "  log           .demo/demo.log"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"answered": 997}, "FAILED: 3 missing, 0 duplicated, 0 not produced"),
        ({"duplicates": 2}, "FAILED: 0 missing, 2 duplicated, 0 not produced"),
        ({"not_produced": 1, "answered": 999}, "FAILED: 0 missing, 0 duplicated, 1 not produced"),
    ],
)
def test_summary_of_a_lossy_run_says_failed(overrides: dict[str, int], expected: str) -> None:
    """Missing, duplicated or refused events turn the result into FAILED with the counts."""
    lines = summary_lines(Summary(snapshot(**overrides), elapsed_s=5.0, producing_s=5.0))
    assert lines[-1] == f"  result        {expected}"


def test_summary_lists_problems_and_quiet_sections_stay_short() -> None:
    """Problems get a line each; a section with nothing in it shows just its zero."""
    lines = summary_lines(
        Summary(
            snapshot(fallbacks={}),
            elapsed_s=1.0,
            producing_s=1.0,
            problems=("the processor stopped: boom",),
        )
    )
    assert "  fallbacks     0" in lines
    assert "  problem       the processor stopped: boom" in lines


def test_terminal_view_redraws_in_place() -> None:
    """On a terminal the second frame first moves up over the first and clears it."""
    out = io.StringIO()
    view = LiveView(out, tty=True)
    view.show(tick())
    first = out.getvalue()
    view.show(tick(elapsed_s=76.0))
    second = out.getvalue()[len(first) :]
    rows = len(live_lines(tick()))
    assert not first.startswith("\x1b[")
    assert second.startswith(f"\x1b[{rows}F\x1b[J")
    assert second.count("\n") == rows


def test_a_message_is_not_overwritten_by_the_next_frame() -> None:
    """A message printed between frames stays: the next frame does not move up over it."""
    out = io.StringIO()
    view = LiveView(out, tty=True)
    view.show(tick())
    view.message("hello")
    before = len(out.getvalue())
    view.show(tick())
    assert not out.getvalue()[before:].startswith("\x1b[")


def test_plain_view_appends_one_line_per_frame() -> None:
    """Without a terminal there are no escape codes, one line per frame."""
    out = io.StringIO()
    view = LiveView(out, tty=False)
    view.show(tick())
    view.show(tick())
    assert "\x1b" not in out.getvalue()
    assert out.getvalue().count("\n") == 2
