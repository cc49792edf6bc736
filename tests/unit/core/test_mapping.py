"""Mapping events to botInput and reading the verdict from botOutput."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from streamproc.core.events import TransactionEvent, decode_event
from streamproc.core.mapping import (
    DEFAULT_FRAUD_MAPPING,
    InputVariableSpec,
    OutputSpec,
    TaskMappingSpec,
    TaskVerdict,
    compile_bot_input,
    map_bot_input,
    read_task_output,
)
from streamproc.core.values import (
    BooleanValue,
    BotValue,
    DateTimeValue,
    ListValue,
    NumberValue,
    StringValue,
    dump_bot_values,
    dump_value,
    parse_bot_values,
)
from streamproc.errors import BadOutputError, MappingError

EVENT: dict[str, Any] = {
    "event_id": "evt-1",
    "occurred_at": "2026-11-28T18:04:15Z",
    "amount": 12.50,
    "currency": "EUR",
    "card_id": "card-1",
    "country": "DE",
    "card_country": "FR",
    "merchant_category": "5411",
    "channel": "ecom",
    "device": {"id": " D-1 ", "trusted": "TRUE", "score": "0.75", "tags": ["a", 2]},
    "flag": True,
    "refund": -3.5,
}


def event(**changes: Any) -> TransactionEvent:
    return decode_event(json.dumps({**EVENT, **changes}).encode())


def spec(*inputs: dict[str, Any]) -> TaskMappingSpec:
    return TaskMappingSpec.model_validate({"inputs": inputs})


def one(var: dict[str, Any], ev: TransactionEvent | None = None) -> BotValue | None:
    return map_bot_input(ev or event(), spec({"name": "v", **var})).get("v")


def test_default_fraud_mapping_builds_the_api_task_input() -> None:
    """DEFAULT_FRAUD_MAPPING produces exactly the Fraud Score API Task's typed inputs."""
    bot_input = map_bot_input(event(), DEFAULT_FRAUD_MAPPING)
    assert bot_input == {
        "iStrEventId": StringValue("evt-1"),
        "iNumAmount": NumberValue(Decimal("12.5")),
        "iStrCurrency": StringValue("EUR"),
        "iStrCardId": StringValue("card-1"),
        "iStrCountry": StringValue("DE"),
        "iStrCardCountry": StringValue("FR"),
        "iStrMerchantCategory": StringValue("5411"),
        "iStrChannel": StringValue("ecom"),
        "iDtOccurredAt": DateTimeValue(datetime(2026, 11, 28, 18, 4, 15, tzinfo=UTC)),
    }
    assert dump_bot_values(bot_input)["iNumAmount"] == {"type": "NUMBER", "number": "12.5"}


def test_absent_optional_sources_are_left_out() -> None:
    """An optional input whose source is absent is omitted so the task uses its own default."""
    minimal = decode_event(b'{"event_id":"e","occurred_at":"2026-01-01T00:00:00Z","amount":1}')
    assert list(map_bot_input(minimal, DEFAULT_FRAUD_MAPPING)) == [
        "iStrEventId",
        "iNumAmount",
        "iDtOccurredAt",
    ]


def test_default_fills_an_absent_source() -> None:
    """default is used, converted to the declared type, when the source is absent."""
    assert one({"type": "STRING", "source": "account_id", "default": "none"}) == StringValue("none")
    assert one({"type": "NUMBER", "source": "extra.nope", "default": 0}) == NumberValue(Decimal(0))


def test_required_missing_source_names_variable_and_source() -> None:
    """A required input with no value is a MappingError naming both the variable and the field."""
    with pytest.raises(MappingError, match=r"botInput v \(from extra\.device\.nope\)") as info:
        one({"type": "STRING", "source": "extra.device.nope", "required": True})
    assert info.value.field == "extra.device.nope"
    assert info.value.stage == "map"


