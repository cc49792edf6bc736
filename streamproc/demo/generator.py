"""Sample card transactions: realistic enough to exercise every rule of the Fraud Score API Task.

Pure apart from the clock it is given: the same seed and clock give the same records.

The population is a pool of cards (``cards``, default 250,000), each with a home country, its
currency and an account, derived on demand from the seed and the card's number, so a large pool
costs nothing up front. The pool is large on purpose: the velocity rule counts a card's
transactions in the last ten minutes, and a pool of a few thousand cards at a demo's rate would
give every card a dozen transactions in that window, turning the whole stream into REVIEW
within minutes. Velocity comes from deliberate bursts instead.

Each transaction draws a scenario (everyday spending, travel abroad, a big-ticket purchase, a
high-risk merchant, a stolen card used abroad) that sets its merchant category, channel,
country and a lognormal amount. Some cards then burst: a stolen card goes on a spree of large
online purchases, and card testers try a number with cheap digital goods before a real
purchase; both trip the velocity rule. With the default mix the API Task decides roughly 80%
APPROVE, 15% REVIEW and 5% DECLINE (a unit test holds it to that).

A ``malformed_ratio`` share of records is deliberately broken, one kind each, named in the
``x-sample-kind`` header (``valid`` for the others); every record also carries its event id in
``x-sample-event-id``, so a dead letter whose value cannot be parsed can still be matched to
what was sent (a dead letter keeps the original headers).
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
import random
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Generic, Literal, TypeVar

import orjson

from streamproc.core.decisions import rfc3339_utc
from streamproc.errors import Stage

T = TypeVar("T")
HEADER_KIND: Final = "x-sample-kind"
HEADER_EVENT_ID: Final = "x-sample-event-id"

MalformedKind = Literal[
    "bad_json", "missing_field", "mistyped_amount", "bad_occurred_at", "oversized", "empty"
]
SampleKind = Literal["valid", MalformedKind]
MALFORMED_KINDS: Final[tuple[MalformedKind, ...]] = (
    "bad_json",
    "missing_field",
    "mistyped_amount",
    "bad_occurred_at",
    "oversized",
    "empty",
)
# The dead-letter stage each malformed kind must end in.
EXPECTED_STAGE: Final[Mapping[MalformedKind, Stage]] = {
    "bad_json": "decode",
    "missing_field": "validate",
    "mistyped_amount": "validate",
    "bad_occurred_at": "validate",
    "oversized": "decode",
    "empty": "decode",
}
OVERSIZED_BYTES: Final = 70_000  # over the processor's default limit of 64 KiB

# country -> (currency, weight as a card's home, weight as a travel destination)
COUNTRIES: Final[Mapping[str, tuple[str, int, int]]] = {
    "US": ("USD", 40, 14),
    "GB": ("GBP", 9, 10),
    "DE": ("EUR", 7, 6),
    "FR": ("EUR", 5, 12),
    "ES": ("EUR", 3, 10),
    "IT": ("EUR", 3, 9),
    "NL": ("EUR", 3, 3),
    "CA": ("CAD", 5, 5),
    "AU": ("AUD", 3, 3),
    "JP": ("JPY", 3, 5),
    "SG": ("SGD", 1, 3),
    "IN": ("INR", 3, 2),
    "BR": ("BRL", 3, 2),
    "MX": ("MXN", 2, 6),
    "CH": ("CHF", 1, 3),
    "SE": ("SEK", 1, 1),
    "PL": ("PLN", 1, 1),
    "ZA": ("ZAR", 1, 1),
    "AE": ("AED", 1, 3),
    "KR": ("KRW", 1, 2),
    "TH": ("THB", 0, 4),
}
# Approximate USD per unit, to draw amounts in local currency; KRW and THB are deliberately
# missing from the API Task's rate table, so their transactions carry unknown_currency.
_USD_PER_UNIT: Final[Mapping[str, float]] = {
    "USD": 1.0, "EUR": 1.08, "GBP": 1.27, "CHF": 1.12, "CAD": 0.73, "AUD": 0.66, "JPY": 0.0067,
    "SGD": 0.74, "INR": 0.012, "BRL": 0.18, "MXN": 0.058, "ZAR": 0.055, "AED": 0.272,
    "SEK": 0.095, "PLN": 0.25, "KRW": 0.00075, "THB": 0.028,
}  # fmt: skip
_NO_MINOR_UNITS: Final = frozenset({"JPY", "KRW"})
_NOT_PRESENT: Final = frozenset({"ecommerce", "moto"})


class _Choices(Generic[T]):
    """Items with integer weights, the cumulative weights computed once."""

    __slots__ = ("cum_weights", "items")

    def __init__(self, weighted: Iterable[tuple[T, int]]) -> None:
        pairs = [(item, weight) for item, weight in weighted if weight > 0]
        self.items = [item for item, _ in pairs]
        self.cum_weights = list(itertools.accumulate(weight for _, weight in pairs))

    def pick(self, rng: random.Random) -> T:
        return rng.choices(self.items, cum_weights=self.cum_weights)[0]


@dataclass(frozen=True)
class Merchant:
    """A merchant category: its MCC, median amount in USD, spread, and usual channels."""

    mcc: str
    median_usd: float
    sigma: float
    channels: tuple[tuple[str, int], ...]

    @functools.cached_property
    def channel_choices(self) -> _Choices[str]:
        return _Choices(self.channels)


_IN_STORE = (("contactless", 5), ("pos", 4))
_ONLINE = (("ecommerce", 9), ("moto", 1))
_MIXED = (("contactless", 4), ("pos", 3), ("ecommerce", 3))

# Everyday spending: (merchant, weight).
EVERYDAY: Final = _Choices[Merchant](
    (
        (Merchant("5411", 42, 0.8, _IN_STORE), 20),  # grocery
        (Merchant("5812", 38, 0.7, _IN_STORE), 12),  # restaurants
        (Merchant("5814", 12, 0.5, _IN_STORE), 12),  # fast food
        (Merchant("5541", 48, 0.5, (("pos", 6), ("contactless", 4))), 8),  # fuel
        (Merchant("5912", 22, 0.7, _IN_STORE), 5),  # pharmacy
        (Merchant("4111", 6, 0.6, (("contactless", 9), ("pos", 1))), 6),  # transit
        (Merchant("4121", 21, 0.6, (("ecommerce", 9), ("contactless", 1))), 5),  # rideshare
        (Merchant("5311", 60, 0.9, _MIXED), 6),  # department stores
        (Merchant("5691", 70, 0.8, _MIXED), 5),  # clothing
        (Merchant("5999", 30, 1.0, _MIXED), 5),  # miscellaneous retail
        (Merchant("5815", 11, 0.7, (("ecommerce", 1),)), 6),  # digital media
        (Merchant("4900", 95, 0.5, (("ecommerce", 8), ("moto", 2))), 3),  # utilities
        (Merchant("5942", 25, 0.6, _MIXED), 2),  # books
        (Merchant("6011", 110, 0.6, (("atm", 1),)), 3),  # cash withdrawal
    )
)
TRAVEL: Final = _Choices[Merchant](
    (
        (Merchant("5812", 45, 0.7, _IN_STORE), 8),  # restaurants
        (Merchant("7011", 260, 0.6, (("ecommerce", 4), ("pos", 6))), 4),  # hotels
        (Merchant("4511", 520, 0.6, (("ecommerce", 1),)), 2),  # airlines
        (Merchant("4121", 28, 0.6, (("ecommerce", 9), ("contactless", 1))), 4),  # rideshare
        (Merchant("5999", 40, 0.9, _IN_STORE), 4),  # souvenirs
        (Merchant("6011", 160, 0.5, (("atm", 1),)), 2),  # cash abroad
    )
)
BIG_TICKET: Final = _Choices[Merchant](
    (
        (Merchant("5732", 1100, 0.6, (("ecommerce", 6), ("pos", 4))), 5),  # electronics
        (Merchant("5944", 2000, 0.7, (("pos", 7), ("ecommerce", 3))), 2),  # jewellery
        (Merchant("4511", 1400, 0.5, (("ecommerce", 1),)), 2),  # long-haul flights
        (Merchant("5712", 1300, 0.6, (("pos", 5), ("ecommerce", 5))), 2),  # furniture
    )
)
# What a stolen card number is used for: resellable goods and cash-like purchases.
STOLEN_CARD: Final = _Choices[Merchant](
    (
        (Merchant("5732", 1600, 0.6, (("ecommerce", 1),)), 4),  # electronics
        (Merchant("5944", 2600, 0.6, (("ecommerce", 1),)), 2),  # jewellery
        (Merchant("6051", 900, 0.8, (("ecommerce", 1),)), 2),  # crypto
        (Merchant("4829", 700, 0.8, (("ecommerce", 1),)), 1),  # money transfer
        (Merchant("5999", 400, 0.8, (("ecommerce", 4), ("moto", 1))), 2),  # gift cards
    )
)
HIGH_RISK: Final = _Choices[Merchant](
    (
        (Merchant("7995", 60, 1.0, (("ecommerce", 1),)), 4),  # betting and gambling
        (Merchant("6051", 250, 1.0, (("ecommerce", 1),)), 3),  # quasi-cash, crypto
        (Merchant("4829", 320, 1.0, (("ecommerce", 7), ("pos", 3))), 2),  # money transfer
        (Merchant("5967", 40, 0.8, (("ecommerce", 6), ("moto", 4))), 1),  # direct marketing
    )
)
# Where card testers try stolen numbers: cheap digital goods, online only.
CARD_TESTING: Final = _Choices[Merchant](
    (
        (Merchant("5815", 4, 0.6, (("ecommerce", 1),)), 4),
        (Merchant("5816", 6, 0.6, (("ecommerce", 1),)), 3),
        (Merchant("5967", 9, 0.6, (("ecommerce", 1),)), 2),
        (Merchant("7995", 25, 0.7, (("ecommerce", 1),)), 1),
    )
)

BurstKind = Literal["card_testing", "spree"]
Scenario = Literal["everyday", "travel", "big_ticket", "high_risk", "stolen_card"]


@dataclass(frozen=True, slots=True)
class MixSettings:
    """The shape of the stream; the defaults give roughly 80/15/5 APPROVE/REVIEW/DECLINE."""

    cards: int = 250_000
    # Scenario shares of ordinary (non-burst) transactions.
    travel: float = 0.10
    big_ticket: float = 0.10
    high_risk: float = 0.09
    # A stolen card's first use abroad, followed by a spree of purchases on the same card.
    stolen_card: float = 0.018
    spree_length: tuple[int, int] = (3, 8)
    # Share of big-ticket purchases made abroad or from a foreign web shop.
    big_ticket_abroad: float = 0.3
    # Share of transactions that start a burst on their card, and the burst's extra length.
    burst_start: float = 0.016
    burst_length: tuple[int, int] = (4, 9)
    # Rare channels the API Task does not know (flagged, not rejected).
    unusual_channel: float = 0.01


@dataclass(frozen=True, slots=True)
class Card:
    card_id: str
    account_id: str
    country: str
    currency: str
    spend_scale: float  # this cardholder's amounts relative to the typical ones


@dataclass(frozen=True, slots=True)
class SampleRecord:
    """One record to produce: key (the card), value, headers, and what it is."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    event_id: str
    kind: SampleKind

    @property
    def malformed(self) -> bool:
        return self.kind != "valid"


