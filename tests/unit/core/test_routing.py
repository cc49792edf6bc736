"""Choosing which API Tasks score an event."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from streamproc.core.events import TransactionEvent, decode_event
from streamproc.core.routing import (
    Condition,
    Route,
    RoutingSpec,
    check_routing,
)

BASE: dict[str, Any] = {
    "event_id": "evt-1",
    "occurred_at": "2026-11-28T18:04:15Z",
    "amount": 100.00,
    "country": "US",
    "channel": "ecom",
    "risk": {"velocity": 3, "vip": True, "label": "1"},
}


def event(**changes: Any) -> TransactionEvent:
    obj = {k: v for k, v in {**BASE, **changes}.items() if v is not None}
    return decode_event(json.dumps(obj).encode())


def cond(field: str, op: str, value: Any = None) -> Condition:
    data = {"field": field, "op": op} | ({} if value is None else {"value": value})
    return Condition.model_validate(data)


@pytest.mark.parametrize(
    ("field", "op", "value", "expected"),
    [
        ("amount", "eq", 100, True),
        ("amount", "eq", "100", False),
        ("amount", "eq", 100.001, False),
        ("amount", "ne", 100, False),
        ("amount", "gt", 99.99, True),
        ("amount", "gt", 100, False),
        ("amount", "gte", 100, True),
        ("amount", "lt", 100.01, True),
        ("amount", "lte", 99.999999999999999999, True),
        ("amount", "gte", "100.000000000000000001", False),
        ("country", "eq", "US", True),
        ("country", "eq", "us", False),
        ("country", "in", ["CA", "US"], True),
        ("country", "not_in", ["CA", "US"], False),
        ("country", "gt", 1, False),
        ("currency", "ne", "USD", True),
        ("currency", "not_in", ["USD"], True),
        ("currency", "eq", "USD", False),
        ("currency", "in", ["USD"], False),
        ("currency", "lt", 5, False),
        ("currency", "missing", None, True),
        ("currency", "exists", None, False),
        ("channel", "exists", None, True),
        ("extra.risk.velocity", "gte", 3, True),
        ("extra.risk.velocity", "in", [1, 3.0], True),
        ("extra.risk.vip", "eq", True, True),
        ("extra.risk.vip", "eq", 1, False),
        ("extra.risk.vip", "in", [1], False),
        ("extra.risk.vip", "gt", 0, False),
        ("extra.risk.label", "eq", 1, False),
        ("extra.risk.label", "eq", "1", True),
        ("extra.risk", "eq", "x", False),
        ("extra.risk", "ne", "x", True),
        ("extra.risk.nothing", "missing", None, True),
    ],
)
def test_condition_semantics(field: str, op: str, value: Any, expected: bool) -> None:
    """Each operator follows the documented typed, exact semantics."""
    assert cond(field, op, value).holds(event()) is expected


def test_amount_threshold_is_exact_at_the_boundary() -> None:
    """A threshold written as 1000.10 splits 1000.1 and 1000.09 exactly, with no float error."""
    gte = cond("amount", "gte", 1000.10)
    assert gte.holds(event(amount=1000.1))
    assert not gte.holds(event(amount=1000.09))
    assert gte.value == Decimal("1000.1")


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({"field": "device.id", "op": "eq", "value": "x"}, "unknown field"),
        ({"field": "amount", "op": "like", "value": "x"}, "op"),
        ({"field": "amount", "op": "gt", "value": "big"}, "needs a number"),
        ({"field": "amount", "op": "gt", "value": True}, "needs a number"),
        ({"field": "amount", "op": "gt"}, "needs a value"),
        ({"field": "amount", "op": "eq"}, "needs a value"),
        ({"field": "amount", "op": "in", "value": []}, "non-empty list"),
        ({"field": "amount", "op": "in", "value": "US"}, "non-empty list"),
        ({"field": "amount", "op": "in", "value": [[1]]}, "compares with"),
        ({"field": "amount", "op": "eq", "value": {"a": 1}}, "compares with"),
        ({"field": "amount", "op": "exists", "value": 1}, "takes no value"),
        ({"field": "amount", "op": "eq", "value": 1, "extra": 2}, "extra"),
    ],
)
def test_invalid_conditions_fail_validation(data: dict[str, Any], why: str) -> None:
    """Unknown fields, bad operators and values that do not fit the operator are rejected."""
    with pytest.raises(ValidationError, match=why):
        Condition.model_validate(data)


SPEC = RoutingSpec.model_validate(
    {
        "rules": [
            {
                "name": "big_foreign",
                "when": [
                    {"field": "amount", "op": "gte", "value": 1000},
                    {"field": "country", "op": "ne", "value": "US"},
                ],
                "tasks": ["fraud", "aml"],
            },
            {
                "name": "big",
                "when": [{"field": "amount", "op": "gte", "value": 1000}],
                "tasks": ["aml"],
            },
            {
                "name": "pos",
                "when": [{"field": "channel", "op": "eq", "value": "pos"}],
                "tasks": ["fraud_lite"],
            },
        ],
        "default_tasks": ["fraud"],
    }
)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"amount": 5000, "country": "DE"}, Route("big_foreign", ("fraud", "aml"))),
        ({"amount": 5000, "channel": "pos"}, Route("big", ("aml",))),
        ({"amount": 5, "channel": "pos"}, Route("pos", ("fraud_lite",))),
        ({"amount": 5}, Route("default", ("fraud",))),
    ],
)
def test_first_matching_rule_wins(changes: dict[str, Any], expected: Route) -> None:
    """Rules are tried in order, all conditions must hold, and the default catches the rest."""
    assert SPEC.route(event(**changes)) == expected


def test_rule_without_conditions_matches_everything() -> None:
    """An empty when is a catch-all rule."""
    spec = RoutingSpec.model_validate(
        {"rules": [{"name": "all", "tasks": ["x"]}], "default_tasks": ["y"]}
    )
    assert spec.route(event()) == Route("all", ("x",))


def test_default_combine_policy_is_strictest() -> None:
    """Without a combine setting, verdicts combine by strictest."""
    assert SPEC.combine == "strictest"


WHEN = [{"field": "amount", "op": "gt", "value": 0}]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({"default_tasks": []}, "at least 1"),
        ({}, "default_tasks"),
        ({"default_tasks": ["a", "a"]}, "listed twice"),
        ({"default_tasks": ["a"], "combine": "average"}, "combine"),
        ({"default_tasks": ["a"], "rules": [{"name": "r", "tasks": []}]}, "at least 1"),
        ({"default_tasks": ["a"], "rules": [{"name": "default", "tasks": ["a"]}]}, "reserved"),
        ({"default_tasks": ["a"], "rules": [{"name": "a b", "tasks": ["a"]}]}, "letters"),
        (
            {"default_tasks": ["a"], "rules": [{"name": "r", "when": WHEN, "tasks": ["a"]}] * 2},
            "used twice",
        ),
        (
            {
                "default_tasks": ["a"],
                "rules": [{"name": "r", "tasks": ["a"]}, {"name": "s", "tasks": ["a"]}],
            },
            "never match",
        ),
    ],
)
def test_invalid_routing_specs_fail_validation(data: dict[str, Any], why: str) -> None:
    """Empty task lists, duplicates, the reserved name and unreachable rules are rejected."""
    with pytest.raises(ValidationError, match=why):
        RoutingSpec.model_validate(data)


def test_check_routing_names_unknown_tasks() -> None:
    """check_routing lists each unknown task with where it is used."""
    problems = check_routing(SPEC, {"fraud", "aml"})
    assert problems == [
        "rules[2] (pos): unknown task 'fraud_lite' (configured tasks: aml, fraud)",
    ]
    assert check_routing(SPEC, {"fraud", "aml", "fraud_lite"}) == []
    assert len(check_routing(SPEC, set())) == 5


@given(
    st.decimals(
        allow_nan=False, allow_infinity=False, places=4, min_value=-(10**6), max_value=10**6
    )
)
def test_ordered_operators_agree_with_decimal_comparison(amount: Decimal) -> None:
    """gt/gte/lt/lte on amounts agree exactly with Decimal comparison at a fixed threshold."""
    threshold = Decimal("1000.0001")
    ev = decode_event(
        b'{"event_id":"e","occurred_at":"2026-01-01T00:00:00Z","amount":%s}' % str(amount).encode()
    )
    assert cond("amount", "gt", "1000.0001").holds(ev) is (ev.amount > threshold)
    assert cond("amount", "gte", "1000.0001").holds(ev) is (ev.amount >= threshold)
    assert cond("amount", "lt", "1000.0001").holds(ev) is (ev.amount < threshold)
    assert cond("amount", "lte", "1000.0001").holds(ev) is (ev.amount <= threshold)