def test_constants_are_typed() -> None:
    """A constant becomes a value of the declared type on every event."""
    assert one({"type": "STRING", "constant": "v2"}) == StringValue("v2")
    assert one({"type": "NUMBER", "constant": 0.1}) == NumberValue(Decimal("0.1"))
    assert one({"type": "BOOLEAN", "constant": True}) == BooleanValue(True)
    assert one({"type": "STRING", "constant": False}) == StringValue("false")


@pytest.mark.parametrize(
    ("var", "expected"),
    [
        ({"type": "STRING", "source": "amount"}, StringValue("12.5")),
        ({"type": "STRING", "source": "extra.flag"}, StringValue("true")),
        ({"type": "STRING", "source": "occurred_at"}, StringValue("2026-11-28T18:04:15+00:00")),
        ({"type": "NUMBER", "source": "extra.device.score"}, NumberValue(Decimal("0.75"))),
        ({"type": "NUMBER", "source": "merchant_category"}, NumberValue(Decimal(5411))),
        ({"type": "BOOLEAN", "source": "extra.device.trusted"}, BooleanValue(True)),
        ({"type": "BOOLEAN", "source": "extra.flag"}, BooleanValue(True)),
        (
            {"type": "DATETIME", "source": "extra.when"},
            None,
        ),
        (
            {"type": "LIST", "source": "extra.device.tags"},
            ListValue((StringValue("a"), NumberValue(Decimal(2)))),
        ),
    ],
)
def test_source_values_convert_to_the_declared_type(var: dict[str, Any], expected: Any) -> None:
    """Source values convert per the documented table; absent optional ones are omitted."""
    assert one(var) == expected


def test_datetime_from_extra_text() -> None:
    """RFC 3339 text in extra becomes a DATETIME."""
    ev = event(when="2026-01-02T03:04:05+01:00")
    value = one({"type": "DATETIME", "source": "extra.when"}, ev)
    assert isinstance(value, DateTimeValue)
    assert value.value.isoformat() == "2026-01-02T03:04:05+01:00"


@pytest.mark.parametrize(
    ("var", "changes", "why"),
    [
        ({"type": "NUMBER", "source": "currency"}, {}, "not a decimal number"),
        ({"type": "NUMBER", "source": "extra.flag"}, {}, "boolean"),
        ({"type": "NUMBER", "source": "extra.x"}, {"x": "NaN"}, "finite"),
        ({"type": "BOOLEAN", "source": "extra.x"}, {"x": "yes"}, "'true'/'false'"),
        ({"type": "BOOLEAN", "source": "extra.x"}, {"x": 1}, "'true'/'false'"),
        ({"type": "DATETIME", "source": "extra.x"}, {"x": "2026-01-02T03:04:05"}, "RFC 3339"),
        ({"type": "DATETIME", "source": "extra.x"}, {"x": 1795889055}, "RFC 3339"),
        ({"type": "LIST", "source": "currency"}, {}, "array"),
        ({"type": "LIST", "source": "extra.x"}, {"x": [None]}, "list item"),
        ({"type": "STRING", "source": "extra.device"}, {}, "an object"),
        ({"type": "STRING", "source": "extra.device.tags"}, {}, "an array"),
        ({"type": "STRING", "source": "amount", "transform": "upper"}, {}, "needs text"),
        ({"type": "NUMBER", "source": "currency", "transform": "abs"}, {}, "needs a number"),
    ],
)
def test_unconvertible_values_are_mapping_errors(
    var: dict[str, Any], changes: dict[str, Any], why: str
) -> None:
    """A value that cannot take the declared type is a MappingError saying why."""
    with pytest.raises(MappingError, match=why) as info:
        one(var, event(**changes))
    assert "botInput v" in str(info.value)