@dataclass(order=True, slots=True)
class _BurstStep:
    due: int
    card: int = field(compare=False)
    remaining: int = field(compare=False)
    kind: BurstKind = field(compare=False)
    country: str = field(compare=False)


_MERCHANTS: Final[Mapping[Scenario, _Choices[Merchant]]] = {
    "everyday": EVERYDAY,
    "travel": TRAVEL,
    "big_ticket": BIG_TICKET,
    "high_risk": HIGH_RISK,
    "stolen_card": STOLEN_CARD,
}


_HOMES = _Choices((code, home) for code, (_, home, _) in COUNTRIES.items())
_DESTINATIONS = _Choices((code, dest) for code, (_, _, dest) in COUNTRIES.items())


class SampleGenerator:
    """An endless, deterministic stream of sample records.

    ``clock`` gives ``occurred_at`` (epoch seconds); everything else comes from ``seed``.
    """

    def __init__(
        self,
        seed: int | None = None,
        *,
        malformed_ratio: float = 0.02,
        mix: MixSettings | None = None,
        clock: Callable[[], float],
    ) -> None:
        if not 0 <= malformed_ratio <= 1:
            raise ValueError("malformed_ratio must be between 0 and 1")
        self.seed = seed if seed is not None else random.SystemRandom().getrandbits(32)
        self.malformed_ratio = malformed_ratio
        self.mix = mix or MixSettings()
        self._clock = clock
        self._rng = random.Random(self.seed)  # noqa: S311 - sample data, not security
        self._seq = 0
        self._bursts: list[_BurstStep] = []
        self._cards: dict[int, Card] = {}

    def __iter__(self) -> SampleGenerator:
        return self

    def __next__(self) -> SampleRecord:
        return self.next()

    def next(self) -> SampleRecord:
        """The next record: a valid transaction, or now and then a malformed one."""
        self._seq += 1
        event = self._next_event()
        if self._rng.random() < self.malformed_ratio:
            return self._malformed(event, self._rng.choice(MALFORMED_KINDS))
        return self._record(event, encode(event), "valid")

    # -- cards --------------------------------------------------------------------------------

    def card(self, number: int) -> Card:
        """Card ``number`` of the pool, the same for the same seed."""
        card = self._cards.get(number)
        if card is None:
            rng = random.Random(f"{self.seed}:card:{number}")  # noqa: S311
            country = _HOMES.pick(rng)
            card = Card(
                card_id=f"card-{number:07d}",
                account_id=f"acct-{rng.randrange(10**8):08d}",
                country=country,
                currency=COUNTRIES[country][0],
                spend_scale=math.exp(rng.gauss(0.0, 0.35)),
            )
            if len(self._cards) > 10_000:  # a cache, not the pool: keep it small
                self._cards.clear()
            self._cards[number] = card
        return card

    # -- valid events -------------------------------------------------------------------------

    def _next_event(self) -> dict[str, Any]:
        rng = self._rng
        if self._bursts and self._bursts[0].due <= self._seq:
            return self._burst_event(heapq.heappop(self._bursts))
        card = self.card(rng.randrange(self.mix.cards))
        scenario = self._scenario()
        merchant = self._pick(_MERCHANTS[scenario])
        country = card.country
        channel = self._channel(merchant)
        if scenario == "stolen_card":
            channel = "ecommerce"
        if (
            scenario in ("travel", "stolen_card")
            or (scenario == "big_ticket" and rng.random() < self.mix.big_ticket_abroad)
            # offshore sites
            or (scenario == "high_risk" and channel in _NOT_PRESENT and rng.random() < 0.4)
        ):
            country = self._abroad(card.country)
        event = self._event(card, merchant, country, channel, card.spend_scale)
        if scenario == "stolen_card":
            self._start_burst(card, "spree", country)
        elif rng.random() < self.mix.burst_start:
            testers_abroad = rng.random() < 0.5
            self._start_burst(card, "card_testing", country if testers_abroad else card.country)
        return event

    def _scenario(self) -> Scenario:
        roll = self._rng.random()
        mix = self.mix
        for scenario, share in (
            ("travel", mix.travel),
            ("big_ticket", mix.big_ticket),
            ("high_risk", mix.high_risk),
            ("stolen_card", mix.stolen_card),
        ):
            if roll < share:
                return scenario  # type: ignore[return-value]
            roll -= share
        return "everyday"

    def _start_burst(self, card: Card, kind: BurstKind, country: str) -> None:
        low, high = self.mix.burst_length if kind == "card_testing" else self.mix.spree_length
        step = _BurstStep(
            due=self._seq + self._rng.randint(1, 20),
            card=int(card.card_id.removeprefix("card-")),
            remaining=self._rng.randint(low, high),
            kind=kind,
            country=country,
        )
        heapq.heappush(self._bursts, step)

    def _burst_event(self, step: _BurstStep) -> dict[str, Any]:
        card = self.card(step.card)
        if step.kind == "card_testing":
            # Testers try cheap digital goods and, once a number works, a real purchase.
            merchant = self._pick(CARD_TESTING)
            scale = 1.0 if step.remaining > 2 else 12.0
        else:
            merchant, scale = self._pick(STOLEN_CARD), 1.0
        event = self._event(card, merchant, step.country, "ecommerce", scale)
        if step.remaining > 1:
            step.remaining -= 1
            step.due = self._seq + self._rng.randint(1, 20)
            heapq.heappush(self._bursts, step)
        return event

    def _event(
        self, card: Card, merchant: Merchant, country: str, channel: str, scale: float
    ) -> dict[str, Any]:
        rng = self._rng
        currency = card.currency if channel in _NOT_PRESENT else COUNTRIES[country][0]
        usd = merchant.median_usd * scale * math.exp(rng.gauss(0.0, merchant.sigma))
        if merchant.mcc == "6011":
            usd = max(20.0, round(usd / 20) * 20)  # cash comes in notes
        event: dict[str, Any] = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "occurred_at": rfc3339_utc(self._clock()),
            "amount": _local_amount(usd, currency),
            "currency": currency,
            "card_id": card.card_id,
            "account_id": card.account_id,
            "merchant_id": f"m-{merchant.mcc}-{rng.randrange(5000):04d}",
            "merchant_category": merchant.mcc,
            "country": country,
            "card_country": card.country,
            "channel": channel,
        }
        # Fields the processor does not know: carried untouched into the event's ``extra``.
        if channel in _NOT_PRESENT:
            ip_country = country if rng.random() < 0.9 else self._abroad(country)
            event["device"] = {"id": f"dev-{rng.getrandbits(48):012x}", "ip_country": ip_country}
        else:
            event["terminal_id"] = f"T{rng.randrange(10**7):07d}"
        return event

    def _channel(self, merchant: Merchant) -> str:
        if self._rng.random() < self.mix.unusual_channel:
            return self._rng.choice(("in_app", "kiosk", "recurring"))
        return merchant.channel_choices.pick(self._rng)

    def _abroad(self, home: str) -> str:
        while True:
            country = _DESTINATIONS.pick(self._rng)
            if country != home:
                return country

    def _pick(self, merchants: _Choices[Merchant]) -> Merchant:
        return merchants.pick(self._rng)

    # -- records ------------------------------------------------------------------------------

    def _record(self, event: Mapping[str, Any], value: bytes, kind: SampleKind) -> SampleRecord:
        event_id = str(event["event_id"])
        return SampleRecord(
            key=str(event["card_id"]).encode(),
            value=value,
            headers=[(HEADER_KIND, kind.encode()), (HEADER_EVENT_ID, event_id.encode())],
            event_id=event_id,
            kind=kind,
        )

    def _malformed(self, event: dict[str, Any], kind: MalformedKind) -> SampleRecord:
        broken = dict(event)
        rng = self._rng
        if kind == "missing_field":
            del broken[rng.choice(("event_id", "occurred_at", "amount"))]
        elif kind == "mistyped_amount":
            broken["amount"] = str(broken["amount"])
        elif kind == "bad_occurred_at":
            broken["occurred_at"] = rng.choice(
                (
                    "31/12/2025 23:59:59",  # a local format, no zone
                    str(event["occurred_at"]).removesuffix("Z"),  # no zone
                    "2025-02-30T10:00:00Z",  # not a real date
                )
            )
        elif kind == "oversized":
            broken["notes"] = "x" * OVERSIZED_BYTES
        value = encode(broken)
        if kind == "bad_json":
            value = value[: rng.randrange(10, len(value) - 1)]
        elif kind == "empty":
            value = b""
        return self._record(event, value, kind)


def encode(event: Mapping[str, Any]) -> bytes:
    """Compact JSON, amounts written with their exact decimal digits."""
    return orjson.dumps(event, default=_exact_decimal)


def _exact_decimal(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value).encode())
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _local_amount(usd: float, currency: str) -> Decimal:
    local = max(usd, 0.5) / _USD_PER_UNIT[currency]
    if currency in _NO_MINOR_UNITS:
        return Decimal(round(local))
    return Decimal(f"{local:.2f}")
