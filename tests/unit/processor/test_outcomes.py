"""Outcomes: each event's one output, a decision, a fallback decision or a dead letter."""

from __future__ import annotations

from typing import Any

import pytest
import structlog

from streamproc.core.decisions import FallbackPolicy, FallbackRule
from streamproc.core.mapping import InputVariableSpec, TaskMappingSpec
from streamproc.errors import BadRequestError
from streamproc.kafka.records import OutputRecord
from tests.unit.processor.conftest import MakeHarness
from tests.unit.processor.fakes import (
    DECISIONS,
    DLQ,
    T0,
    FakeExecutor,
    Harness,
    answer_of,
    body,
    eventually,
    header,
    make_settings,
    record,
    sample,
    verdict,
)

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJib3QtZGV2In0.c2lnbmF0dXJlLXZhbHVl"
SECRETS = ("sk-live-abcdefgh12345", JWT, "hunter2-Secret", "pa55w0rd-in-url")


async def decide(h: Harness, offset: int, **fields: Any) -> OutputRecord:
    """Feed the record at ``offset`` (of a key of its own) and return its one output."""
    if not h.processor.started.is_set():
        await h.start()
    h.source.feed(record(offset, **{"key": f"card-{offset}", **fields}))
    return await answer_of(h, 0, offset)


def all_text(out: OutputRecord) -> str:
    parts = [out.value or b"", out.key or b""]
    parts += [name.encode() + (value or b"") for name, value in out.headers]
    return b"\n".join(parts).decode("utf-8", "replace")


async def test_an_event_expired_on_arrival_falls_back_without_an_execute(
    make_harness: MakeHarness,
) -> None:
    """An event already past its deadline is decided by fallback at once; nothing executes."""
    h = make_harness(make_settings(sla_ms=500))
    out = await decide(h, 7, occurred_at=T0 - 10)
    assert out.topic == DECISIONS
    decision = body(out)
    assert (decision["decision"], decision["fallback"]) == ("REVIEW", True)
    assert decision["fallback_reason"] == "expired_on_arrival"
    assert h.executor.calls == []
    assert header(out, "streamproc-fallback-reason") == "expired_on_arrival"


async def test_an_event_too_close_to_its_deadline_falls_back_without_an_execute(
    make_harness: MakeHarness,
) -> None:
    """Less than min_useful_ms left counts as expired: an answer could not come in time."""
    h = make_harness(make_settings(sla_ms=500, min_useful_ms=50))
    out = await decide(h, 1, occurred_at=T0 - 0.47)
    assert body(out)["fallback_reason"] == "expired_on_arrival"
    assert h.executor.calls == []


async def test_a_mapping_error_is_dead_lettered_at_stage_map(make_harness: MakeHarness) -> None:
    """An event the task's mapping cannot turn into a botInput goes to the DLQ, stage map."""
    mapping = TaskMappingSpec(
        inputs=(
            InputVariableSpec(name="iStrCardId", type="STRING", source="card_id", required=True),
        )
    )
    h = make_harness(make_settings(task_overrides={"mapping": mapping}))
    out = await decide(h, 3)  # no card_id
    assert out.topic == DLQ
    assert header(out, "streamproc.error.stage") == "map"
    assert header(out, "streamproc.error.field") == "card_id"
    assert header(out, "streamproc.error.attempts") == "0"
    assert h.executor.calls == []


async def test_a_scored_decision_is_keyed_by_the_input_key(make_harness: MakeHarness) -> None:
    """The decision record has the input record's key (the card) and says it is no fallback."""
    h = make_harness(executors={"fraud": FakeExecutor(verdict("DECLINE", "91", "velocity"))})
    out = await decide(h, 5, key="card-42")
    assert out.topic == DECISIONS
    assert out.key == b"card-42"
    decision = body(out)
    assert (decision["event_id"], decision["decision"], decision["fallback"]) == (
        "p0-5",
        "DECLINE",
        False,
    )
    assert decision["source"] == {"topic": "transactions", "partition": 0, "offset": 5}
    assert header(out, "streamproc-fallback") == "false"
    assert header(out, "streamproc-fallback-reason") is None
    assert header(out, "streamproc-event-id") == "p0-5"


async def test_a_deadline_fallback_is_flagged_with_its_reason(make_harness: MakeHarness) -> None:
    """An event whose execute outlives the deadline gets a fallback decision, flagged, and the
    late answer changes nothing."""
    h = make_harness(make_settings(sla_ms=500))
    held = h.executor.hold("p0-9", then=verdict("DECLINE", "99"))
    await h.start()
    h.source.feed(record(9, key="card-1"))
    await eventually(held.entered.is_set, "the execute")
    h.clock.advance(0.5)
    out = await answer_of(h, 0, 9)
    assert out.key == b"card-1"
    assert header(out, "streamproc-fallback") == "true"
    assert header(out, "streamproc-fallback-reason") == "deadline"
    decision = body(out)
    assert (decision["decision"], decision["tasks"]["fraud"]["status"]) == ("REVIEW", "deadline")
    held.release()
    await eventually(
        lambda: sample(h.metrics, "streamproc_late_results_total", task="fraud") == 1,
        "the late result counted",
    )
    assert h.sink.sent == [out]