@pytest.mark.parametrize(
    ("var", "expected"),
    [
        ({"type": "STRING", "source": "currency", "transform": "lower"}, StringValue("eur")),
        ({"type": "STRING", "source": "extra.device.id", "transform": "trim"}, StringValue("D-1")),
        (
            {"type": "STRING", "source": "extra.device.id", "transform": "upper"},
            StringValue(" D-1 "),
        ),
        ({"type": "STRING", "source": "amount", "transform": "str"}, StringValue("12.5")),
        (
            {"type": "NUMBER", "source": "extra.refund", "transform": "abs"},
            NumberValue(Decimal("3.5")),
        ),
        ({"type": "STRING", "source": "extra.refund", "transform": "abs"}, StringValue("3.5")),
    ],
)
def test_transforms_apply_before_conversion(var: dict[str, Any], expected: BotValue) -> None:
    """upper/lower/trim act on text, str stringifies, abs takes a number's magnitude."""
    assert one(var) == expected


def test_transform_does_not_apply_to_default() -> None:
    """A default is used as written: the transform is for values read from the event."""
    var = {"type": "STRING", "source": "account_id", "default": "None ", "transform": "trim"}
    assert one(var) == StringValue("None ")


@pytest.mark.parametrize(
    ("var", "why"),
    [
        ({"name": "v", "type": "STRING"}, "exactly one of source and constant"),
        ({"name": "v", "type": "STRING", "source": "amount", "constant": "x"}, "exactly one"),
        ({"name": "v", "type": "STRING", "source": "device.id"}, "unknown field"),
        ({"name": "v", "type": "STRING", "source": "extra..x"}, "malformed path"),
        ({"name": "v", "type": "NUMBER", "constant": "abc"}, "cannot be a NUMBER"),
        ({"name": "v", "type": "BOOLEAN", "source": "amount", "default": 3}, "cannot be a BOOLEAN"),
        ({"name": "v", "type": "STRING", "constant": "x", "required": True}, "not a constant"),
        (
            {"name": "v", "type": "STRING", "source": "amount", "default": "0", "required": True},
            "required",
        ),
        ({"name": "v" * 51, "type": "STRING", "source": "amount"}, "at most 50"),
        ({"name": "bad name", "type": "STRING", "source": "amount"}, "pattern"),
        ({"name": "v", "type": "TABLE", "source": "amount"}, "type"),
        ({"name": "v", "type": "STRING", "source": "amount", "transform": "title"}, "transform"),
        ({"name": "v", "type": "STRING", "source": "amount", "sorce": "x"}, "sorce"),
    ],
)
def test_invalid_input_specs_fail_validation(var: dict[str, Any], why: str) -> None:
    """Spec mistakes are caught when the configuration is loaded, not per event."""
    with pytest.raises(ValidationError, match=why):
        InputVariableSpec.model_validate(var)


def test_validation_error_names_the_key_path() -> None:
    """A nested spec error names the index of the offending input."""
    with pytest.raises(ValidationError) as info:
        TaskMappingSpec.model_validate(
            {"inputs": [{"name": "a", "type": "STRING", "source": "amount"}, {"name": "b"}]}
        )
    assert info.value.errors()[0]["loc"][:2] == ("inputs", 1)


def test_task_mapping_rejects_duplicate_or_no_inputs() -> None:
    """Variable names are unique within a task, and a task has at least one input."""
    dup = {"name": "a", "type": "STRING", "source": "amount"}
    with pytest.raises(ValidationError, match="declared twice"):
        spec(dup, dup)
    with pytest.raises(ValidationError, match="at least one"):
        spec()


def test_specs_are_frozen() -> None:
    """Specs cannot be changed after validation."""
    with pytest.raises(ValidationError):
        DEFAULT_FRAUD_MAPPING.inputs[0].name = "x"  # type: ignore[misc]


def outputs(**wire: Any) -> dict[str, BotValue]:
    return parse_bot_values(wire, "botOutput")


GOOD = {
    "oNumScore": {"type": "NUMBER", "number": "87.5"},
    "oStrDecision": {"type": "STRING", "string": "DECLINE"},
    "oLstReasons": {
        "type": "LIST",
        "list": [
            {"type": "STRING", "string": "velocity"},
            {"type": "STRING", "string": " "},
            {"type": "STRING", "string": "geo_mismatch"},
        ],
    },
}


