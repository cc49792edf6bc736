"""Decisions: combining task verdicts, fallback decisions, and the output record and headers.

One event gets exactly one decision record on the output topic, keyed like its input record
(the card), so one card's decisions stay in order on the decisions topic. A record is either
*scored* (every routed task gave a verdict) or a *fallback* (``fallback: true`` with a
``fallback_reason``), decided by :class:`FallbackPolicy` when the scorers could not answer in
time or at all. A fallback never softens a verdict already in hand: if one task said DECLINE
and another timed out, the record says DECLINE.

Combining verdicts of several tasks, in route order:

- ``strictest``: DECLINE > REVIEW > APPROVE; score is the highest; reasons are the union in
  order of first appearance.
- ``highest_score``: the verdict with the highest score (ties go to the stricter decision,
  then to the earlier task; a verdict without a score ranks below any score).
- ``first``: the first task's verdict.

Dead letters are in :mod:`streamproc.core.deadletters`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, Literal, TypeAlias

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from streamproc.core.events import TransactionEvent
from streamproc.core.mapping import Decision, TaskVerdict
from streamproc.core.routing import CombinePolicy
from streamproc.core.values import format_decimal

FallbackReason: TypeAlias = Literal[
    "expired_on_arrival",  # already past (or too close to) its deadline when its turn came
    "infeasible",  # predicted, on arrival, not to finish in time: no slot was spent
    "over_budget",  # no concurrency slot came free in time, or the Control Room said 429
    "deadline",  # an execute started and did not finish by the deadline
    "endpoint_unavailable",  # connection failures, 5xx: retries could not finish in time
    "retries_exhausted",  # every allowed attempt failed with another retryable error
    "circuit_open",  # the endpoint is known to be down; no execute was attempted
]
TaskStatus: TypeAlias = Literal[
    "ok",
    "expired_on_arrival",
    "infeasible",
    "over_budget",
    "deadline",
    "endpoint_unavailable",
    "retries_exhausted",
    "circuit_open",
]

SEVERITY: Final[Mapping[Decision, int]] = {"APPROVE": 0, "REVIEW": 1, "DECLINE": 2}
HEADER_EVENT_ID: Final = "streamproc-event-id"
HEADER_DECISION: Final = "streamproc-decision"
HEADER_FALLBACK: Final = "streamproc-fallback"
HEADER_FALLBACK_REASON: Final = "streamproc-fallback-reason"
HEADER_ATTEMPTS: Final = "streamproc-attempts"
HEADER_RULE: Final = "streamproc-rule"
HEADER_LATENCY_MS: Final = "streamproc-latency-ms"

_FROZEN = ConfigDict(frozen=True, extra="forbid")


def stricter(a: Decision, b: Decision) -> Decision:
    """The stricter of two decisions (DECLINE > REVIEW > APPROVE)."""
    return a if SEVERITY[a] >= SEVERITY[b] else b


class FallbackRule(BaseModel):
    """At or above ``min_amount`` (in absolute value: large refunds count), decide ``decision``."""

    model_config = _FROZEN

    min_amount: Decimal = Field(ge=0, allow_inf_nan=False)
    decision: Decision


class FallbackPolicy(BaseModel):
    """The decision when scoring fails: ``decision``, made stricter by matching amount rules."""

    model_config = _FROZEN

    decision: Decision = "REVIEW"
    rules: tuple[FallbackRule, ...] = ()

    @model_validator(mode="after")
    def _rules_escalate(self) -> FallbackPolicy:
        for i, rule in enumerate(self.rules):
            if SEVERITY[rule.decision] <= SEVERITY[self.decision]:
                raise ValueError(
                    f"rules[{i}] decides {rule.decision}, which is not stricter than the "
                    f"fallback decision {self.decision}; rules can only escalate"
                )
        return self

    def decide(self, amount: Decimal) -> Decision:
        """The fallback decision for an event of ``amount``."""
        magnitude = amount.copy_abs()
        decision = self.decision
        for rule in self.rules:
            if magnitude >= rule.min_amount:
                decision = stricter(decision, rule.decision)
        return decision


@dataclass(slots=True)
class SourceRef:
    """Where the input record was read: its topic, partition and offset."""

    topic: str
    partition: int
    offset: int


@dataclass(slots=True)
class TaskReport:
    """What happened with one routed task: a verdict, or the reason there is none."""

    task: str
    verdict: TaskVerdict | None
    attempts: int
    latency_ms: float | None = None
    failure: FallbackReason | None = None

    def __post_init__(self) -> None:
        if (self.verdict is None) == (self.failure is None):
            raise ValueError("a task report has either a verdict or a failure reason")
        if self.attempts < 0:
            raise ValueError("attempts cannot be negative")

    @property
    def status(self) -> TaskStatus:
        """``"ok"``, or the failure reason."""
        return "ok" if self.failure is None else self.failure

    def to_dict(self) -> dict[str, Any]:
        verdict = self.verdict
        return {
            "status": self.status,
            "decision": verdict.decision if verdict else None,
            "score": _number(verdict.score) if verdict else None,
            "reasons": list(verdict.reasons) if verdict else [],
            "attempts": self.attempts,
            "latency_ms": _ms(self.latency_ms),
        }


@dataclass(slots=True)
class DecisionRecord:
    """The decision for one event, as published on the output topic."""

    event_id: str
    decision: Decision
    score: Decimal | None
    reasons: tuple[str, ...]
    fallback: bool
    fallback_reason: FallbackReason | None
    rule: str | None
    tasks: tuple[TaskReport, ...]
    decided_at_epoch: float
    occurred_at_epoch: float
    source: SourceRef

    @property
    def decided_at(self) -> str:
        """``decided_at_epoch`` as RFC 3339 UTC with milliseconds."""
        return rfc3339_utc(self.decided_at_epoch)

    @property
    def latency_ms(self) -> float:
        """From the event's occurred_at to the decision. Negative only under clock skew."""
        return (self.decided_at_epoch - self.occurred_at_epoch) * 1000.0

    @property
    def attempts(self) -> int:
        """Execute attempts over all tasks."""
        return sum(t.attempts for t in self.tasks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "decision": self.decision,
            "score": _number(self.score),
            "reasons": list(self.reasons),
            "fallback": self.fallback,
            "fallback_reason": self.fallback_reason,
            "rule": self.rule,
            "tasks": {t.task: t.to_dict() for t in self.tasks} if self.tasks else {},
            "decided_at": self.decided_at,
            "latency_ms": _ms(self.latency_ms),
            "source": {
                "topic": self.source.topic,
                "partition": self.source.partition,
                "offset": self.source.offset,
            },
        }

    def to_json(self) -> bytes:
        """The output record value; scores are written as exact JSON numbers."""
        return orjson.dumps(self.to_dict())

    def headers(self) -> list[tuple[str, bytes]]:
        """Output record headers: provenance a consumer can filter on without parsing JSON."""
        headers = [
            (HEADER_EVENT_ID, self.event_id.encode()),
            (HEADER_DECISION, self.decision.encode()),
            (HEADER_FALLBACK, b"true" if self.fallback else b"false"),
        ]
        if self.fallback_reason is not None:
            headers.append((HEADER_FALLBACK_REASON, self.fallback_reason.encode()))
        headers.append((HEADER_ATTEMPTS, str(self.attempts).encode()))
        if self.rule is not None:
            headers.append((HEADER_RULE, self.rule.encode()))
        headers.append((HEADER_LATENCY_MS, f"{self.latency_ms:.3f}".encode()))
        return headers


