from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamproc.core.values import (
    MAX_NESTING,
    BooleanValue,
    DateTimeValue,
    DictionaryValue,
    ListValue,
    NumberValue,
    OpaqueValue,
    StringValue,
    TableValue,
    ValueType,
    dump_bot_values,
    dump_value,
    from_python,
    outputs_to_python,
    parse_bot_values,
    parse_value,
    to_python,
    values_from_python,
)
from streamproc.errors import BotValueError

MINUS_6 = timezone(timedelta(hours=-6))

# Each wire value in the shape the Control Room sends, and its typed form.
ROUND_TRIPS: list[tuple[str, dict[str, Any], Any]] = [
    ("string", {"type": "STRING", "string": "76131"}, StringValue("76131")),
    ("number", {"type": "NUMBER", "number": "42.50"}, NumberValue(Decimal("42.50"))),
    ("boolean", {"type": "BOOLEAN", "boolean": "true"}, BooleanValue(True)),
    (
        "datetime",
        {"type": "DATETIME", "string": "2022-04-07T00:15:00-06:00[America/Denver]"},
        DateTimeValue(datetime(2022, 4, 7, 0, 15, tzinfo=MINUS_6), "America/Denver"),
    ),
    (
        "list",
        {
            "type": "LIST",
            "list": [{"type": "STRING", "string": "a"}, {"type": "NUMBER", "number": "1"}],
        },
        ListValue((StringValue("a"), NumberValue(Decimal(1)))),
    ),
    (
        "dictionary",
        {
            "type": "DICTIONARY",
            "dictionary": [{"key": "key1", "value": {"type": "STRING", "string": "value1"}}],
        },
        DictionaryValue((("key1", StringValue("value1")),)),
    ),
    (
        "table",
        {
            "type": "TABLE",
            "table": {
                "schema": [{"name": "col1"}, {"name": "col2"}],
                "rows": [
                    {
                        "values": [
                            {"type": "STRING", "string": "x"},
                            {"type": "BOOLEAN", "boolean": "false"},
                        ]
                    }
                ],
            },
        },
        TableValue(("col1", "col2"), ((StringValue("x"), BooleanValue(False)),)),
    ),
    (
        "opaque",
        {"type": "FILE", "file": {"name": "a.pdf", "bytes": "AAE="}, "extra": [1, 2]},
        OpaqueValue(
            ValueType.FILE,
            {"type": "FILE", "file": {"name": "a.pdf", "bytes": "AAE="}, "extra": [1, 2]},
        ),
    ),
]


@pytest.mark.parametrize(
    ("wire", "typed"), [(w, t) for _, w, t in ROUND_TRIPS], ids=[n for n, _, _ in ROUND_TRIPS]
)
def test_wire_round_trip_for_every_type(wire: dict[str, Any], typed: Any) -> None:
    """Each documented value shape parses to its typed form and dumps back unchanged."""
    assert parse_value(wire) == typed
    assert dump_value(typed) == wire


def test_outputs_with_empty_sibling_keys_parse() -> None:
    """Outputs carrying empty string/number/boolean siblings parse by their own type only."""
    number = {"type": "NUMBER", "string": "", "number": "42", "boolean": ""}
    boolean = {"type": "BOOLEAN", "boolean": "true", "string": "", "number": ""}
    assert parse_value(number) == NumberValue(Decimal(42))
    assert parse_value(boolean) == BooleanValue(True)


def test_native_number_and_boolean_inputs_are_accepted() -> None:
    """JSON numbers and booleans are tolerated on input, and dumped as strings."""
    assert parse_value({"type": "NUMBER", "number": 7}) == NumberValue(Decimal(7))
    assert parse_value({"type": "NUMBER", "number": 0.5}) == NumberValue(Decimal("0.5"))
    assert parse_value({"type": "BOOLEAN", "boolean": False}) == BooleanValue(False)
    assert dump_value(NumberValue(Decimal("1E+3"))) == {"type": "NUMBER", "number": "1000"}


def test_type_defaults_to_string() -> None:
    """A value without a type is a STRING, as the API documents."""
    assert parse_value({"string": "x"}) == StringValue("x")


@pytest.mark.parametrize(
    ("wire", "path"),
    [
        ({"type": "NUMBER", "number": "abc"}, "v.number"),
        ({"type": "NUMBER", "number": "NaN"}, "v.number"),
        ({"type": "BOOLEAN", "boolean": "yes"}, "v.boolean"),
        ({"type": "DATETIME", "string": "2022-04-07T00:15:00"}, "v.string"),
        ({"type": "LIST", "list": {}}, "v.list"),
        ({"type": "DICTIONARY", "dictionary": [{"k": 1}]}, "v.dictionary[0]"),
        (
            {"type": "TABLE", "table": {"schema": [{"name": "a"}], "rows": [{"values": []}]}},
            "v.table.rows[0]",
        ),
        ({"type": "SPACESHIP"}, "v.type"),
        ("plain", "v"),
    ],
)
def test_malformed_values_name_their_path(wire: Any, path: str) -> None:
    """A malformed value raises BotValueError naming exactly where it is wrong."""
    with pytest.raises(BotValueError) as caught:
        parse_value(wire, "v")
    assert caught.value.path == path