def test_read_task_output_returns_the_verdict() -> None:
    """Score, decision and non-blank reasons are read from the configured variables."""
    verdict = read_task_output(outputs(**GOOD), OutputSpec())
    assert verdict == TaskVerdict(Decimal("87.5"), "DECLINE", ("velocity", "geo_mismatch"))


def test_read_task_output_is_lenient_on_decision_case_and_textual_score() -> None:
    """Decision case and blanks are ignored; a score may arrive as text holding a number."""
    verdict = read_task_output(
        outputs(
            oNumScore={"type": "STRING", "string": " 12 "},
            oStrDecision={"type": "STRING", "string": " review "},
        ),
        OutputSpec(),
    )
    assert verdict == TaskVerdict(Decimal(12), "REVIEW", ())


def test_outputs_the_task_does_not_have_are_not_read() -> None:
    """With score and reasons set to None only the decision is required."""
    verdict = read_task_output(
        outputs(dec={"type": "STRING", "string": "APPROVE"}),
        OutputSpec(score=None, decision="dec", reasons=None),
    )
    assert verdict == TaskVerdict(None, "APPROVE", ())


@pytest.mark.parametrize(
    ("changes", "variable", "why"),
    [
        ({"oNumScore": None}, "oNumScore", "no score"),
        ({"oNumScore": {"type": "NUMBER", "number": "100.01"}}, "oNumScore", "outside 0-100"),
        ({"oNumScore": {"type": "NUMBER", "number": "-1"}}, "oNumScore", "outside 0-100"),
        ({"oNumScore": {"type": "STRING", "string": "high"}}, "oNumScore", "not a number"),
        ({"oNumScore": {"type": "STRING", "string": "NaN"}}, "oNumScore", "outside 0-100"),
        ({"oNumScore": {"type": "BOOLEAN", "boolean": "true"}}, "oNumScore", "expected NUMBER"),
        ({"oStrDecision": None}, "oStrDecision", "no decision"),
        ({"oStrDecision": {"type": "STRING", "string": "BLOCK"}}, "oStrDecision", "not one of"),
        ({"oStrDecision": {"type": "NUMBER", "number": "1"}}, "oStrDecision", "expected STRING"),
        ({"oLstReasons": {"type": "STRING", "string": "x"}}, "oLstReasons", "expected LIST"),
        (
            {"oLstReasons": {"type": "LIST", "list": [{"type": "NUMBER", "number": "1"}]}},
            "oLstReasons",
            r"oLstReasons\[0\] is NUMBER",
        ),
    ],
)
def test_malformed_output_is_a_bad_output_error(
    changes: dict[str, Any], variable: str, why: str
) -> None:
    """A missing or malformed verdict is a permanent BadOutputError naming the variable."""
    wire = {k: v for k, v in {**GOOD, **changes}.items() if v is not None}
    with pytest.raises(BadOutputError, match=why) as info:
        read_task_output(outputs(**wire), OutputSpec())
    assert info.value.variable == variable
    assert not info.value.retryable


def test_missing_reasons_read_as_none() -> None:
    """An absent reasons variable means no reasons, not a broken contract."""
    wire = {k: v for k, v in GOOD.items() if k != "oLstReasons"}
    assert read_task_output(outputs(**wire), OutputSpec()).reasons == ()


@given(
    amount=st.decimals(
        min_value=-(10**9), max_value=10**9, places=2, allow_nan=False, allow_infinity=False
    ),
    currency=st.none() | st.sampled_from(["EUR", "USD"]),
    channel=st.none() | st.text(min_size=1, max_size=20).filter(str.strip),
)
def test_default_mapping_of_any_valid_event_round_trips_on_the_wire(
    amount: Decimal, currency: str | None, channel: str | None
) -> None:
    """Every valid event maps without error, and its botInput survives dump and parse."""
    obj: dict[str, Any] = {"event_id": "e", "occurred_at": "2026-01-01T00:00:00Z"}
    obj |= {k: v for k, v in {"currency": currency, "channel": channel}.items() if v}
    raw = json.dumps(obj)[:-1] + f', "amount": {amount}}}'
    bot_input = map_bot_input(decode_event(raw.encode()), DEFAULT_FRAUD_MAPPING)
    assert bot_input["iNumAmount"] == NumberValue(amount)
    assert parse_bot_values(dump_bot_values(bot_input)) == bot_input