def combine_verdicts(verdicts: Sequence[TaskVerdict], policy: CombinePolicy) -> TaskVerdict:
    """One verdict from several (in route order), by ``policy``; see the module docstring."""
    if not verdicts:
        raise ValueError("no verdicts to combine")
    if policy == "first" or len(verdicts) == 1:
        return verdicts[0]
    if policy == "highest_score":
        # max() keeps the first of equal keys, which is the earlier task.
        return max(
            verdicts,
            key=lambda v: (v.score is not None, v.score or 0, SEVERITY[v.decision]),
        )
    decision = verdicts[0].decision
    for v in verdicts[1:]:
        decision = stricter(decision, v.decision)
    scores = [v.score for v in verdicts if v.score is not None]
    return TaskVerdict(
        score=max(scores) if scores else None,
        decision=decision,
        reasons=_union(v.reasons for v in verdicts),
    )


def decide(
    event: TransactionEvent,
    rule: str,
    reports: Sequence[TaskReport],
    *,
    combine: CombinePolicy,
    fallback: FallbackPolicy,
    now_epoch: float,
    source: SourceRef,
) -> DecisionRecord:
    """The decision record for an event whose routed tasks have all reported, in route order.

    When every task has a verdict, they are combined by ``combine``. Otherwise the record is
    a fallback whose reason is the first failed task's, decided by ``fallback`` but never
    softer than any verdict that did arrive; the verdicts that arrived keep their reasons.
    """
    if not reports:
        raise ValueError("a decision needs at least one task report")
    verdicts = [r.verdict for r in reports if r.verdict is not None]
    failed = next((r.failure for r in reports if r.failure is not None), None)
    if failed is None:
        combined = combine_verdicts(verdicts, combine)
        return DecisionRecord(
            event_id=event.event_id,
            decision=combined.decision,
            score=combined.score,
            reasons=combined.reasons,
            fallback=False,
            fallback_reason=None,
            rule=rule,
            tasks=tuple(reports),
            decided_at_epoch=now_epoch,
            occurred_at_epoch=event.occurred_at_epoch,
            source=source,
        )
    return fallback_decision(
        event,
        failed,
        now_epoch,
        policy=fallback,
        source=source,
        rule=rule,
        reports=reports,
    )


