"""Combining verdicts, fallback decisions and the decision record."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from streamproc.core.decisions import (
    DecisionRecord,
    FallbackPolicy,
    SourceRef,
    TaskReport,
    combine_verdicts,
    decide,
    fallback_decision,
    rfc3339_utc,
    stricter,
)
from streamproc.core.events import TransactionEvent, decode_event
from streamproc.core.mapping import TaskVerdict

SOURCE = SourceRef("payments", 3, 1042)
OCCURRED = "2026-11-28T18:04:15Z"
NOW = decode_event(
    b'{"event_id":"e","occurred_at":"2026-11-28T18:04:15.250Z","amount":1}'
).occurred_at_epoch


def event(amount: Any = 120.5) -> TransactionEvent:
    return decode_event(
        json.dumps({"event_id": "evt-1", "occurred_at": OCCURRED, "amount": amount}).encode()
    )


def v(decision: str, score: str | None = None, *reasons: str) -> TaskVerdict:
    return TaskVerdict(Decimal(score) if score is not None else None, decision, reasons)  # type: ignore[arg-type]


def ok(task: str, verdict: TaskVerdict, attempts: int = 1, latency: float = 10.0) -> TaskReport:
    return TaskReport(task, verdict, attempts, latency)


def failed(task: str, reason: Any, attempts: int = 2) -> TaskReport:
    return TaskReport(task, None, attempts, None, reason)


def test_stricter_orders_decline_review_approve() -> None:
    """DECLINE beats REVIEW beats APPROVE, in either argument order."""
    assert stricter("APPROVE", "REVIEW") == "REVIEW"
    assert stricter("DECLINE", "REVIEW") == "DECLINE"
    assert stricter("APPROVE", "APPROVE") == "APPROVE"


def test_strictest_takes_worst_decision_max_score_and_ordered_reason_union() -> None:
    """strictest: the strictest decision, the highest score, reasons merged without repeats."""
    combined = combine_verdicts(
        [v("REVIEW", "40", "geo", "velocity"), v("APPROVE", "70", "velocity", "new_card")],
        "strictest",
    )
    assert combined == TaskVerdict(Decimal(70), "REVIEW", ("geo", "velocity", "new_card"))


def test_strictest_without_scores_has_no_score() -> None:
    """strictest over verdicts that carry no score yields no score."""
    assert combine_verdicts([v("APPROVE"), v("DECLINE")], "strictest").score is None


def test_highest_score_picks_one_verdict_whole() -> None:
    """highest_score returns the verdict with the highest score, reasons and all."""
    best = v("APPROVE", "90", "a")
    assert combine_verdicts([v("DECLINE", "30", "b"), best], "highest_score") is best


def test_highest_score_ties_prefer_stricter_then_earlier() -> None:
    """Equal scores go to the stricter decision, then to the earlier task."""
    first, strict, late = v("REVIEW", "50"), v("DECLINE", "50"), v("DECLINE", "50.0")
    assert combine_verdicts([first, strict, late], "highest_score") is strict
    assert combine_verdicts([v("APPROVE"), first], "highest_score") is first


def test_first_policy_takes_the_first_verdict() -> None:
    """first returns the first task's verdict even if a later one is stricter."""
    head = v("APPROVE", "1")
    assert combine_verdicts([head, v("DECLINE", "99")], "first") is head


def test_combining_nothing_is_an_error() -> None:
    """There is no decision without a verdict."""
    with pytest.raises(ValueError, match="no verdicts"):
        combine_verdicts([], "strictest")


def test_scored_decision_record() -> None:
    """All tasks answered: a scored record with provenance, exact score and end-to-end latency."""
    record = decide(
        event(),
        "big",
        [ok("fraud", v("REVIEW", "55.50", "velocity")), ok("aml", v("APPROVE", "10"), attempts=2)],
        combine="strictest",
        fallback=FallbackPolicy(),
        now_epoch=NOW,
        source=SOURCE,
    )
    assert record.decision == "REVIEW"
    assert not record.fallback
    assert record.attempts == 3
    assert record.latency_ms == pytest.approx(250.0)
    raw = record.to_json()
    assert b'"score":55.50' in raw
    assert orjson.loads(raw) == {
        "event_id": "evt-1",
        "decision": "REVIEW",
        "score": 55.5,
        "reasons": ["velocity"],
        "fallback": False,
        "fallback_reason": None,
        "rule": "big",
        "tasks": {
            "fraud": {
                "status": "ok",
                "decision": "REVIEW",
                "score": 55.5,
                "reasons": ["velocity"],
                "attempts": 1,
                "latency_ms": 10.0,
            },
            "aml": {
                "status": "ok",
                "decision": "APPROVE",
                "score": 10,
                "reasons": [],
                "attempts": 2,
                "latency_ms": 10.0,
            },
        },
        "decided_at": "2026-11-28T18:04:15.250Z",
        "latency_ms": 250.0,
        "source": {"topic": "payments", "partition": 3, "offset": 1042},
    }


def test_output_headers_carry_decision_provenance() -> None:
    """Output headers name the event, decision, fallback flag, attempts, rule and latency."""
    record = decide(
        event(),
        "default",
        [ok("fraud", v("APPROVE", "5"), attempts=2)],
        combine="strictest",
        fallback=FallbackPolicy(),
        now_epoch=NOW,
        source=SOURCE,
    )
    assert record.headers() == [
        ("streamproc-event-id", b"evt-1"),
        ("streamproc-decision", b"APPROVE"),
        ("streamproc-fallback", b"false"),
        ("streamproc-attempts", b"2"),
        ("streamproc-rule", b"default"),
        ("streamproc-latency-ms", b"250.000"),
    ]