def test_bot_values_object_round_trip() -> None:
    """A whole botOutput object parses to a name -> value dict and dumps back."""
    wire = {
        "State": {"type": "STRING", "string": "California"},
        "Place": {"type": "STRING", "string": "San Jose"},
    }
    typed = parse_bot_values(wire, "botOutput")
    assert typed == {"State": StringValue("California"), "Place": StringValue("San Jose")}
    assert dump_bot_values(typed) == wire
    assert parse_bot_values(None) == {}


def test_plain_python_converters_both_ways() -> None:
    """str, Decimal, bool, datetime, list, dict and table rows convert to and from bot values."""
    moment = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    plain = {
        "s": "x",
        "n": Decimal("1.5"),
        "i": 3,
        "b": True,
        "d": moment,
        "l": ["a", 1],
        "m": {"k": False},
    }
    typed = values_from_python(plain)
    assert typed["s"] == StringValue("x")
    assert typed["n"] == NumberValue(Decimal("1.5"))
    assert typed["i"] == NumberValue(Decimal(3))
    assert typed["b"] == BooleanValue(True)
    assert typed["d"] == DateTimeValue(moment)
    assert typed["l"] == ListValue((StringValue("a"), NumberValue(Decimal(1))))
    assert typed["m"] == DictionaryValue((("k", BooleanValue(False)),))
    back = outputs_to_python(typed.items())
    assert back == {**plain, "i": Decimal(3), "l": ["a", Decimal(1)]}


def test_table_from_and_to_rows() -> None:
    """Row dicts become a TABLE (columns from the first row) and come back as row dicts."""
    rows = [{"card": "4111", "amount": Decimal("9.99")}, {"card": "5500", "amount": Decimal(1)}]
    table = TableValue.from_rows(rows)
    assert table.columns == ("card", "amount")
    assert to_python(table) == rows
    assert parse_value(dump_value(table)) == table


def test_opaque_values_convert_to_their_raw_object() -> None:
    """An uninterpreted type converts to its raw wire object, unchanged."""
    raw = {"type": "RECORD", "record": {"values": []}}
    assert to_python(parse_value(raw)) == raw


def test_naive_datetime_and_unknown_objects_are_refused() -> None:
    """A datetime without a zone, or an object with no bot type, raises BotValueError."""
    with pytest.raises(BotValueError):
        from_python(datetime(2024, 1, 1))
    with pytest.raises(BotValueError):
        from_python(object())


json_leaf = st.one_of(
    st.text().map(StringValue),
    st.decimals(allow_nan=False, allow_infinity=False).map(NumberValue),
    st.booleans().map(BooleanValue),
)
bot_values = st.recursive(
    json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(lambda xs: ListValue(tuple(xs))),
        st.lists(st.tuples(st.text(max_size=5), children), max_size=4).map(
            lambda kv: DictionaryValue(tuple(kv))
        ),
    ),
    max_leaves=12,
)


@given(bot_values)
def test_any_value_survives_dump_and_parse(value: Any) -> None:
    """Property: parse(dump(v)) == v for nested strings, numbers, booleans, lists, dicts."""
    assert parse_value(dump_value(value)) == value


def _nested(kind: str, depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"type": "STRING", "string": "x"}
    for _ in range(depth):
        if kind == "LIST":
            value = {"type": "LIST", "list": [value]}
        elif kind == "DICTIONARY":
            value = {"type": "DICTIONARY", "dictionary": [{"key": "k", "value": value}]}
        else:
            value = {
                "type": "TABLE",
                "table": {"schema": [{"name": "c"}], "rows": [{"values": [value]}]},
            }
    return value


@pytest.mark.parametrize("kind", ["LIST", "DICTIONARY", "TABLE"])
@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 500, 5_000])
def test_values_nested_too_deeply_are_refused_naming_the_variable(kind: str, depth: int) -> None:
    """A botInput or botOutput nested past the limit is a BotValueError for its variable."""
    with pytest.raises(BotValueError) as info:
        parse_bot_values({"ok": {"string": "y"}, "iDeep": _nested(kind, depth)}, "botOutput")
    assert info.value.path == "botOutput.iDeep"
    assert f"nested deeper than {MAX_NESTING} levels" in info.value.problem


@pytest.mark.parametrize("kind", ["LIST", "DICTIONARY", "TABLE"])
def test_values_nested_up_to_the_limit_are_accepted(kind: str) -> None:
    """Nesting exactly at the limit parses and round-trips."""
    wire = _nested(kind, MAX_NESTING)
    assert dump_value(parse_value(wire)) == wire


def test_plain_python_nested_too_deeply_is_refused() -> None:
    """A deeply nested event field mapped to a LIST is a BotValueError, not a RecursionError."""
    deep: Any = 1
    for _ in range(5_000):
        deep = [deep]
    with pytest.raises(BotValueError) as info:
        from_python(deep, "botInput.iLst")
    assert info.value.path == "botInput.iLst"
    shallow: Any = 1
    for _ in range(MAX_NESTING):
        shallow = [shallow]
    assert isinstance(from_python(shallow), ListValue)
