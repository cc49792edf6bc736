"""The sample generator: deterministic, valid where it should be, broken where it should be."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from streamproc.core.events import decode_event
from streamproc.demo.generator import (
    EXPECTED_STAGE,
    HEADER_EVENT_ID,
    HEADER_KIND,
    MALFORMED_KINDS,
    SampleGenerator,
    SampleRecord,
)
from streamproc.emulator.tasks.fraud_rules import FraudScorer, Transaction
from streamproc.errors import BadInputError

START = datetime(2026, 3, 14, 9, 26, 53, 589_000, tzinfo=UTC).timestamp()


class StepClock:
    """200 events per second of simulated time: fast tests, realistic velocity windows."""

    def __init__(self, start: float = START, step: float = 1 / 200) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def records(n: int, *, seed: int = 7, malformed_ratio: float = 0.02) -> list[SampleRecord]:
    generator = SampleGenerator(seed, malformed_ratio=malformed_ratio, clock=StepClock())
    return [generator.next() for _ in range(n)]


def headers(record: SampleRecord) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}


def test_the_same_seed_and_clock_give_the_same_records() -> None:
    """Two generators with one seed and equal clocks produce byte-identical records."""
    assert records(500) == records(500)
    assert records(50, seed=8) != records(50, seed=7)


def test_valid_records_decode_keyed_by_card_with_their_event_id() -> None:
    """Every record labelled valid decodes, is keyed by its card, and names its event id."""
    valid = [r for r in records(3000) if not r.malformed]
    assert len(valid) > 2800
    for record in valid:
        event = decode_event(record.value)
        assert record.key == (event.card_id or "").encode()
        assert headers(record) == {HEADER_KIND: "valid", HEADER_EVENT_ID: event.event_id}
        assert record.event_id == event.event_id
        assert None not in (event.country, event.card_country, event.currency, event.channel)
        # Fields the processor does not know are carried, not dropped.
        assert "device" in event.extra or "terminal_id" in event.extra


def test_each_malformed_kind_fails_at_its_expected_stage() -> None:
    """bad_json, oversized and empty fail to decode; the others fail validation."""
    seen: Counter[str] = Counter()
    for record in records(600, malformed_ratio=1.0):
        assert record.kind in MALFORMED_KINDS
        assert headers(record)[HEADER_KIND] == record.kind
        assert headers(record)[HEADER_EVENT_ID] == record.event_id
        with pytest.raises(BadInputError) as caught:
            decode_event(record.value)
        assert caught.value.stage == EXPECTED_STAGE[record.kind], record.kind
        seen[record.kind] += 1
    assert set(seen) == set(MALFORMED_KINDS)
    assert EXPECTED_STAGE == {
        "bad_json": "decode",
        "missing_field": "validate",
        "mistyped_amount": "validate",
        "bad_occurred_at": "validate",
        "oversized": "decode",
        "empty": "decode",
    }


def test_the_malformed_share_follows_the_ratio() -> None:
    """About malformed_ratio of the records are malformed; none with a ratio of zero."""
    batch = records(20_000, malformed_ratio=0.02)
    share = sum(r.malformed for r in batch) / len(batch)
    assert 0.015 < share < 0.025
    assert not any(r.malformed for r in records(2000, malformed_ratio=0.0))


def test_event_ids_are_unique() -> None:
    """No event id repeats, including across the malformed records."""
    batch = records(20_000)
    assert len({r.event_id for r in batch}) == len(batch)


def test_occurred_at_is_the_clock_in_rfc3339_utc_with_milliseconds() -> None:
    """occurred_at is the clock's time, written with Z and exactly three fraction digits."""
    generator = SampleGenerator(1, malformed_ratio=0.0, clock=lambda: START)
    record = generator.next()
    assert decode_event(record.value).occurred_at_epoch == pytest.approx(START, abs=1e-6)
    assert b'"occurred_at":"2026-03-14T09:26:53.589Z"' in record.value


def test_the_fraud_rules_decide_about_80_15_5_with_every_rule_firing() -> None:
    """Scored by the API Task's own rules, the mix is ~80/15/5 and trips every rule."""
    clock = StepClock()
    generator = SampleGenerator(7, malformed_ratio=0.0, clock=clock)
    scorer = FraudScorer()
    decisions: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    n = 15_000
    for _ in range(n):
        event = decode_event(generator.next().value)
        result = scorer.score(
            Transaction(
                amount=event.amount,
                currency=event.currency,
                card_id=event.card_id,
                country=event.country,
                card_country=event.card_country,
                merchant_category=event.merchant_category,
                channel=event.channel,
                event_id=event.event_id,
                occurred_at=event.occurred_at_epoch,
            ),
            clock.now,
        )
        decisions[result.decision] += 1
        reasons.update(result.reasons)
    assert 0.75 < decisions["APPROVE"] / n < 0.86
    assert 0.11 < decisions["REVIEW"] / n < 0.19
    assert 0.03 < decisions["DECLINE"] / n < 0.08
    assert set(reasons) == {
        "high_amount",
        "elevated_amount",
        "cross_border",
        "high_risk_mcc",
        "card_not_present",
        "unknown_channel",
        "unknown_currency",
        "velocity",
    }


def test_cards_keep_their_home_country_and_currency() -> None:
    """A card drawn twice is the same card: same account, country and currency."""
    generator = SampleGenerator(3, clock=StepClock())
    assert generator.card(42) == generator.card(42)
    assert SampleGenerator(3, clock=StepClock()).card(42) == generator.card(42)


@pytest.mark.parametrize("ratio", [-0.1, 1.5])
def test_a_malformed_ratio_outside_zero_to_one_is_refused(ratio: float) -> None:
    """The generator refuses a share that is not a share."""
    with pytest.raises(ValueError, match="malformed_ratio"):
        SampleGenerator(1, malformed_ratio=ratio, clock=StepClock())
