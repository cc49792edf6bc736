"""The last outputs the broker acknowledged, for the status page: kept cheaply, read safely.

The processor calls a :class:`RecentOutputs` once per acknowledged output, so keeping one
costs a reference appended to a bounded deque; nothing is parsed, copied or formatted then.
The page reads at most once a second, and only then is each kept output turned into a
:class:`RecentDecision` or :class:`RecentDeadLetter`, from the output record itself.

Only fields that are safe to show leave here: a decision's id, verdict, score, reasons,
fallback reason, latency and source position; a dead letter's stage, error class, message,
HTTP status, attempts and source position. Never an event's value, key or headers, which may
hold a card's details. Dead-letter messages were redacted when the envelope was made
(:func:`streamproc.core.deadletters.safe_message`); they are redacted again here, as text from
elsewhere would be, so a defect upstream cannot put a token on the page.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from streamproc.core.deadletters import PREFIX, safe_message
from streamproc.processor.flight import Flight

# Enough to see what just happened; small enough that reading them all each second is nothing.
RECENT_OUTPUTS = 50
MAX_REASONS = 8
MAX_TEXT_CHARS = 200


@dataclass(frozen=True, slots=True)
class RecentDecision:
    event_id: str
    decision: str
    score: float | None
    reasons: tuple[str, ...]
    fallback_reason: str | None
    latency_ms: float | None
    decided_at: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class RecentDeadLetter:
    event_id: str | None
    stage: str
    error_class: str
    message: str
    http_status: int | None
    attempts: int
    failed_at: str
    partition: int
    offset: int


class RecentOutputs:
    """The last ``size`` decisions and the last ``size`` dead letters, newest last.

    Decisions and dead letters are kept apart: at hundreds of decisions a second, a shared
    buffer would push out a dead letter before anyone could read it.
    """

    def __init__(self, size: int = RECENT_OUTPUTS) -> None:
        self._decisions: deque[Flight] = deque(maxlen=size)
        self._dead_letters: deque[Flight] = deque(maxlen=size)

    def __call__(self, flight: Flight) -> None:
        """One acknowledged output (the processor's ``on_output``)."""
        outcome = flight.outcome
        if outcome is not None:
            kept = self._dead_letters if outcome.kind == "dead_letter" else self._decisions
            kept.append(flight)

    def decisions(self) -> list[RecentDecision]:
        """The kept decisions, newest first."""
        shown = (_decision(flight) for flight in reversed(self._decisions))
        return [decision for decision in shown if decision is not None]

    def dead_letters(self) -> list[RecentDeadLetter]:
        """The kept dead letters, newest first."""
        shown = (_dead_letter(flight) for flight in reversed(self._dead_letters))
        return [letter for letter in shown if letter is not None]


def _decision(flight: Flight) -> RecentDecision | None:
    assert flight.outcome is not None
    try:
        body = orjson.loads(flight.outcome.record.value or b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, Mapping):
        return None
    source = body.get("source")
    source = source if isinstance(source, Mapping) else {}
    reasons = body.get("reasons")
    reasons = reasons if isinstance(reasons, list) else []
    fallback_reason = body.get("fallback_reason")
    return RecentDecision(
        event_id=_text(body.get("event_id")),
        decision=_text(body.get("decision")),
        score=_number(body.get("score")),
        reasons=tuple(_text(reason) for reason in reasons[:MAX_REASONS]),
        fallback_reason=None if fallback_reason is None else _text(fallback_reason),
        latency_ms=_number(body.get("latency_ms")),
        decided_at=_text(body.get("decided_at")),
        partition=_integer(source.get("partition"), flight.record.partition),
        offset=_integer(source.get("offset"), flight.record.offset),
    )


def _dead_letter(flight: Flight) -> RecentDeadLetter:
    assert flight.outcome is not None
    record = flight.record
    envelope: dict[str, str] = {}
    for name, value in flight.outcome.record.headers or ():
        # The last value of a name wins, as Kafka readers take it (a re-driven record carries
        # an earlier envelope before this one).
        if name.startswith(PREFIX) and value is not None:
            envelope[name[len(PREFIX) :]] = value.decode("utf-8", "replace")
    status = envelope.get("http_status")
    return RecentDeadLetter(
        event_id=_text(flight.event.event_id) if flight.event is not None else None,
        stage=flight.outcome.label,
        error_class=_text(envelope.get("class", "")),
        message=safe_message(envelope.get("message", ""), MAX_TEXT_CHARS),
        http_status=int(status) if status is not None and status.isdigit() else None,
        attempts=_integer(envelope.get("attempts"), 0),
        failed_at=_text(envelope.get("failed_at", "")),
        partition=record.partition,
        offset=record.offset,
    )


def _text(value: Any) -> str:
    """Shown text: redacted and short, whatever the value was."""
    return safe_message("" if value is None else str(value), MAX_TEXT_CHARS)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _integer(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
