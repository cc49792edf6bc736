"""What the processor holds per event in flight, from intake to its acknowledged output.

A :class:`Flight` is one consumed record: its decoded event, its deadline, and one
:class:`Work` per API Task that scores it. Both are slotted classes with plain attributes: one
of each is made per event, and nothing else is (no task, timer, future or lock per event).
A flight is *settled* once its output (decision or dead letter) is chosen; from then on any
work still running is late, and its result is counted and dropped.

With tracing on, a flight also holds its :class:`Trace` (the spans of its stages), which the
stages report to; off, it is None and each stage tests only that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

from streamproc.core.decisions import FallbackReason, TaskReport
from streamproc.core.mapping import TaskVerdict

if TYPE_CHECKING:
    from streamproc.core.events import TransactionEvent
    from streamproc.errors import ControlRoomError
    from streamproc.kafka.records import ConsumedRecord
    from streamproc.processor.outcomes import Outcome

WorkState = Literal["waiting", "executing", "backoff", "done", "failed"]


class Trace(Protocol):
    """One event's spans, told of each stage as it happens
    (:class:`streamproc.observability.tracing.EventTrace`)."""

    def waiting(self, work: Work) -> None: ...
    def gave_up(self, work: Work, reason: FallbackReason) -> None: ...
    def executing(self, work: Work, headers: dict[str, str]) -> None: ...
    def executed(self, work: Work, error: ControlRoomError | None) -> None: ...
    def publishing(self, flight: Flight, outcome: Outcome) -> None: ...
    def acknowledged(self, error: BaseException | None) -> None: ...


class Tracer(Protocol):
    """Starts the trace of each consumed record (sets :attr:`Flight.trace`)."""

    def consumed(self, flight: Flight) -> None: ...


class Flight:
    """One consumed record on its way to exactly one output."""

    __slots__ = (
        "deadline",
        "event",
        "gated",
        "open",
        "outcome",
        "record",
        "rule",
        "settled",
        "trace",
        "works",
    )

    def __init__(self, record: ConsumedRecord) -> None:
        self.record = record
        self.event: TransactionEvent | None = None
        self.deadline = float("inf")  # epoch seconds; known once decoded
        self.works: tuple[Work, ...] = ()
        self.open = 0  # works not finished yet
        self.rule: str | None = None
        self.gated = False  # holds its key's lane until its output is handed over
        self.settled = False
        self.outcome: Outcome | None = None  # the output, once settled
        self.trace: Trace | None = None  # its spans, when tracing is on


class Work:
    """One API Task's part in scoring one event: queued, executed, retried, answered."""

    __slots__ = (
        "abandoned",
        "attempts",
        "body",
        "error",
        "failure",
        "flight",
        "latency_s",
        "state",
        "task",
        "verdict",
    )

    def __init__(self, flight: Flight, task: str, body: bytes) -> None:
        self.flight = flight
        self.task = task
        self.body = body  # the execute request's JSON body, built once
        self.state: WorkState = "waiting"
        self.attempts = 0
        self.latency_s = 0.0
        self.verdict: TaskVerdict | None = None
        self.error: Exception | None = None
        self.failure: FallbackReason | None = None
        self.abandoned = False  # its flight was settled while it ran: the result is late

    @property
    def deadline(self) -> float:
        return self.flight.deadline

    @property
    def waiting(self) -> bool:
        """In a queue and still wanted: not settled, not revoked."""
        return self.state == "waiting" and not self.flight.settled

    def report(self) -> TaskReport:
        """What the decision says about this task."""
        return TaskReport(
            task=self.task,
            verdict=self.verdict,
            attempts=self.attempts,
            latency_ms=self.latency_s * 1000 if self.attempts else None,
            failure=None if self.verdict is not None else (self.failure or "deadline"),
        )