async def test_a_fallback_is_never_softer_than_a_verdict_that_arrived(
    make_harness: MakeHarness,
) -> None:
    """With one task's DECLINE in hand and the other past the deadline, the fallback declines."""
    h = make_harness(make_settings(tasks=("fraud", "aml"), sla_ms=500))
    h.executors["fraud"].default = verdict("DECLINE", "95")
    held = h.executors["aml"].hold("p0-2")
    await h.start()
    h.source.feed(record(2))
    await eventually(held.entered.is_set, "aml's execute")
    h.clock.advance(0.5)
    decision = body(await answer_of(h, 0, 2))
    assert (decision["decision"], decision["fallback_reason"]) == ("DECLINE", "deadline")
    held.release()


async def test_amount_rules_escalate_the_fallback(make_harness: MakeHarness) -> None:
    """The fallback policy's amount rules apply to fallback decisions."""
    policy = FallbackPolicy(
        decision="REVIEW", rules=(FallbackRule(min_amount=1000, decision="DECLINE"),)
    )
    h = make_harness(make_settings(sla_ms=500, fallback=policy))
    small = body(await decide(h, 1, occurred_at=T0 - 10, amount="999.99"))
    large = body(await decide(h, 2, occurred_at=T0 - 10, amount="-1000"))
    assert (small["decision"], large["decision"]) == ("REVIEW", "DECLINE")


async def test_a_dead_letter_keeps_the_original_record_and_masks_secrets(
    make_harness: MakeHarness,
) -> None:
    """A dead letter is the original record plus error headers, with no planted secret."""
    planted = (
        "rejected: Authorization: Bearer sk-live-abcdefgh12345 "
        f"token={JWT} password=hunter2-Secret url=https://bot:pa55w0rd-in-url@cr.example/v1"
    )
    h = make_harness(executors={"fraud": FakeExecutor(BadRequestError(planted, status=400))})
    original_headers: list[tuple[str, bytes | None]] = [
        ("traceparent", b"00-abc-01"),
        ("empty", None),
        ("traceparent", b"again"),
    ]
    rec = record(11, key="card-9", headers=original_headers)
    await h.start()
    with structlog.testing.capture_logs() as logs:
        h.source.feed(rec)
        out = await answer_of(h, 0, 11)
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
    text = all_text(out) + repr(logs)
    for secret in SECRETS:
        assert secret not in text
    (logged,) = [e for e in logs if e["event"] == "event_dead_lettered"]
    assert (logged["stage"], logged["http_status"], logged["attempts"]) == ("execute", 400, 1)


async def test_acknowledged_outcomes_are_counted_by_kind(make_harness: MakeHarness) -> None:
    """Once acknowledged, decisions count by decision and fallback, dead letters by stage, and
    the decision latency is observed from occurred_at."""
    h = make_harness(make_settings(sla_ms=500))
    h.executors["fraud"].script(verdict(), BadRequestError("no", status=400))
    await decide(h, 1)
    await decide(h, 2, occurred_at=T0 - 10)
    await decide(h, 3)
    m = h.metrics
    assert sample(m, "streamproc_decisions_total", decision="APPROVE", fallback="false") == 1
    assert sample(m, "streamproc_decisions_total", decision="REVIEW", fallback="true") == 1
    assert sample(m, "streamproc_fallbacks_total", reason="expired_on_arrival") == 1
    assert sample(m, "streamproc_dead_letters_total", stage="execute") == 1
    assert sample(m, "streamproc_decision_latency_seconds_count") == 2
    assert sample(m, "streamproc_decision_latency_seconds_sum") == pytest.approx(0.0 + 10.0)


async def test_a_verdict_after_the_fallback_is_published_as_a_correction(
    make_harness: MakeHarness,
) -> None:
    """With a corrections topic, the DECLINE that came after the REVIEW fallback is published
    with both decisions and their times; the decision itself stays the fallback."""
    h = make_harness(make_settings(sla_ms=500, corrections_topic="corrections"))
    held = h.executor.hold("p0-4", then=verdict("DECLINE", "97", "velocity"))
    await h.start()
    h.source.feed(record(4, key="card-4"))
    await eventually(held.entered.is_set, "the execute")
    h.clock.advance(0.5)
    fallback = body(await answer_of(h, 0, 4))
    assert fallback["fallback_reason"] == "deadline"
    held.release()
    await eventually(lambda: any(o.topic == "corrections" for o in h.sink.sent), "the correction")
    (out,) = [o for o in h.sink.sent if o.topic == "corrections"]
    assert out.key == b"card-4"
    assert header(out, "streamproc-correction") == "true"
    correction = body(out)
    assert correction["event_id"] == "p0-4"
    assert correction["task"] == "fraud"
    assert correction["fallback"] == {
        "decision": "REVIEW",
        "reason": "deadline",
        "decided_at": fallback["decided_at"],
    }
    assert (correction["scored"]["decision"], correction["scored"]["score"]) == ("DECLINE", 97)
    assert correction["scored"]["reasons"] == ["velocity"]
    assert sample(h.metrics, "streamproc_corrections_total") == 1
    assert [o.topic for o in h.sink.sent].count(DECISIONS) == 1


async def test_no_correction_without_a_corrections_topic(make_harness: MakeHarness) -> None:
    """By default a late verdict is only counted, not published."""
    h = make_harness(make_settings(sla_ms=500))
    held = h.executor.hold("p0-4", then=verdict("DECLINE", "97"))
    await h.start()
    h.source.feed(record(4, key="card-4"))
    await eventually(held.entered.is_set, "the execute")
    h.clock.advance(0.5)
    await answer_of(h, 0, 4)
    held.release()
    await eventually(
        lambda: sample(h.metrics, "streamproc_late_results_total", task="fraud") == 1, "late"
    )
    assert [o.topic for o in h.sink.sent] == [DECISIONS]
