"""End-to-end accounting by event id: what was sent, what came out, what is missing or doubled.

This is the check a fraud analyst would make: every transaction sent must come out exactly once,
as a decision or as a dead letter. The ledger is fed from two threads (the sample producer and
the output reader) and read by the live view, so every method takes one lock; the maths
(percentiles, rates, the verdict) is plain functions and values, tested by direct calls.
Time is passed in (monotonic seconds), never read here.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from array import array
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from streamproc.demo.generator import EXPECTED_STAGE, MalformedKind, SampleKind

LATENCY_WINDOW_S = 10.0


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``values``; None when empty.

    Nearest rank always answers a value that was measured, never an interpolation.
    """
    if not 0 < q <= 100:
        raise ValueError("q must be in (0, 100]")
    if not values:
        return None
    ordered = sorted(values)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


class RateMeter:
    """Per-second rates of growing counters, over the last ``window_s`` seconds."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, tuple[int, ...]]] = deque()

    def add(self, now: float, *counters: int) -> tuple[float, ...]:
        """Record the counters at ``now``; return their rates over the window (0 at first)."""
        self._samples.append((now, counters))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window_s:
            self._samples.popleft()
        first_t, first = self._samples[0]
        span = now - first_t
        if span <= 0:
            return tuple(0.0 for _ in counters)
        return tuple((c - f) / span for c, f in zip(counters, first, strict=True))


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether every event sent came out exactly once."""

    produced: int  # acknowledged by the broker
    not_produced: int  # refused by the broker: never reached the processor
    answered: int
    missing: int
    duplicates: int

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.duplicates == 0 and self.not_produced == 0


def verdict(sent: int, not_produced: int, answered: int, duplicates: int) -> Verdict:
    """The verdict from counts: ``answered`` counts distinct produced events with an output."""
    produced = sent - not_produced
    return Verdict(
        produced=produced,
        not_produced=not_produced,
        answered=answered,
        missing=max(0, produced - answered),
        duplicates=duplicates,
    )


@dataclass(frozen=True, slots=True)
class Output:
    """One decision or dead letter, reduced to what is counted and shown."""

    kind: Literal["decision", "dead_letter"]
    event_id: str | None
    decision: str | None = None
    score: str | None = None
    fallback_reason: str | None = None
    latency_ms: float | None = None
    reasons: tuple[str, ...] = ()
    stage: str | None = None
    error_class: str | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The ledger at one moment."""

    sent: int
    not_produced: int
    answered: int
    duplicates: int
    foreign: int  # outputs of events this run did not send
    decisions: Mapping[str, int]
    fallbacks: Mapping[str, int]
    dead_letters: Mapping[str, int]
    malformed_sent: int
    malformed_as_expected: int  # dead-lettered at the stage their kind calls for
    latency_p50_ms: float | None  # over the last LATENCY_WINDOW_S
    latency_p99_ms: float | None
    total_latency_p50_ms: float | None = None  # over the whole run (only when asked)
    total_latency_p99_ms: float | None = None
    last_output_at: float | None = None

    @property
    def outstanding(self) -> int:
        return max(0, self.sent - self.not_produced - self.answered)

    @property
    def verdict(self) -> Verdict:
        return verdict(self.sent, self.not_produced, self.answered, self.duplicates)


@dataclass(slots=True)
class _Tally:
    decisions: Counter[str] = field(default_factory=Counter)
    fallbacks: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)


class Ledger:
    """Every event sent and every output seen, by event id. Thread-safe."""

    def __init__(self, latency_window_s: float = LATENCY_WINDOW_S) -> None:
        self._lock = threading.Lock()
        self._window_s = latency_window_s
        self._outputs: dict[str, int] = {}  # event id -> outputs seen
        self._malformed: dict[str, MalformedKind] = {}
        self._not_produced: set[str] = set()
        self._answered = 0
        self._duplicates = 0
        self._foreign = 0
        self._as_expected = 0
        self._tally = _Tally()
        self._window: deque[tuple[float, float]] = deque()
        self._latencies = array("f")
        self._last_output_at: float | None = None

    def sent(self, event_id: str, kind: SampleKind) -> None:
        """Record an event about to be produced (before the output can possibly arrive)."""
        with self._lock:
            self._outputs.setdefault(event_id, 0)
            if kind != "valid":
                self._malformed[event_id] = kind

    def not_produced(self, event_id: str) -> None:
        """The broker refused the event: it is not expected to come out."""
        with self._lock:
            self._not_produced.add(event_id)

    def seen(self, output: Output, now: float) -> None:
        """Count one output read from the decisions or dead-letter topic."""
        with self._lock:
            self._last_output_at = now
            count = self._outputs.get(output.event_id or "")
            if count is None:
                self._foreign += 1
                return
            self._outputs[output.event_id or ""] = count + 1
            if count >= 1:
                self._duplicates += 1
                return
            if output.event_id not in self._not_produced:
                self._answered += 1
            self._count(output, now)

    def _count(self, output: Output, now: float) -> None:
        tally = self._tally
        expected_stage = None
        kind = self._malformed.get(output.event_id or "")
        if kind is not None:
            expected_stage = EXPECTED_STAGE[kind]
        if output.kind == "dead_letter":
            tally.dead_letters[output.stage or "unknown"] += 1
            if expected_stage is not None and output.stage == expected_stage:
                self._as_expected += 1
            return
        tally.decisions[output.decision or "unknown"] += 1
        if output.fallback_reason:
            tally.fallbacks[output.fallback_reason] += 1
        if output.latency_ms is not None:
            self._window.append((now, output.latency_ms))
            self._latencies.append(output.latency_ms)

    def snapshot(self, now: float, *, totals: bool = False) -> Snapshot:
        """The counts now; latency percentiles over the window, and the whole run if ``totals``."""
        with self._lock:
            while self._window and now - self._window[0][0] > self._window_s:
                self._window.popleft()
            window = [ms for _, ms in self._window]
            everything: Iterable[float] = self._latencies.tolist() if totals else ()
            tally = self._tally
            snap = Snapshot(
                sent=len(self._outputs),
                not_produced=len(self._not_produced),
                answered=self._answered,
                duplicates=self._duplicates,
                foreign=self._foreign,
                decisions=dict(tally.decisions),
                fallbacks=dict(tally.fallbacks),
                dead_letters=dict(tally.dead_letters),
                malformed_sent=len(self._malformed),
                malformed_as_expected=self._as_expected,
                latency_p50_ms=None,
                latency_p99_ms=None,
                last_output_at=self._last_output_at,
            )
        # Sorting happens outside the lock: the producer and reader threads never wait on it.
        run = list(everything)
        return dataclasses.replace(
            snap,
            latency_p50_ms=percentile(window, 50),
            latency_p99_ms=percentile(window, 99),
            total_latency_p50_ms=percentile(run, 50),
            total_latency_p99_ms=percentile(run, 99),
        )
