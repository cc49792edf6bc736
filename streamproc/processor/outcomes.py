"""From a consumed record to its one output: a decision, a fallback decision, or a dead letter.

Which, and why:

- the record cannot be decoded or validated, or the event cannot be mapped to a botInput:
  dead letter (stage decode, validate or map); retrying can never help;
- the event is already past its deadline on arrival: fallback at once, no execute spent;
- every routed API Task answered: the combined decision;
- the deadline came first, no budget slot came free, or retries ran out: fallback on time;
- an API Task answered with a permanent error (other 4xx, a rejected refreshed token, an
  output that breaks the contract): dead letter, stage execute.

Decisions are keyed like the input record (the card), so they stay in per-card order on the
decisions topic; dead letters carry the original key, value and headers unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client import Counter

from streamproc.config import Settings
from streamproc.controlroom.values import BotValue
from streamproc.core.deadletters import dead_letter_headers_for, error_class_name, safe_message
from streamproc.core.deadlines import classify_on_arrival, event_deadline
from streamproc.core.decisions import (
    DecisionRecord,
    FallbackReason,
    SourceRef,
    TaskReport,
    decide,
    fallback_decision,
)
from streamproc.core.events import TransactionEvent
from streamproc.core.mapping import map_bot_input
from streamproc.errors import BadInputError, ControlRoomError, Stage
from streamproc.kafka.records import ConsumedRecord, OutputRecord
from streamproc.logs import get_logger
from streamproc.observability.metrics import ProcessorMetrics
from streamproc.processor.scoring import EventScorer, Failed, TaskProgress

log = get_logger("processor.outcomes")


@dataclass(frozen=True, slots=True)
class Outcome:
    """The output record of one input record, and what it means for metrics and logs."""

    record: OutputRecord
    kind: Literal["decision", "dead_letter"]
    label: str  # the decision (APPROVE, REVIEW, DECLINE) or the dead letter's stage
    fallback_reason: FallbackReason | None = None
    occurred_at_epoch: float | None = None


class Decider:
    """Builds each event's outcome; pure decisions from the core, scoring from the scorer."""

    def __init__(
        self,
        settings: Settings,
        scorer: EventScorer,
        metrics: ProcessorMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.scorer = scorer
        self.metrics = metrics
        self.clock = clock
        proc = settings.processing
        self._sla_s = proc.decision_sla_ms / 1000
        self._min_useful_s = proc.min_useful_ms / 1000
        self._skew_s = proc.clock_skew_tolerance_ms / 1000
        self._mappings = {t.name: t.mapping for t in settings.api_tasks}
        self._decided: dict[tuple[str, str], Counter] = {}

    async def decide(self, record: ConsumedRecord, event: TransactionEvent) -> Outcome:
        now = self.clock()
        source = SourceRef(record.topic, record.partition, record.offset)
        policy = self.settings.processing.fallback
        arrival = classify_on_arrival(
            event, self._sla_s, now, self._min_useful_s, future_tolerance_s=self._skew_s
        )
        if arrival == "expired":
            expired = fallback_decision(
                event, "expired_on_arrival", now, policy=policy, source=source
            )
            return self._decision(record, expired)
        deadline = event_deadline(event, self._sla_s, now, future_tolerance_s=self._skew_s)
        route = self.settings.routing.route(event)
        try:
            inputs: dict[str, dict[str, BotValue]] = {
                name: map_bot_input(event, self._mappings[name]) for name in route.tasks
            }
        except BadInputError as exc:
            return self.dead_letter(record, exc)
        scored = await self.scorer.score(inputs, deadline, {"X-Request-Id": event.event_id})
        if isinstance(scored, Failed):
            attempts = sum(p.attempts for p in scored.progress)
            return self.dead_letter(
                record, scored.error, attempts=attempts, stage="execute", task=scored.task
            )
        record_out = decide(
            event,
            route.rule,
            _reports(scored.progress),
            combine=self.settings.routing.combine,
            fallback=policy,
            now_epoch=self.clock(),
            source=source,
        )
        return self._decision(record, record_out)

    def _decision(self, record: ConsumedRecord, decision: DecisionRecord) -> Outcome:
        output = OutputRecord(
            topic=self.settings.kafka.decisions_topic,
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
        )

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
        log.warning(
            "event_dead_lettered",
            stage=resolved,
            error_class=error_class_name(error),
            error=safe_message(str(error)),
            http_status=error.status if isinstance(error, ControlRoomError) else None,
            task=task,
            attempts=attempts,
        )
        output = OutputRecord(
            topic=self.settings.kafka.dead_letter_topic,
            key=record.key,
            value=record.value,
            headers=headers,
        )
        return Outcome(output, "dead_letter", resolved)

    def acknowledged(self, outcome: Outcome, now: float) -> None:
        """The broker has the output: count it."""
        if outcome.kind == "dead_letter":
            self.metrics.dead_letters.labels(outcome.label).inc()
            return
        fallback = outcome.fallback_reason is not None
        key = (outcome.label, "true" if fallback else "false")
        decided = self._decided.get(key)
        if decided is None:
            decided = self._decided[key] = self.metrics.decided.labels(*key)
        decided.inc()
        if outcome.fallback_reason is not None:
            self.metrics.fallbacks.labels(outcome.fallback_reason).inc()
            log.info("event_fallback", reason=outcome.fallback_reason, decision=outcome.label)
        if outcome.occurred_at_epoch is not None:
            self.metrics.decision_latency.observe(max(0.0, now - outcome.occurred_at_epoch))


def _reports(progress: Sequence[TaskProgress]) -> list[TaskReport]:
    return [
        TaskReport(
            task=p.name,
            verdict=p.verdict,
            attempts=p.attempts,
            latency_ms=p.latency_s * 1000 if p.attempts else None,
            failure=None if p.verdict is not None else (p.failure or "deadline"),
        )
        for p in progress
    ]
