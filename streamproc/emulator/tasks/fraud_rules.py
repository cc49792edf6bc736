"""Deterministic fraud scoring: the rules of the ``Fraud Score API Task``. Pure: no I/O, no clock.

The amount is converted to USD with the fixed rates of :data:`USD_RATES`; then each rule that
fires adds its points and its reason code (stable snake_case), in this order:

==============================================================  ==================  ======
rule                                                            reason              points
==============================================================  ==================  ======
amount >= 3000 USD                                              high_amount         35
1000 <= amount < 3000 USD                                       high_amount         20
250 <= amount < 1000 USD                                        elevated_amount     10
transaction country and card country both given, and differ     cross_border        15
merchant category 7995, 7801, 7802, 6051, 4829 or 5967          high_risk_mcc       25
channel ``ecommerce`` or ``moto`` (card not present)            card_not_present    10
channel given but not pos/ecommerce/atm/moto/contactless        unknown_channel     5
currency not in the rate table (the amount is taken as USD)     unknown_currency    10
3 to 5 earlier transactions of the card in the last 10 minutes  velocity            20
6 or more earlier transactions of the card in that window       velocity            35
==============================================================  ==================  ======

The score is the sum, capped at 100. Decision: score >= 70 DECLINE, >= 40 REVIEW, else
APPROVE. Country and currency codes compare case-insensitively; empty strings count as absent.

Velocity: each card remembers the times of its last 32 transactions (the event's
``occurred_at``, or the arrival time when absent). The count is the number of remembered
transactions of the card in ``(t - 600 s, t]``. An event id seen before is a replay: it is not
recorded again and is scored with the count it had the first time, so retries are idempotent.

Examples (one fresh card each):

- 45 USD, US card in the US, MCC 5411, pos: 0 -> APPROVE, no reasons;
- 1500 USD, US card in FR, MCC 5732, ecommerce: 20 + 15 + 10 = 45 -> REVIEW
  (high_amount, cross_border, card_not_present);
- 3500 USD, GB card in MT, MCC 7995, pos: 35 + 15 + 25 = 75 -> DECLINE
  (high_amount, cross_border, high_risk_mcc);
- 300 USD domestic ecommerce: 10 + 10 = 20 -> APPROVE, but the fourth such transaction of one
  card within ten minutes adds velocity 20: 40 -> REVIEW.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

USD_RATES: Mapping[str, Decimal] = {
    code: Decimal(rate)
    for code, rate in {
        "USD": "1",
        "EUR": "1.08",
        "GBP": "1.27",
        "CHF": "1.12",
        "CAD": "0.73",
        "AUD": "0.66",
        "NZD": "0.61",
        "JPY": "0.0067",
        "CNY": "0.14",
        "HKD": "0.128",
        "SGD": "0.74",
        "INR": "0.012",
        "BRL": "0.18",
        "MXN": "0.058",
        "ZAR": "0.055",
        "AED": "0.272",
        "SEK": "0.095",
        "NOK": "0.094",
        "DKK": "0.145",
        "PLN": "0.25",
    }.items()
}
HIGH_RISK_MCCS: Mapping[str, str] = {
    "7995": "betting and gambling",
    "7801": "government-licensed online casinos",
    "7802": "government-licensed horse and dog racing",
    "6051": "quasi-cash and crypto purchases",
    "4829": "money transfer",
    "5967": "direct marketing, inbound teleservices",
}
CHANNELS = frozenset({"pos", "ecommerce", "atm", "moto", "contactless"})
CARD_NOT_PRESENT = frozenset({"ecommerce", "moto"})
DECLINE_AT = 70
REVIEW_AT = 40
VELOCITY_WINDOW_SECONDS = 600.0
_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Transaction:
    """One card transaction to score; ``occurred_at`` in epoch seconds."""

    amount: Decimal
    currency: str | None = None
    card_id: str | None = None
    country: str | None = None
    card_country: str | None = None
    merchant_category: str | None = None
    channel: str | None = None
    event_id: str | None = None
    occurred_at: float | None = None


@dataclass(frozen=True, slots=True)
class FraudScore:
    score: int
    decision: str
    reasons: tuple[str, ...]
    amount_usd: Decimal
    velocity_count: int


def _code(value: str | None) -> str | None:
    text = (value or "").strip().upper()
    return text or None


def to_usd(amount: Decimal, currency: str | None) -> tuple[Decimal, bool]:
    """The amount in USD, and whether the currency was known (unknown: taken as USD)."""
    code = _code(currency) or "USD"
    rate = USD_RATES.get(code)
    if rate is None:
        return amount.quantize(_CENT), False
    return (amount * rate).quantize(_CENT), True


def decide(score: int) -> str:
    if score >= DECLINE_AT:
        return "DECLINE"
    if score >= REVIEW_AT:
        return "REVIEW"
    return "APPROVE"


def assess(txn: Transaction, velocity_count: int) -> FraudScore:
    """Score one transaction, given how many earlier transactions its card had in the window."""
    amount_usd, known_currency = to_usd(txn.amount, txn.currency)
    rules: list[tuple[str, int]] = []
    if amount_usd >= 3000:
        rules.append(("high_amount", 35))
    elif amount_usd >= 1000:
        rules.append(("high_amount", 20))
    elif amount_usd >= 250:
        rules.append(("elevated_amount", 10))
    country, card_country = _code(txn.country), _code(txn.card_country)
    if country and card_country and country != card_country:
        rules.append(("cross_border", 15))
    if (txn.merchant_category or "").strip() in HIGH_RISK_MCCS:
        rules.append(("high_risk_mcc", 25))
    channel = (txn.channel or "").strip().lower()
    if channel in CARD_NOT_PRESENT:
        rules.append(("card_not_present", 10))
    elif channel and channel not in CHANNELS:
        rules.append(("unknown_channel", 5))
    if not known_currency:
        rules.append(("unknown_currency", 10))
    if velocity_count >= 6:
        rules.append(("velocity", 35))
    elif velocity_count >= 3:
        rules.append(("velocity", 20))
    score = min(100, sum(points for _, points in rules))
    return FraudScore(
        score=score,
        decision=decide(score),
        reasons=tuple(reason for reason, _ in rules),
        amount_usd=amount_usd,
        velocity_count=velocity_count,
    )


class VelocityMemory:
    """Recent transaction times per card, and the velocity count each event id first got.

    Bounded: at most ``per_card`` times per card, ``max_cards`` cards and ``max_events``
    remembered event ids, the least recently used evicted first.
    """

    def __init__(
        self,
        window_seconds: float = VELOCITY_WINDOW_SECONDS,
        per_card: int = 32,
        max_cards: int = 100_000,
        max_events: int = 200_000,
    ) -> None:
        self._window = window_seconds
        self._per_card = per_card
        self._max_cards = max_cards
        self._max_events = max_events
        self._cards: OrderedDict[str, deque[float]] = OrderedDict()
        self._events: OrderedDict[str, int] = OrderedDict()

    def observe(self, card_id: str, event_id: str | None, at: float) -> int:
        """Record a transaction at ``at``; return its card's earlier transactions in the window."""
        if event_id is not None:
            first = self._events.get(event_id)
            if first is not None:
                self._events.move_to_end(event_id)
                return first
        times = self._cards.get(card_id)
        if times is None:
            times = self._cards[card_id] = deque(maxlen=self._per_card)
            if len(self._cards) > self._max_cards:
                self._cards.popitem(last=False)
        else:
            self._cards.move_to_end(card_id)
        since = at - self._window
        count = sum(1 for t in times if since < t <= at)
        times.append(at)
        if event_id is not None:
            self._events[event_id] = count
            if len(self._events) > self._max_events:
                self._events.popitem(last=False)
        return count


class FraudScorer:
    """Scores transactions, remembering each card's recent ones for the velocity rule."""

    def __init__(self, memory: VelocityMemory | None = None) -> None:
        self._memory = memory or VelocityMemory()

    def score(self, txn: Transaction, now: float) -> FraudScore:
        """Score ``txn``; ``now`` stands in for ``occurred_at`` when the event has none."""
        card = (txn.card_id or "").strip()
        event_id = (txn.event_id or "").strip() or None
        at = txn.occurred_at if txn.occurred_at is not None else now
        count = self._memory.observe(card, event_id, at) if card else 0
        return assess(txn, count)
