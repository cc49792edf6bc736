"""Decider: each event's one output, a decision, a fallback decision or a dead letter."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import structlog

from streamproc.config import Settings
from streamproc.core.decisions import FallbackPolicy, FallbackRule
from streamproc.core.events import decode_event
from streamproc.core.mapping import InputVariableSpec, TaskMappingSpec
from streamproc.errors import BadRequestError
from streamproc.kafka.records import ConsumedRecord
from streamproc.observability.metrics import ProcessorMetrics
from streamproc.processor.limiter import AsyncBudget
from streamproc.processor.outcomes import Decider, Outcome
from streamproc.processor.scoring import EventScorer, TaskRunner
from tests.unit.processor.fakes import (
    DECISIONS,
    DLQ,
    T0,
    FakeClock,
    FakeExecutor,
    header,
    make_settings,
    record,
    sample,
    verdict,
)

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJib3QtZGV2In0.c2lnbmF0dXJlLXZhbHVl"
SECRETS = ("sk-live-abcdefgh12345", JWT, "hunter2-Secret", "pa55w0rd-in-url")


class DeciderRig:
    def __init__(self, settings: Settings | None = None, **executors: FakeExecutor) -> None:
        self.settings = settings or make_settings()
        self.clock = FakeClock()
        self.metrics = ProcessorMetrics()
        self.executors = {t.name: FakeExecutor() for t in self.settings.api_tasks} | executors
        self.budgets = {name: AsyncBudget(name, 4) for name in self.executors}
        runners = {
            t.name: TaskRunner(
                t,
                self.executors[t.name],
                self.budgets[t.name],
                self.settings.processing.retry,
                self.metrics,
                clock=self.clock,
                rand=lambda: 0.0,
            )
            for t in self.settings.api_tasks
        }
        self.scorer = EventScorer(runners, clock=self.clock)
        self.decider = Decider(self.settings, self.scorer, self.metrics, clock=self.clock)

    async def decide(self, rec: ConsumedRecord) -> Outcome:
        event = decode_event(rec.value)
        return await asyncio.wait_for(self.decider.decide(rec, event), 5)


def body(outcome: Outcome) -> Any:
    return orjson.loads(outcome.record.value)


def all_text(outcome: Outcome) -> str:
    parts = [outcome.record.value, outcome.record.key or b""]
    parts += [name.encode() + (value or b"") for name, value in outcome.record.headers]
    return b"\n".join(parts).decode("utf-8", "replace")


async def test_an_event_expired_on_arrival_falls_back_without_an_execute() -> None:
    """An event already past its deadline is decided by fallback at once; nothing executes."""
    rig = DeciderRig(make_settings(sla_ms=500))
    outcome = await rig.decide(record(7, occurred_at=T0 - 10))
    assert (outcome.kind, outcome.label) == ("decision", "REVIEW")
    assert outcome.fallback_reason == "expired_on_arrival"
    assert rig.executors["fraud"].calls == []
    assert body(outcome)["fallback"] is True
    assert header(outcome.record, "streamproc-fallback-reason") == "expired_on_arrival"


async def test_an_event_too_close_to_its_deadline_falls_back_without_an_execute() -> None:
    """Less than min_useful_ms left counts as expired: an answer could not come in time."""
    rig = DeciderRig(make_settings(sla_ms=500, min_useful_ms=50))
    outcome = await rig.decide(record(1, occurred_at=T0 - 0.47))
    assert outcome.fallback_reason == "expired_on_arrival"
    assert rig.executors["fraud"].calls == []


async def test_a_mapping_error_is_dead_lettered_at_stage_map() -> None:
    """An event the task's mapping cannot turn into a botInput goes to the DLQ, stage map."""
    mapping = TaskMappingSpec(
        inputs=(
            InputVariableSpec(name="iStrCardId", type="STRING", source="card_id", required=True),
        )
    )
    rig = DeciderRig(make_settings(task_overrides={"mapping": mapping}))
    rec = record(3)  # no card_id
    outcome = await rig.decide(rec)
    assert (outcome.kind, outcome.label) == ("dead_letter", "map")
    assert outcome.record.topic == DLQ
    assert header(outcome.record, "streamproc.error.stage") == "map"
    assert header(outcome.record, "streamproc.error.field") == "card_id"
    assert header(outcome.record, "streamproc.error.attempts") == "0"
    assert rig.executors["fraud"].calls == []


async def test_a_scored_decision_is_keyed_by_the_input_key() -> None:
    """The decision record has the input record's key (the card) and says it is no fallback."""
    rig = DeciderRig()
    rig.executors["fraud"].default = verdict("DECLINE", "91", "velocity")
    rec = record(5, key="card-42")
    outcome = await rig.decide(rec)
    assert outcome.record.topic == DECISIONS
    assert outcome.record.key == b"card-42"
    assert (outcome.kind, outcome.label, outcome.fallback_reason) == ("decision", "DECLINE", None)
    decision = body(outcome)
    assert (decision["event_id"], decision["decision"], decision["fallback"]) == (
        "p0-5",
        "DECLINE",
        False,
    )
    assert decision["source"] == {"topic": "transactions", "partition": 0, "offset": 5}
    assert header(outcome.record, "streamproc-fallback") == "false"
    assert header(outcome.record, "streamproc-fallback-reason") is None
    assert header(outcome.record, "streamproc-event-id") == "p0-5"


