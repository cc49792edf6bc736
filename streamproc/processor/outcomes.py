"""From a flight to its one output record: a decision, a fallback decision, or a dead letter.

Which, and why:

- the record cannot be decoded or validated, or the event cannot be mapped to a botInput:
  dead letter (stage decode, validate or map); retrying can never help;
- the event is already past its deadline when its turn comes: fallback, no execute spent;
- every routed API Task answered: the combined decision;
- the deadline came first, no budget slot came free, retries ran out, the circuit is open, or
  the event was predicted not to finish in time: fallback, on time;
- an API Task answered with a permanent error (other 4xx, a rejected refreshed token, an
  output that breaks the contract): dead letter, stage execute.

Decisions are keyed like the input record (the card), so they stay in per-card order on the
decisions topic; dead letters carry the original key, value and headers unchanged. The
outcome remembers what the acknowledgement must count, so metrics move once per output, when
the broker has it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from streamproc.config import Settings
from streamproc.core.deadletters import dead_letter_headers_for, error_class_name, safe_message
from streamproc.core.decisions import (
    HEADER_EVENT_ID,
    DecisionRecord,
    FallbackReason,
    SourceRef,
    correction_json,
    decide,
)
from streamproc.core.decisions import fallback_decision as fallback_record
from streamproc.core.mapping import TaskVerdict
from streamproc.errors import BadInputError, ControlRoomError, Stage
from streamproc.kafka.records import ConsumedRecord, OutputRecord
from streamproc.logs import get_logger
from streamproc.observability.metrics import Count, ProcessorMetrics
from streamproc.processor.flight import Flight

log = get_logger("processor.outcomes")

OutcomeKind = Literal["decision", "dead_letter"]
HEADER_CORRECTION = "streamproc-correction"


class Outcome:
    """The output record of one input record, and what it counts as once acknowledged."""

    __slots__ = ("decision", "fallback_reason", "kind", "label", "occurred_at_epoch", "record")

    def __init__(
        self,
        record: OutputRecord,
        kind: OutcomeKind,
        label: str,
        fallback_reason: FallbackReason | None = None,
        occurred_at_epoch: float | None = None,
        *,
        decision: DecisionRecord | None = None,
    ) -> None:
        self.record = record
        self.kind = kind
        self.label = label  # the decision (APPROVE, REVIEW, DECLINE) or the dead letter's stage
        self.fallback_reason = fallback_reason
        self.occurred_at_epoch = occurred_at_epoch
        self.decision = decision  # the decision record, for a correction if one is needed


class Outcomes:
    """Builds each flight's output; the decisions themselves are the core's."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self._policy = settings.processing.fallback
        self._combine = settings.routing.combine
        self._decisions_topic = settings.kafka.decisions_topic
        self._dead_letter_topic = settings.kafka.dead_letter_topic
        self._corrections_topic = settings.kafka.corrections_topic

    def decided(self, flight: Flight) -> Outcome:
        """Every work of ``flight`` reported (or the deadline came): its decision."""
        assert flight.event is not None
        assert flight.rule is not None
        record = decide(
            flight.event,
            flight.rule,
            [work.report() for work in flight.works],
            combine=self._combine,
            fallback=self._policy,
            now_epoch=self.clock(),
            source=_source(flight.record),
        )
        return self._decision(flight.record, record)

    def fallback(self, flight: Flight, reason: FallbackReason) -> Outcome:
        """A fallback decided before any work was routed (e.g. expired on arrival)."""
        assert flight.event is not None
        record = fallback_record(
            flight.event,
            reason,
            self.clock(),
            policy=self._policy,
            source=_source(flight.record),
            rule=flight.rule,
            reports=[work.report() for work in flight.works],
        )
        return self._decision(flight.record, record)

    def _decision(self, record: ConsumedRecord, decision: DecisionRecord) -> Outcome:
        output = OutputRecord(
            topic=self._decisions_topic,
            key=record.key,
            value=decision.to_json(),
            headers=decision.headers(),
        )
        return Outcome(
            output,
            "decision",
            decision.decision,
            decision.fallback_reason,
            decision.occurred_at_epoch,
            decision=decision if decision.fallback else None,
        )

    def correction(self, flight: Flight, task: str, verdict: TaskVerdict) -> OutputRecord | None:
        """The correction record for a verdict that came after ``flight``'s fallback; None
        when there is no corrections topic, or the event was not decided by fallback."""
        outcome = flight.outcome
        if self._corrections_topic is None or outcome is None or outcome.decision is None:
            return None
        value = correction_json(outcome.decision, task, verdict, scored_at_epoch=self.clock())
        headers = [
            (HEADER_EVENT_ID, outcome.decision.event_id.encode()),
            (HEADER_CORRECTION, b"true"),
        ]
        return OutputRecord(self._corrections_topic, flight.record.key, value, headers)

    def dead_letter(
        self,
        record: ConsumedRecord,
        error: BaseException,
        *,
        attempts: int = 0,
        stage: Stage | None = None,
        task: str | None = None,
    ) -> Outcome:
        """The original record, unchanged, with the error envelope in its headers."""
        headers = dead_letter_headers_for(
            record.headers,
            error,
            attempts=attempts,
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            now_epoch=self.clock(),
            stage=stage,
        )
        resolved: Stage = stage or (error.stage if isinstance(error, BadInputError) else "execute")
        log.debug(
            "event_dead_lettered",
            partition=record.partition,
            offset=record.offset,
            stage=resolved,
            error_class=error_class_name(error),
            error=safe_message(str(error)),
            http_status=error.status if isinstance(error, ControlRoomError) else None,
            task=task,
            attempts=attempts,
        )
        output = OutputRecord(
            topic=self._dead_letter_topic,
            key=record.key,
            value=record.value,
            headers=headers,
        )
        return Outcome(output, "dead_letter", resolved)


class OutcomeCounts:
    """Counts acknowledged outcomes into the metrics; label children are looked up once."""

    def __init__(self, metrics: ProcessorMetrics) -> None:
        self._metrics = metrics
        self._decided: dict[tuple[str, bool], Count] = {}
        self._fallbacks: dict[str, Count] = {}
        self._dead_letters: dict[str, Count] = {}
        self._latency = metrics.decision_latency.children[()]

    def count(self, outcome: Outcome, now: float) -> None:
        m = self._metrics
        if outcome.kind == "dead_letter":
            child = self._dead_letters.get(outcome.label)
            if child is None:
                child = self._dead_letters[outcome.label] = m.dead_letters.labels(outcome.label)
            child.inc()
            return
        reason = outcome.fallback_reason
        key = (outcome.label, reason is not None)
        decided = self._decided.get(key)
        if decided is None:
            flag = "true" if reason is not None else "false"
            decided = self._decided[key] = m.decided.labels(outcome.label, flag)
        decided.inc()
        if reason is not None:
            fallback = self._fallbacks.get(reason)
            if fallback is None:
                fallback = self._fallbacks[reason] = m.fallbacks.labels(reason)
            fallback.inc()
        if outcome.occurred_at_epoch is not None:
            self._latency.observe(max(0.0, now - outcome.occurred_at_epoch))


def _source(record: ConsumedRecord) -> SourceRef:
    return SourceRef(record.topic, record.partition, record.offset)
