"""The Fraud Score API Task's scoring rules, by direct calls."""

from __future__ import annotations

from decimal import Decimal

import pytest

from streamproc.emulator.tasks.fraud_rules import (
    FraudScorer,
    Transaction,
    VelocityMemory,
    assess,
    decide,
    to_usd,
)

NOW = 1_700_000_000.0


def txn(**kw: object) -> Transaction:
    base: dict[str, object] = {
        "amount": Decimal("45"),
        "currency": "USD",
        "country": "US",
        "card_country": "US",
        "merchant_category": "5411",
        "channel": "pos",
    }
    base.update(kw)
    return Transaction(**base)  # type: ignore[arg-type]


def test_domestic_small_pos_purchase_is_approved_without_reasons() -> None:
    """An ordinary domestic card-present purchase under 100 USD scores 0 and is approved."""
    result = assess(txn(), 0)
    assert (result.score, result.decision, result.reasons) == (0, "APPROVE", ())


def test_cross_border_ecommerce_around_1500_usd_is_reviewed() -> None:
    """1500 USD, cross-border, card not present: 20 + 15 + 10 = 45, REVIEW."""
    result = assess(txn(amount=Decimal("1500"), country="FR", channel="ecommerce"), 0)
    assert result.score == 45
    assert result.decision == "REVIEW"
    assert result.reasons == ("high_amount", "cross_border", "card_not_present")


def test_gambling_cross_border_over_3000_usd_is_declined() -> None:
    """MCC 7995, cross-border, 3500 USD: 35 + 15 + 25 = 75, DECLINE."""
    result = assess(
        txn(amount=Decimal("3500"), country="MT", card_country="GB", merchant_category="7995"), 0
    )
    assert result.score == 75
    assert result.decision == "DECLINE"
    assert result.reasons == ("high_amount", "cross_border", "high_risk_mcc")


@pytest.mark.parametrize(
    ("amount", "reason", "score"),
    [
        ("249.99", None, 0),
        ("250", "elevated_amount", 10),
        ("999.99", "elevated_amount", 10),
        ("1000", "high_amount", 20),
        ("2999.99", "high_amount", 20),
        ("3000", "high_amount", 35),
    ],
)
def test_amount_bands(amount: str, reason: str | None, score: int) -> None:
    """The amount bands start at 250, 1000 and 3000 USD."""
    result = assess(txn(amount=Decimal(amount)), 0)
    assert result.score == score
    assert result.reasons == ((reason,) if reason else ())


def test_amount_is_converted_to_usd_with_fixed_rates() -> None:
    """Fixed rates convert to USD before the bands apply: 950 EUR is 1026 USD, a high amount."""
    assert to_usd(Decimal("1000"), "EUR") == (Decimal("1080.00"), True)
    assert to_usd(Decimal("100000"), "jpy") == (Decimal("670.00"), True)
    assert assess(txn(amount=Decimal("950"), currency="EUR"), 0).reasons == ("high_amount",)


def test_unknown_currency_is_taken_as_usd_and_flagged() -> None:
    """A currency missing from the rate table adds unknown_currency and counts as USD."""
    result = assess(txn(amount=Decimal("300"), currency="XYZ"), 0)
    assert result.amount_usd == Decimal("300.00")
    assert result.reasons == ("elevated_amount", "unknown_currency")
    assert result.score == 20


def test_missing_currency_means_usd() -> None:
    """No currency is USD, with no unknown_currency reason."""
    assert assess(txn(currency=None, amount=Decimal("1000")), 0).reasons == ("high_amount",)


@pytest.mark.parametrize("mcc", ["7995", "7801", "7802", "6051", "4829", "5967"])
def test_high_risk_merchant_categories(mcc: str) -> None:
    """Each listed MCC adds high_risk_mcc for 25 points."""
    result = assess(txn(merchant_category=mcc), 0)
    assert (result.score, result.reasons) == (25, ("high_risk_mcc",))


@pytest.mark.parametrize(
    ("channel", "reasons"),
    [
        ("ecommerce", ("card_not_present",)),
        ("MOTO", ("card_not_present",)),
        ("pos", ()),
        ("atm", ()),
        ("contactless", ()),
        ("telepathy", ("unknown_channel",)),
        (None, ()),
    ],
)
def test_channels(channel: str | None, reasons: tuple[str, ...]) -> None:
    """Card-not-present channels and unknown channels are flagged; known ones are not."""
    assert assess(txn(channel=channel), 0).reasons == reasons


def test_cross_border_needs_both_countries_and_ignores_case() -> None:
    """Countries compare case-insensitively; a missing country never makes cross_border."""
    assert assess(txn(country="us", card_country="US"), 0).reasons == ()
    assert assess(txn(country="", card_country="US"), 0).reasons == ()
    assert assess(txn(country=None, card_country="FR"), 0).reasons == ()
    assert assess(txn(country="de", card_country="FR"), 0).reasons == ("cross_border",)


