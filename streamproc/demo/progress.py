"""What the demo shows: the live view, refreshed about once a second, and the final summary.

The text is built by pure functions from a ledger :class:`~streamproc.demo.ledger.Snapshot`
and a few numbers from the processor, so its maths and wording are tested by direct calls.
:class:`LiveView` writes it: on a terminal it redraws a compact block in place (ANSI cursor
movement); elsewhere (a pipe, a CI log) it prints one plain line per update instead.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, TextIO

from streamproc.demo.ledger import LATENCY_WINDOW_S, Snapshot

DECISION_ORDER: Final = ("APPROVE", "REVIEW", "DECLINE")
_UP_AND_CLEAR: Final = "\x1b[{n}F\x1b[J"  # to the start of the line n up, clear below


@dataclass(frozen=True, slots=True)
class ProcessorView:
    """The processor's own gauges: events in flight, and API Task slots in use of the budget."""

    in_flight: int
    paused: bool = False
    budgets: Sequence[tuple[str, int, int]] = ()  # (API Task, in flight, limit)


@dataclass(frozen=True, slots=True)
class Tick:
    """Everything one frame of the live view shows."""

    elapsed_s: float
    phase: str
    snapshot: Snapshot
    produced_per_s: float
    processed_per_s: float
    processor: ProcessorView | None = None


@dataclass(frozen=True, slots=True)
class Summary:
    """The end of a run, for :func:`summary_lines`."""

    snapshot: Snapshot  # taken with totals=True
    elapsed_s: float
    producing_s: float
    log_path: str | None = None
    problems: Sequence[str] = field(default_factory=tuple)


def count(n: int) -> str:
    return f"{n:,}"


def share(part: int, whole: int) -> str:
    """``part`` as a percentage of ``whole``, one decimal; "-" when there is no whole."""
    return "-" if whole <= 0 else f"{100 * part / whole:.1f}%"


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms"


def rate(events: int, seconds: float) -> float:
    """Events per second; 0 for a span too short to measure."""
    return events / seconds if seconds > 0 else 0.0


def clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def breakdown(counts: Mapping[str, int], order: Iterable[str] = (), *, shares: bool = False) -> str:
    """``a 3 · b 1``: the given order first, then the rest by count; "" when empty."""
    known = [k for k in order if k in counts]
    rest = sorted((k for k in counts if k not in known), key=lambda k: (-counts[k], k))
    total = sum(counts.values())
    parts = []
    for key in [*known, *rest]:
        text = f"{key} {count(counts[key])}"
        if shares:
            text += f" ({share(counts[key], total)})"
        parts.append(text)
    return " · ".join(parts)


def decisions_text(snapshot: Snapshot) -> str:
    counts = {d: snapshot.decisions.get(d, 0) for d in DECISION_ORDER} | dict(snapshot.decisions)
    return breakdown(counts, DECISION_ORDER, shares=True)


def processor_text(view: ProcessorView | None) -> str:
    if view is None:
        return ""
    text = f"in flight {count(view.in_flight)}"
    if view.paused:
        text += " (intake paused: backpressure)"
    for name, in_flight, limit in view.budgets:
        text += f" · API Task {name}: {in_flight}/{limit} slots"
    return text


def live_lines(tick: Tick) -> list[str]:
    """The live view: a header and five labelled rows."""
    snap = tick.snapshot
    decided = sum(snap.decisions.values())
    dead = sum(snap.dead_letters.values())
    fallbacks = sum(snap.fallbacks.values())
    hint = " · Ctrl-C to stop" if tick.phase == "running" else ""
    lines = [
        f"streamproc demo · {tick.phase} · {clock(tick.elapsed_s)}{hint}",
        f"  produced     {count(snap.sent):>9}  {tick.produced_per_s:7.0f}/s"
        f"   malformed on purpose {count(snap.malformed_sent)}",
        f"  processed    {count(snap.answered):>9}  {tick.processed_per_s:7.0f}/s"
        f"   {processor_text(tick.processor)}",
        f"  decisions    {count(decided):>9}   {decisions_text(snap)}",
        f"  fallbacks    {count(fallbacks):>9}   {breakdown(snap.fallbacks)}",
        f"  dead letters {count(dead):>9}   {breakdown(snap.dead_letters)}",
        f"  latency      p50 {ms(snap.latency_p50_ms)} · p99 {ms(snap.latency_p99_ms)}"
        f"   (occurred_at to decision, last {LATENCY_WINDOW_S:.0f} s)",
    ]
    return [line.rstrip() for line in lines]