def fallback_decision(
    event: TransactionEvent,
    reason: FallbackReason,
    now_epoch: float,
    *,
    policy: FallbackPolicy,
    source: SourceRef,
    rule: str | None = None,
    reports: Sequence[TaskReport] = (),
) -> DecisionRecord:
    """A fallback decision record: ``policy``'s decision, escalated by any verdicts in ``reports``.

    ``rule`` is None when the event was never routed (e.g. expired on arrival). The score is
    None: a fallback is a rule, not a measurement.
    """
    decision = policy.decide(event.amount)
    verdicts = [r.verdict for r in reports if r.verdict is not None]
    for verdict in verdicts:
        decision = stricter(decision, verdict.decision)
    return DecisionRecord(
        event_id=event.event_id,
        decision=decision,
        score=None,
        reasons=_union(v.reasons for v in verdicts),
        fallback=True,
        fallback_reason=reason,
        rule=rule,
        tasks=tuple(reports),
        decided_at_epoch=now_epoch,
        occurred_at_epoch=event.occurred_at_epoch,
        source=source,
    )


def rfc3339_utc(epoch: float) -> str:
    """Epoch seconds as RFC 3339 in UTC with milliseconds: ``2026-11-28T18:04:15.250Z``.

    One is written per decision, and consecutive decisions mostly share their second: the
    date and time of the last second seen is kept, so most calls only format milliseconds.
    """
    global _last_second  # noqa: PLW0603 - a one-entry cache, see above
    # Split as datetime.fromtimestamp does: microseconds rounded, then cut to milliseconds.
    frac, whole_f = math.modf(epoch)
    micros = round(frac * 1_000_000)
    whole = int(whole_f)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    elif micros < 0:
        whole, micros = whole - 1, micros + 1_000_000
    millis = micros // 1000
    second, prefix = _last_second
    if whole != second:
        prefix = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second = (whole, prefix)
    return f"{prefix}.{millis:03d}Z"


_last_second: tuple[int, str] = (-1, "")


def _union(groups: Any) -> tuple[str, ...]:
    # dict keeps insertion order, so this is an ordered set.
    return tuple(dict.fromkeys(reason for group in groups for reason in group))


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _number(value: Decimal | None) -> orjson.Fragment | None:
    # A Fragment is written verbatim: the exact digits, as a JSON number.
    return None if value is None else orjson.Fragment(format_decimal(value))


def correction_json(
    decision: DecisionRecord,
    task: str,
    verdict: TaskVerdict,
    *,
    scored_at_epoch: float,
) -> bytes:
    """A correction: the fallback ``decision`` already published for an event, and the
    verdict its API Task gave too late, so an analyst can reconcile the two."""
    return orjson.dumps(
        {
            "event_id": decision.event_id,
            "task": task,
            "fallback": {
                "decision": decision.decision,
                "reason": decision.fallback_reason,
                "decided_at": decision.decided_at,
            },
            "scored": {
                "decision": verdict.decision,
                "score": _number(verdict.score),
                "reasons": list(verdict.reasons),
                "decided_at": rfc3339_utc(scored_at_epoch),
            },
            "source": {
                "topic": decision.source.topic,
                "partition": decision.source.partition,
                "offset": decision.source.offset,
            },
        }
    )