def test_velocity_points() -> None:
    """3 to 5 earlier transactions add 20, 6 or more add 35."""
    assert assess(txn(), 2).reasons == ()
    assert assess(txn(), 3).score == 20
    assert assess(txn(), 5).score == 20
    assert assess(txn(), 6).score == 35


def test_score_is_capped_at_100() -> None:
    """Every rule at once would exceed 100; the score stops at 100."""
    result = assess(
        txn(
            amount=Decimal("5000"),
            currency="XYZ",
            country="MT",
            merchant_category="6051",
            channel="ecommerce",
        ),
        9,
    )
    assert result.score == 100
    assert result.decision == "DECLINE"


@pytest.mark.parametrize(("score", "decision"), [(0, "APPROVE"), (39, "APPROVE"),
                                                  (40, "REVIEW"), (69, "REVIEW"),
                                                  (70, "DECLINE"), (100, "DECLINE")])  # fmt: skip
def test_decision_thresholds(score: int, decision: str) -> None:
    """DECLINE from 70, REVIEW from 40, APPROVE below."""
    assert decide(score) == decision


def test_fourth_transaction_of_a_card_within_ten_minutes_adds_velocity() -> None:
    """Three earlier transactions of the same card in the window make the fourth a velocity hit."""
    scorer = FraudScorer()
    results = [
        scorer.score(txn(card_id="c1", event_id=f"e{i}", occurred_at=NOW + i * 60), NOW)
        for i in range(4)
    ]
    assert [r.velocity_count for r in results] == [0, 1, 2, 3]
    assert results[3].reasons == ("velocity",)


def test_velocity_window_is_ten_minutes_of_event_time() -> None:
    """Transactions older than 600 s before this one do not count."""
    scorer = FraudScorer()
    for i in range(3):
        scorer.score(txn(card_id="c1", occurred_at=NOW + i), NOW)
    late = scorer.score(txn(card_id="c1", occurred_at=NOW + 601), NOW)
    assert late.velocity_count == 1  # the window (NOW+1, NOW+601] holds only NOW+2
    later = scorer.score(txn(card_id="c1", occurred_at=NOW + 2000), NOW)
    assert later.velocity_count == 0


def test_velocity_is_per_card() -> None:
    """Other cards' transactions do not count."""
    scorer = FraudScorer()
    for i in range(5):
        scorer.score(txn(card_id=f"other-{i}", occurred_at=NOW), NOW)
    assert scorer.score(txn(card_id="mine", occurred_at=NOW), NOW).velocity_count == 0


def test_replayed_event_id_is_not_counted_twice_and_scores_the_same() -> None:
    """A retry with the same event id neither adds to velocity nor changes its own score."""
    scorer = FraudScorer()
    first = [
        scorer.score(txn(card_id="c", event_id=f"e{i}", occurred_at=NOW), NOW) for i in range(3)
    ]
    replay = scorer.score(txn(card_id="c", event_id="e2", occurred_at=NOW), NOW)
    assert replay == first[2]
    fresh = scorer.score(txn(card_id="c", event_id="e3", occurred_at=NOW), NOW)
    assert fresh.velocity_count == 3


def test_missing_occurred_at_uses_the_arrival_time() -> None:
    """Without occurred_at the event is placed at ``now``."""
    scorer = FraudScorer()
    scorer.score(txn(card_id="c"), NOW)
    scorer.score(txn(card_id="c"), NOW + 10)
    assert scorer.score(txn(card_id="c"), NOW + 20).velocity_count == 2
    assert scorer.score(txn(card_id="c"), NOW + 2000).velocity_count == 0


def test_no_card_id_means_no_velocity_state() -> None:
    """Transactions without a card id are never velocity hits."""
    scorer = FraudScorer()
    assert all(scorer.score(txn(card_id=" "), NOW).velocity_count == 0 for _ in range(10))


def test_velocity_memory_is_bounded() -> None:
    """Least recently used cards and event ids are forgotten beyond the bounds."""
    cards = VelocityMemory(per_card=2, max_cards=2)
    assert [cards.observe("a", None, NOW + i) for i in range(4)] == [0, 1, 2, 2]
    cards.observe("b", None, NOW)
    cards.observe("c", None, NOW)  # evicts card a
    assert cards.observe("a", None, NOW + 5) == 0
    events = VelocityMemory(max_events=2)
    for i in range(3):
        events.observe("x", f"e{i}", NOW)  # the third evicts e0
    assert events.observe("x", "e1", NOW) == 1  # remembered: its first count
    assert events.observe("x", "e0", NOW) == 3  # forgotten: counted as new
