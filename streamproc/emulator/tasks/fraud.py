"""``Fraud Score API Task`` (file 201): the task streamproc calls for every card transaction.

The variable names are a contract with the processor's botInput mapping; keep them exact.

Inputs: ``iStrEventId`` STRING (optional; makes velocity idempotent), ``iNumAmount`` NUMBER
(required, 0 to 10^12), ``iStrCurrency`` STRING (ISO 4217, default USD), ``iStrCardId``
STRING, ``iStrCountry`` STRING (transaction country, ISO alpha-2), ``iStrCardCountry`` STRING,
``iStrMerchantCategory`` STRING (4-digit MCC), ``iStrChannel`` STRING (pos, ecommerce, atm,
moto, contactless; others accepted and flagged), ``iDtOccurredAt`` DATETIME (optional).

Outputs: ``oNumScore`` NUMBER 0-100, ``oStrDecision`` STRING (APPROVE, REVIEW, DECLINE) and
``oLstReasons`` LIST of STRING reason codes. The rules are in
:mod:`streamproc.emulator.tasks.fraud_rules`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from streamproc.core.values import BotValue, ValueType
from streamproc.emulator.tasks.base import (
    ApiTask,
    InputSpec,
    OutputSpec,
    datetime_input,
    number_input,
    number_out,
    string_out,
    text_input,
)
from streamproc.emulator.tasks.fraud_rules import FraudScorer, Transaction
from streamproc.errors import BotValueError

MAX_AMOUNT = Decimal(10) ** 12


class FraudScoreTask(ApiTask):
    file_id = 201
    path = "Automation Anywhere\\Bots\\Fraud Score API Task"
    summary = "Scores a card transaction 0-100 and decides APPROVE, REVIEW or DECLINE."
    inputs = (
        InputSpec("iStrEventId", ValueType.STRING, False, "event id; a replay is not re-counted"),
        InputSpec("iNumAmount", ValueType.NUMBER, True, "amount in iStrCurrency, 0 to 10^12"),
        InputSpec("iStrCurrency", ValueType.STRING, False, "ISO 4217 code, default USD"),
        InputSpec("iStrCardId", ValueType.STRING, False, "card identifier (for velocity)"),
        InputSpec("iStrCountry", ValueType.STRING, False, "transaction country, ISO alpha-2"),
        InputSpec("iStrCardCountry", ValueType.STRING, False, "card issuing country, alpha-2"),
        InputSpec("iStrMerchantCategory", ValueType.STRING, False, "4-digit merchant category"),
        InputSpec("iStrChannel", ValueType.STRING, False, "pos, ecommerce, atm, moto, contactless"),
        InputSpec("iDtOccurredAt", ValueType.DATETIME, False, "when the transaction happened"),
    )
    outputs = (
        OutputSpec("oNumScore", ValueType.NUMBER, "risk score 0-100"),
        OutputSpec("oStrDecision", ValueType.STRING, "APPROVE, REVIEW or DECLINE"),
        OutputSpec("oLstReasons", ValueType.LIST, "reason codes (STRING), in rule order"),
    )

    def __init__(
        self, scorer: FraudScorer | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._scorer = scorer or FraudScorer()
        self._clock = clock

    def check(self, inputs: Mapping[str, BotValue]) -> None:
        amount = number_input(inputs, "iNumAmount")
        if amount is not None and not 0 <= amount <= MAX_AMOUNT:
            raise BotValueError("botInput.iNumAmount", "must be between 0 and 10^12")

    def run(self, inputs: Mapping[str, BotValue]) -> dict[str, Any]:
        occurred = datetime_input(inputs, "iDtOccurredAt")
        txn = Transaction(
            amount=number_input(inputs, "iNumAmount") or Decimal(0),
            currency=text_input(inputs, "iStrCurrency"),
            card_id=text_input(inputs, "iStrCardId"),
            country=text_input(inputs, "iStrCountry"),
            card_country=text_input(inputs, "iStrCardCountry"),
            merchant_category=text_input(inputs, "iStrMerchantCategory"),
            channel=text_input(inputs, "iStrChannel"),
            event_id=text_input(inputs, "iStrEventId"),
            occurred_at=occurred.timestamp() if occurred is not None else None,
        )
        result = self._scorer.score(txn, self._clock())
        return {
            "oNumScore": number_out(result.score),
            "oStrDecision": string_out(result.decision),
            "oLstReasons": {"type": "LIST", "list": [string_out(r) for r in result.reasons]},
        }