async def test_a_deadline_fallback_is_flagged_with_its_reason() -> None:
    """An event whose execute outlives the deadline gets a fallback decision, flagged."""
    rig = DeciderRig(make_settings(sla_ms=500))
    held = rig.executors["fraud"].hold("p0-9", then=verdict("DECLINE", "99"))
    # 30 ms of the event's 500 ms are left when it is consumed.
    outcome = await rig.decide(record(9, key="card-1", occurred_at=T0 - 0.47))
    assert (outcome.kind, outcome.label, outcome.fallback_reason) == (
        "decision",
        "REVIEW",
        "deadline",
    )
    assert outcome.record.key == b"card-1"
    assert header(outcome.record, "streamproc-fallback") == "true"
    assert header(outcome.record, "streamproc-fallback-reason") == "deadline"
    assert body(outcome)["tasks"]["fraud"]["status"] == "deadline"
    before = outcome.record.value
    held.release()
    await asyncio.wait_for(rig.scorer.aclose(), 2)
    # The late DECLINE is counted, and the published decision stays what it was.
    assert sample(rig.metrics, "streamproc_late_results_total", task="fraud") == 1
    assert outcome.record.value == before


async def test_a_fallback_is_never_softer_than_a_verdict_that_arrived() -> None:
    """With one task's DECLINE in hand and the other past the deadline, the fallback declines."""
    rig = DeciderRig(make_settings(tasks=("fraud", "aml"), sla_ms=500))
    rig.executors["fraud"].default = verdict("DECLINE", "95")
    held = rig.executors["aml"].hold("p0-2")
    outcome = await rig.decide(record(2, occurred_at=T0 - 0.47))
    assert (outcome.label, outcome.fallback_reason) == ("DECLINE", "deadline")
    held.release()
    await rig.scorer.aclose()


async def test_amount_rules_escalate_the_fallback() -> None:
    """The fallback policy's amount rules apply to fallback decisions."""
    policy = FallbackPolicy(
        decision="REVIEW", rules=(FallbackRule(min_amount=1000, decision="DECLINE"),)
    )
    rig = DeciderRig(make_settings(sla_ms=500, fallback=policy))
    small = await rig.decide(record(1, occurred_at=T0 - 10, amount="999.99"))
    large = await rig.decide(record(2, occurred_at=T0 - 10, amount="-1000"))
    assert (small.label, large.label) == ("REVIEW", "DECLINE")


async def test_a_dead_letter_keeps_the_original_record_and_masks_secrets() -> None:
    """A dead letter is the original record plus error headers, with no planted secret."""
    planted = (
        "rejected: Authorization: Bearer sk-live-abcdefgh12345 "
        f"token={JWT} password=hunter2-Secret url=https://bot:pa55w0rd-in-url@cr.example/v1"
    )
    rig = DeciderRig()
    rig.executors["fraud"].default = BadRequestError(planted, status=400)
    original_headers: list[tuple[str, bytes | None]] = [
        ("traceparent", b"00-abc-01"),
        ("empty", None),
        ("traceparent", b"again"),
    ]
    rec = record(11, key="card-9", headers=original_headers)
    with structlog.testing.capture_logs() as logs:
        outcome = await rig.decide(rec)
    assert (outcome.kind, outcome.label) == ("dead_letter", "execute")
    out = outcome.record
    assert (out.topic, out.key, out.value) == (DLQ, rec.key, rec.value)
    assert list(out.headers[:3]) == original_headers
    assert header(out, "streamproc.error.stage") == "execute"
    assert header(out, "streamproc.error.class") == "streamproc.errors.BadRequestError"
    assert header(out, "streamproc.error.http_status") == "400"
    assert header(out, "streamproc.error.attempts") == "1"
    assert header(out, "streamproc.error.source.offset") == "11"
    message = header(out, "streamproc.error.message")
    assert message is not None
    assert message.startswith("rejected: Authorization: Bearer ***")
    assert "cr.example/v1" in message  # masked, not dropped
    text = all_text(outcome) + repr(logs)
    for secret in SECRETS:
        assert secret not in text
    (logged,) = [e for e in logs if e["event"] == "event_dead_lettered"]
    assert (logged["stage"], logged["http_status"], logged["attempts"]) == ("execute", 400, 1)


async def test_acknowledged_outcomes_are_counted_by_kind() -> None:
    """Once acknowledged, decisions count by decision and fallback, dead letters by stage."""
    rig = DeciderRig(make_settings(sla_ms=500))
    scored = await rig.decide(record(1))
    fallback = await rig.decide(record(2, occurred_at=T0 - 10))
    dead = rig.decider.dead_letter(record(3), BadRequestError("no", status=400))
    for outcome in (scored, fallback, dead):
        rig.decider.acknowledged(outcome, T0 + 0.25)
    m = rig.metrics
    assert sample(m, "streamproc_decisions_total", decision="APPROVE", fallback="false") == 1
    assert sample(m, "streamproc_decisions_total", decision="REVIEW", fallback="true") == 1
    assert sample(m, "streamproc_fallbacks_total", reason="expired_on_arrival") == 1
    assert sample(m, "streamproc_dead_letters_total", stage="execute") == 1
    assert sample(m, "streamproc_decision_latency_seconds_count") == 2
    assert sample(m, "streamproc_decision_latency_seconds_sum") == pytest.approx(0.25 + 10.25)