def _var(name: str, kind: str, **fields: Any) -> InputVariableSpec:
    return InputVariableSpec.model_validate({"name": name, "type": kind, **fields})


# Variables of every shape: fast lanes (known field, no transform) and general ones.
_COMPILE_SPECS = [
    _var("iStrEventId", "STRING", source="event_id", required=True),
    _var("iNumAmount", "NUMBER", source="amount", required=True),
    _var("iStrAmount", "STRING", source="amount"),
    _var("iDtOccurredAt", "DATETIME", source="occurred_at"),
    _var("iStrOccurredAt", "STRING", source="occurred_at"),
    _var("iStrCard", "STRING", source="card_id", required=True),
    _var("iStrCountry", "STRING", source="country", default="ZZ"),
    _var("iNumMcc", "NUMBER", source="merchant_category"),
    _var("iStrChannel", "STRING", source="channel", transform="upper"),
    _var("iBoolFlag", "BOOLEAN", source="extra.flag"),
    _var("iLstItems", "LIST", source="extra.items"),
    _var("iStrDevice", "STRING", source="extra.device.id"),
    _var("iStrConst", "STRING", constant="v1"),
    _var("iNumConst", "NUMBER", constant=2.5),
]
_MAYBE_TEXT = st.none() | st.sampled_from(["A1", "5814", "pos", "x y", "12.50", "Ω"])


@st.composite
def events(draw: st.DrawFn) -> TransactionEvent:
    extra: dict[str, Any] = {}
    if draw(st.booleans()):
        extra["flag"] = draw(st.sampled_from([True, False, "true", "FALSE", "maybe", 1]))
    if draw(st.booleans()):
        extra["items"] = draw(st.sampled_from([[1, "a"], [], "not a list", [[1], {"k": 2}]]))
    if draw(st.booleans()):
        extra["device"] = draw(st.sampled_from([{"id": "d-1"}, {"id": 7}, {}, "x"]))
    amount = draw(
        st.decimals(min_value=-(10**6), max_value=10**6, places=2, allow_nan=False)
        | st.sampled_from([Decimal("1E+3"), Decimal("1E-7"), Decimal("-0.00")])
    )
    moment = datetime(2026, 11, 28, 18, 4, 15, 250000, tzinfo=UTC)
    return TransactionEvent(
        event_id=draw(st.sampled_from(["e-1", "evt 2"])),
        occurred_at=moment,
        occurred_at_epoch=moment.timestamp(),
        amount=amount,
        currency=draw(st.none() | st.just("USD")),
        card_id=draw(_MAYBE_TEXT),
        country=draw(st.none() | st.just("US")),
        merchant_category=draw(_MAYBE_TEXT),
        channel=draw(_MAYBE_TEXT),
        extra=extra,
    )


@given(events(), st.lists(st.sampled_from(_COMPILE_SPECS), min_size=1, max_size=6, unique=True))
def test_the_compiled_mapping_writes_what_the_general_one_does(
    event: TransactionEvent, specs: list[InputVariableSpec]
) -> None:
    """compile_bot_input gives the wire objects map_bot_input then dump_value give, and the
    same error when the event cannot be mapped."""
    spec = TaskMappingSpec(inputs=tuple(specs))
    compiled = compile_bot_input(spec)
    expected: dict[str, Any] | MappingError
    try:
        expected = {k: dump_value(v) for k, v in map_bot_input(event, spec).items()}
    except MappingError as exc:
        expected = exc
    if isinstance(expected, MappingError):
        with pytest.raises(MappingError) as info:
            compiled(event)
        assert (str(info.value), info.value.field) == (str(expected), expected.field)
    else:
        assert compiled(event) == expected
