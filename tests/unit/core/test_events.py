"""Decoding and validating card-transaction events."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamproc.core.events import TransactionEvent, check_path, decode_event
from streamproc.errors import DecodeError, EventValidationError

BASE: dict[str, Any] = {
    "event_id": "evt-1",
    "occurred_at": "2026-11-28T18:04:15.250Z",
    "amount": 12.5,
}
FULL: dict[str, Any] = {
    **BASE,
    "currency": "EUR",
    "card_id": "card-1",
    "account_id": "acct-1",
    "merchant_id": "m-1",
    "merchant_category": "5411",
    "country": "DE",
    "card_country": "FR",
    "channel": "ecom",
}


def encode(obj: dict[str, Any]) -> bytes:
    # The stdlib encoder writes integers of any size, which orjson refuses.
    return json.dumps(obj).encode()


def with_field(name: str, value: Any) -> bytes:
    return encode({**FULL, name: value})


def without(name: str) -> bytes:
    return encode({k: v for k, v in FULL.items() if k != name})


def test_full_event_decodes_to_typed_fields() -> None:
    """Every known field lands in its typed attribute."""
    event = decode_event(encode(FULL))
    assert event == TransactionEvent(
        event_id="evt-1",
        occurred_at=datetime(2026, 11, 28, 18, 4, 15, 250000, tzinfo=UTC),
        occurred_at_epoch=datetime(2026, 11, 28, 18, 4, 15, 250000, tzinfo=UTC).timestamp(),
        amount=Decimal("12.5"),
        currency="EUR",
        card_id="card-1",
        account_id="acct-1",
        merchant_id="m-1",
        merchant_category="5411",
        country="DE",
        card_country="FR",
        channel="ecom",
    )
    assert dict(event.extra) == {}


def test_minimal_event_leaves_optional_fields_none() -> None:
    """Only event_id, occurred_at and amount are required."""
    event = decode_event(encode(BASE))
    assert event.currency is None
    assert event.channel is None


def test_amount_keeps_the_literal_digits() -> None:
    """A JSON number becomes the Decimal of its literal text, not of a binary float."""
    raw = b'{"event_id":"e","occurred_at":"2026-01-01T00:00:00Z","amount":0.10}'
    assert str(decode_event(raw).amount) == "0.10"
    big = b'{"event_id":"e","occurred_at":"2026-01-01T00:00:00Z","amount":123456789.123456789}'
    assert decode_event(big).amount == Decimal("123456789.123456789")


def test_integer_and_negative_amounts_are_accepted() -> None:
    """Integer amounts and refunds (negative amounts) are valid."""
    assert decode_event(with_field("amount", 100)).amount == Decimal(100)
    assert decode_event(with_field("amount", -25.75)).amount == Decimal("-25.75")


def test_numbers_in_extra_are_decimals_too() -> None:
    """Unknown numeric fields are exact Decimals, so routing on them is exact."""
    event = decode_event(with_field("risk", {"velocity": 0.3}))
    assert event.field("extra.risk.velocity") == Decimal("0.3")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (None, "null"),
        (b"", "empty"),
        (b"\xff\xfe{}", "UTF-8"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "array"),
        (b'"text"', "string"),
        (b"\xef\xbb\xbf{}", "not JSON"),
        (b'{"a": NaN}', "not JSON"),
        (b'{"a": Infinity}', "not JSON"),
        (b"[" * 5000 + b"]" * 5000, "nested"),
        (b'{"a": "\\ud800"}', "surrogate"),
    ],
)
def test_undecodable_values_raise_decode_error(value: bytes | None, why: str) -> None:
    """Null, empty, non-UTF-8, non-JSON, non-object and lone-surrogate values are DecodeError."""
    with pytest.raises(DecodeError, match=why) as info:
        decode_event(value)
    assert info.value.stage == "decode"


def test_escaped_surrogate_pair_is_fine() -> None:
    """A correctly escaped surrogate pair is ordinary text, not a lone surrogate."""
    raw = encode(FULL)[:-1] + b',"emoji":"\\ud83d\\ude00"}'
    assert decode_event(raw).field("extra.emoji") == "\U0001f600"


def test_oversized_value_is_rejected_before_parsing() -> None:
    """A value over max_bytes is a DecodeError naming the limit."""
    raw = encode(FULL)
    assert decode_event(raw, max_bytes=len(raw)).event_id == "evt-1"
    with pytest.raises(DecodeError, match=f"limit of {len(raw) - 1}"):
        decode_event(raw, max_bytes=len(raw) - 1)


@pytest.mark.parametrize("name", ["event_id", "occurred_at", "amount"])
def test_missing_required_field_names_it(name: str) -> None:
    """An absent required field is an EventValidationError with .field set."""
    with pytest.raises(EventValidationError, match="required") as info:
        decode_event(without(name))
    assert info.value.field == name
    assert info.value.stage == "validate"


@pytest.mark.parametrize("name", sorted(FULL))
def test_null_known_field_is_malformed(name: str) -> None:
    """null in any known field, optional or not, is rejected and named."""
    with pytest.raises(EventValidationError) as info:
        decode_event(with_field(name, None))
    assert info.value.field == name


@pytest.mark.parametrize(
    "name",
    ["event_id", "card_id", "account_id", "merchant_id", "merchant_category", "channel"],
)
@pytest.mark.parametrize("value", ["", "   ", "x" * 129, 7, True, ["a"]])
def test_identifiers_must_be_short_nonblank_strings(name: str, value: Any) -> None:
    """Identifier fields reject empty, blank, over-long and non-string values."""
    with pytest.raises(EventValidationError) as info:
        decode_event(with_field(name, value))
    assert info.value.field == name


def test_identifier_at_the_length_limit_is_accepted() -> None:
    """128 characters is still a valid identifier."""
    assert decode_event(with_field("card_id", "c" * 128)).card_id == "c" * 128


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("currency", "eur"),
        ("currency", "EURO"),
        ("currency", "E1R"),
        ("currency", ""),
        ("currency", 978),
        ("country", "de"),
        ("country", "DEU"),
        ("country", "ÄÖ"),
        ("card_country", "F"),
    ],
)
def test_codes_must_be_uppercase_ascii_letters(name: str, value: Any) -> None:
    """Currency is three and countries two uppercase ASCII letters; nothing is case-folded."""
    with pytest.raises(EventValidationError) as info:
        decode_event(with_field(name, value))
    assert info.value.field == name


@pytest.mark.parametrize(
    "value",
    ["12.5", True, False, [1], {"v": 1}, 1e15, -1e15, 10**20],
)
def test_amount_must_be_an_in_range_json_number(value: Any) -> None:
    """Strings, booleans, containers and absurd magnitudes are not amounts."""
    with pytest.raises(EventValidationError) as info:
        decode_event(with_field("amount", value))
    assert info.value.field == "amount"


@pytest.mark.parametrize("literal", [b"1e-999999999", b"0.0000000000000000001", b"1e400"])
def test_amount_with_extreme_exponent_is_rejected(literal: bytes) -> None:
    """Exponents that would print as huge strings, or scales over 18 places, are refused."""
    raw = b'{"event_id":"e","occurred_at":"2026-01-01T00:00:00Z","amount":' + literal + b"}"
    with pytest.raises(EventValidationError, match="amount"):
        decode_event(raw)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-28T18:04:15Z", datetime(2026, 11, 28, 18, 4, 15, tzinfo=UTC)),
        ("2026-11-28t18:04:15z", datetime(2026, 11, 28, 18, 4, 15, tzinfo=UTC)),
        (
            "2026-11-28 18:04:15.123456789+02:00",
            datetime(2026, 11, 28, 18, 4, 15, 123456, tzinfo=timezone(timedelta(hours=2))),
        ),
        (
            "2026-11-28T18:04:15-05:30",
            datetime(2026, 11, 28, 18, 4, 15, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
        ),
    ],
)
def test_occurred_at_accepts_rfc3339(text: str, expected: datetime) -> None:
    """RFC 3339 timestamps with Z or an offset decode to aware datetimes and epoch seconds."""
    event = decode_event(with_field("occurred_at", text))
    assert event.occurred_at == expected
    assert event.occurred_at.tzinfo is not None
    assert event.occurred_at_epoch == pytest.approx(expected.timestamp())


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-28T18:04:15",  # no offset
        "2026-11-28",  # date only
        "20261128T180415Z",  # ISO basic format
        "2026-11-28T18:04Z",  # no seconds
        "2026-02-30T00:00:00Z",  # no such day
        "2026-11-28T25:00:00Z",
        "2026-11-28T18:04:15+0200",
        "1795889055",
        " 2026-11-28T18:04:15Z",
    ],
)
def test_occurred_at_rejects_non_rfc3339(text: str) -> None:
    """Naive, partial, basic-format and impossible timestamps are rejected."""
    with pytest.raises(EventValidationError) as info:
        decode_event(with_field("occurred_at", text))
    assert info.value.field == "occurred_at"


def test_occurred_at_must_be_a_string() -> None:
    """An epoch number is not an RFC 3339 timestamp."""
    with pytest.raises(EventValidationError, match="string"):
        decode_event(with_field("occurred_at", 1795889055))


def test_unknown_fields_are_carried_in_extra() -> None:
    """Unknown fields are kept, not rejected, and known fields are not duplicated there."""
    event = decode_event(with_field("device", {"id": "d-1", "ips": ["10.0.0.1", None]}))
    assert dict(event.extra) == {"device": {"id": "d-1", "ips": ["10.0.0.1", None]}}
    with pytest.raises(TypeError):
        event.extra["x"] = 1  # type: ignore[index]


def test_field_reads_known_fields_and_extra_paths() -> None:
    """field() reads known names and dotted paths into extra, including list indexes."""
    event = decode_event(with_field("device", {"id": "d-1", "ips": ["10.0.0.1", None]}))
    assert event.field("amount") == Decimal("12.5")
    assert event.field("occurred_at_epoch") == event.occurred_at_epoch
    assert event.field("extra.device.id") == "d-1"
    assert event.field("extra.device.ips.0") == "10.0.0.1"
    assert event.field("extra.device.ips.1") is None
    assert event.field("extra.device.ips.5") is None
    assert event.field("extra.device.id.deeper") is None
    assert event.field("extra.device.ips.x") is None
    assert event.field("extra.nothing") is None


def test_field_rejects_paths_outside_the_event() -> None:
    """A path that is neither a known field nor under extra. is a KeyError."""
    event = decode_event(encode(FULL))
    with pytest.raises(KeyError):
        event.field("device.id")


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        ("amount", True),
        ("extra.device.id", True),
        ("extra.items.0", True),
        ("device.id", False),
        ("extra.", False),
        ("extra.a..b", False),
        ("amountx", False),
    ],
)
def test_check_path(path: str, ok: bool) -> None:
    """check_path accepts known fields and well-formed extra paths, and explains the rest."""
    assert (check_path(path) is None) is ok


@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_bad_input(value: bytes) -> None:
    """Whatever the bytes, decoding either succeeds or raises DecodeError/EventValidationError."""
    with contextlib.suppress(DecodeError, EventValidationError):
        decode_event(value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
fieldnames = st.sampled_from([*sorted(FULL), "extra_1"])


@given(st.dictionaries(fieldnames, json_values, max_size=12), st.booleans())
def test_arbitrary_json_objects_only_raise_bad_input(obj: dict[str, Any], base: bool) -> None:
    """Any JSON object, near-valid or not, decodes or raises DecodeError/EventValidationError."""
    raw = encode({**FULL, **obj} if base else obj)
    try:
        event = decode_event(raw)
    except (DecodeError, EventValidationError):
        return
    assert event.event_id
    assert event.amount.is_finite()


def test_deeply_nested_lone_surrogate_is_still_a_decode_error() -> None:
    """The surrogate check copes with nesting as deep as the decoder accepts."""
    depth = 900
    raw = encode(FULL)[:-1] + b',"x":' + b"[" * depth + b'"\\ud800"' + b"]" * depth + b"}"
    with pytest.raises(DecodeError, match=r"surrogate|nested"):
        decode_event(raw)


def test_repeated_key_keeps_the_last_value() -> None:
    """A key given twice counts once, with its last value."""
    raw = b'{"event_id":"a","event_id":"b","occurred_at":"2026-01-01T00:00:00Z","amount":1}'
    assert decode_event(raw).event_id == "b"