def live_line(tick: Tick) -> str:
    """The live view as one plain line, for logs and pipes."""
    snap = tick.snapshot
    decisions = " ".join(f"{d} {snap.decisions.get(d, 0)}" for d in DECISION_ORDER)
    line = (
        f"[{clock(tick.elapsed_s)}] {tick.phase}: produced {snap.sent} "
        f"({tick.produced_per_s:.0f}/s), processed {snap.answered} "
        f"({tick.processed_per_s:.0f}/s); {decisions}; "
        f"fallbacks {sum(snap.fallbacks.values())}; "
        f"dead letters {sum(snap.dead_letters.values())}; "
        f"p50 {ms(snap.latency_p50_ms)}, p99 {ms(snap.latency_p99_ms)}"
    )
    if tick.processor is not None:
        line += f"; {processor_text(tick.processor)}"
    return line


def summary_lines(summary: Summary) -> list[str]:
    """The final report; the last lines say whether anything was lost, and where the log is."""
    snap = summary.snapshot
    result = snap.verdict
    decided = sum(snap.decisions.values())
    dead = sum(snap.dead_letters.values())
    throughput = rate(snap.answered, summary.elapsed_s)
    lines = [
        "streamproc demo: summary",
        f"  run time      {summary.elapsed_s:.1f} s (producing for {summary.producing_s:.1f} s)",
        f"  produced      {count(result.produced)}"
        f" (of them malformed on purpose: {count(snap.malformed_sent)})",
    ]
    if result.not_produced:
        lines.append(f"  not produced  {count(result.not_produced)} (the broker refused them)")
    lines += [
        f"  decisions     {count(decided)}: {decisions_text(snap)}",
        f"  fallbacks     {_labelled(sum(snap.fallbacks.values()), snap.fallbacks)}",
        f"  dead letters  {_labelled(dead, snap.dead_letters)}"
        f" ({count(snap.malformed_as_expected)} of {count(snap.malformed_sent)}"
        " malformed records at their expected stage)",
        f"  duplicates    {count(result.duplicates)}",
        f"  missing       {count(result.missing)}",
        f"  throughput    {throughput:.1f} events/s processed",
        f"  latency       p50 {ms(snap.total_latency_p50_ms)} · p99"
        f" {ms(snap.total_latency_p99_ms)} (occurred_at to decision, all decisions)",
    ]
    if snap.foreign:
        lines.append(f"  other outputs {count(snap.foreign)} (events this run did not send)")
    lines += [f"  problem       {problem}" for problem in summary.problems]
    if result.ok:
        lines.append("  result        OK: every produced event came out exactly once")
    else:
        lines.append(
            f"  result        FAILED: {count(result.missing)} missing,"
            f" {count(result.duplicates)} duplicated, {count(result.not_produced)} not produced"
        )
    if summary.log_path:
        lines.append(f"  log           {summary.log_path}")
    return lines


def _labelled(total: int, counts: Mapping[str, int]) -> str:
    detail = breakdown(counts)
    return f"{count(total)}: {detail}" if detail else count(total)


class LiveView:
    """Writes frames to ``stream``: redrawn in place on a terminal, else one line each."""

    def __init__(self, stream: TextIO, *, tty: bool | None = None) -> None:
        self._stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self._drawn = 0

    def show(self, tick: Tick) -> None:
        if not self.tty:
            self._stream.write(live_line(tick) + "\n")
            self._stream.flush()
            return
        # A line wider than the terminal would wrap and break the count of lines to redraw.
        width = max(20, shutil.get_terminal_size().columns - 1)
        frame = [line[:width] for line in live_lines(tick)]
        prefix = _UP_AND_CLEAR.format(n=self._drawn) if self._drawn else ""
        self._stream.write(prefix + "\n".join(frame) + "\n")
        self._stream.flush()
        self._drawn = len(frame)

    def message(self, text: str) -> None:
        """A line that stays: printed below the frame, which is drawn afresh after it."""
        self._stream.write(text + "\n")
        self._stream.flush()
        self._drawn = 0