def test_any_failed_task_makes_a_fallback_with_the_first_failure_reason() -> None:
    """A missing verdict makes the record a fallback; its reason is the first failure's."""
    record = decide(
        event(),
        "big",
        [
            ok("fraud", v("APPROVE", "5", "fine")),
            failed("aml", "deadline"),
            failed("kyc", "circuit_open"),
        ],
        combine="strictest",
        fallback=FallbackPolicy(),
        now_epoch=NOW,
        source=SOURCE,
    )
    assert record.fallback
    assert record.fallback_reason == "deadline"
    assert record.decision == "REVIEW"
    assert record.score is None
    assert record.reasons == ("fine",)
    body = orjson.loads(record.to_json())
    assert body["tasks"]["aml"] == {
        "status": "deadline",
        "decision": None,
        "score": None,
        "reasons": [],
        "attempts": 2,
        "latency_ms": None,
    }
    assert ("streamproc-fallback-reason", b"deadline") in record.headers()
    assert ("streamproc-fallback", b"true") in record.headers()


def test_fallback_never_softens_a_verdict_in_hand() -> None:
    """A DECLINE from one task survives another task's failure."""
    record = decide(
        event(),
        "big",
        [failed("aml", "retries_exhausted"), ok("fraud", v("DECLINE", "99"))],
        combine="first",
        fallback=FallbackPolicy(decision="APPROVE"),
        now_epoch=NOW,
        source=SOURCE,
    )
    assert record.decision == "DECLINE"
    assert record.fallback_reason == "retries_exhausted"


POLICY = FallbackPolicy.model_validate(
    {
        "decision": "APPROVE",
        "rules": [
            {"min_amount": 500, "decision": "REVIEW"},
            {"min_amount": 5000.50, "decision": "DECLINE"},
        ],
    }
)


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (10, "APPROVE"),
        (499.99, "APPROVE"),
        (500, "REVIEW"),
        (5000.49, "REVIEW"),
        (5000.50, "DECLINE"),
        (-6000, "DECLINE"),
    ],
)
def test_fallback_rules_escalate_by_amount(amount: Any, expected: str) -> None:
    """Amount rules (on the magnitude, so refunds count) make the fallback stricter."""
    record = fallback_decision(
        event(amount), "expired_on_arrival", NOW, policy=POLICY, source=SOURCE
    )
    assert record.decision == expected
    assert record.fallback
    assert record.fallback_reason == "expired_on_arrival"
    assert record.rule is None
    assert record.tasks == ()
    assert record.score is None
    assert "streamproc-rule" not in dict(record.headers())


def test_default_fallback_policy_is_review() -> None:
    """Without configuration a fallback decision is REVIEW."""
    record = fallback_decision(
        event(10**9), "over_budget", NOW, policy=FallbackPolicy(), source=SOURCE
    )
    assert record.decision == "REVIEW"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({"decision": "REVIEW", "rules": [{"min_amount": 5, "decision": "APPROVE"}]}, "escalate"),
        ({"decision": "REVIEW", "rules": [{"min_amount": 5, "decision": "REVIEW"}]}, "escalate"),
        ({"rules": [{"min_amount": -1, "decision": "DECLINE"}]}, "greater than or equal"),
        ({"rules": [{"min_amount": "nan", "decision": "DECLINE"}]}, "finite"),
        ({"decision": "ALLOW"}, "decision"),
        ({"rules": [{"min_amount": 5}]}, "decision"),
    ],
)
def test_invalid_fallback_policies_fail_validation(data: dict[str, Any], why: str) -> None:
    """Rules that could never apply, negative or non-finite thresholds, unknown decisions fail."""
    with pytest.raises(ValidationError, match=why):
        FallbackPolicy.model_validate(data)


def test_task_report_has_a_verdict_or_a_failure() -> None:
    """A report cannot have both a verdict and a failure, nor neither."""
    with pytest.raises(ValueError, match="either"):
        TaskReport("t", None, 1)
    with pytest.raises(ValueError, match="either"):
        TaskReport("t", v("APPROVE"), 1, failure="deadline")
    with pytest.raises(ValueError, match="negative"):
        TaskReport("t", v("APPROVE"), -1)


def test_decide_needs_reports() -> None:
    """A decision without any task report is a programming error."""
    with pytest.raises(ValueError, match="at least one"):
        decide(
            event(),
            "r",
            [],
            combine="first",
            fallback=FallbackPolicy(),
            now_epoch=NOW,
            source=SOURCE,
        )


def test_rfc3339_utc_has_milliseconds_and_z() -> None:
    """Timestamps are UTC, millisecond precision, with a Z suffix."""
    assert rfc3339_utc(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339_utc(1795889055.2509) == "2026-11-28T18:04:15.250Z"


def test_latency_is_negative_under_clock_skew() -> None:
    """Latency is reported as measured, so a producer clock ahead of ours is visible."""
    record = fallback_decision(event(), "deadline", NOW - 1, policy=FallbackPolicy(), source=SOURCE)
    assert isinstance(record, DecisionRecord)
    assert record.latency_ms == pytest.approx(-750.0)


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_decided_at_is_written_as_datetime_writes_it(epoch: float) -> None:
    """The cached formatting of decided_at agrees with datetime's, to the millisecond."""
    expected = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    assert rfc3339_utc(epoch) == expected
