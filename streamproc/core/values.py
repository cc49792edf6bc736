"""Typed bot values: the ``botInput`` and ``hotBotResult.botOutput`` entries of an API Task.

On the wire every value is an object with a ``type`` discriminator (STRING when absent) and
its payload under a key named for the type. The shapes, as the Control Room sends them:

- STRING ``{"type":"STRING","string":"x"}``
- NUMBER ``{"type":"NUMBER","number":"42.5"}``: a decimal *string*; native numbers are
  accepted on input, and outputs may carry empty ``string``/``boolean`` siblings
- BOOLEAN ``{"type":"BOOLEAN","boolean":"true"}``: also a string; native booleans accepted
- DATETIME ``{"type":"DATETIME","string":"2022-04-07T00:15:00-06:00[America/Denver]"}``
- LIST ``{"type":"LIST","list":[<value>, ...]}``
- DICTIONARY ``{"type":"DICTIONARY","dictionary":[{"key":"k","value":<value>}, ...]}``
- TABLE ``{"type":"TABLE","table":{"schema":[{"name":"c"}],"rows":[{"values":[<value>]}]}}``

Every other listed type (FILE, RECORD, CREDENTIAL, ...) is kept as the raw object and
round-trips unchanged. This module is pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, TypeAlias

from streamproc.errors import BotValueError


class ValueType(StrEnum):
    """Every value type the API Task execute endpoint lists."""

    STRING = "STRING"
    NUMBER = "NUMBER"
    BOOLEAN = "BOOLEAN"
    FILE = "FILE"
    ITERATOR = "ITERATOR"
    LIST = "LIST"
    DICTIONARY = "DICTIONARY"
    TABLE = "TABLE"
    VARIABLE = "VARIABLE"
    CONDITIONAL = "CONDITIONAL"
    WINDOW = "WINDOW"
    TASKBOT = "TASKBOT"
    DATETIME = "DATETIME"
    UIOBJECT = "UIOBJECT"
    RECORD = "RECORD"
    EXCEPTION = "EXCEPTION"
    CREDENTIAL = "CREDENTIAL"
    COORDINATE = "COORDINATE"
    IMAGE = "IMAGE"
    REGION = "REGION"
    PROPERTIES = "PROPERTIES"
    TRIGGER = "TRIGGER"
    CONDITIONALGROUP = "CONDITIONALGROUP"
    FORM = "FORM"
    FORMELEMENT = "FORMELEMENT"
    HOTKEY = "HOTKEY"
    WORKITEM = "WORKITEM"


_VALUE_TYPES = frozenset(t.value for t in ValueType)
# How deep LIST, DICTIONARY and TABLE values may nest. Far beyond what an API Task exchanges,
# and far below Python's recursion limit, so a hostile document is a BotValueError naming its
# variable rather than a RecursionError.
MAX_NESTING = 64
# A Java ZonedDateTime string: ISO offset date-time, optionally followed by a [zone id].
_ZONED = re.compile(r"^(?P<iso>[^\[\]]+?)(?:\[(?P<zone>[^\[\]]+)\])?$")


@dataclass(frozen=True, slots=True)
class StringValue:
    value: str
    type: ValueType = field(default=ValueType.STRING, init=False)


@dataclass(frozen=True, slots=True)
class NumberValue:
    value: Decimal
    type: ValueType = field(default=ValueType.NUMBER, init=False)


@dataclass(frozen=True, slots=True)
class BooleanValue:
    value: bool
    type: ValueType = field(default=ValueType.BOOLEAN, init=False)


@dataclass(frozen=True, slots=True)
class DateTimeValue:
    """An offset-aware datetime, with the zone id the Control Room appends in brackets."""

    value: datetime
    zone: str | None = None
    type: ValueType = field(default=ValueType.DATETIME, init=False)


@dataclass(frozen=True, slots=True)
class ListValue:
    items: tuple[BotValue, ...]
    type: ValueType = field(default=ValueType.LIST, init=False)


@dataclass(frozen=True, slots=True)
class DictionaryValue:
    """Ordered key/value entries; the wire form is a list, so order is kept."""

    entries: tuple[tuple[str, BotValue], ...]
    type: ValueType = field(default=ValueType.DICTIONARY, init=False)

    def get(self, key: str) -> BotValue | None:
        for k, v in self.entries:
            if k == key:
                return v
        return None


@dataclass(frozen=True, slots=True)
class TableValue:
    """Columns by name, rows aligned by position with the columns."""

    columns: tuple[str, ...]
    rows: tuple[tuple[BotValue, ...], ...]
    type: ValueType = field(default=ValueType.TABLE, init=False)

    @classmethod
    def from_rows(
        cls, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None
    ) -> TableValue:
        """Build a table from row dicts; columns default to the first row's keys, in order."""
        cols = tuple(columns) if columns is not None else (tuple(rows[0]) if rows else ())
        return cls(
            columns=cols,
            rows=tuple(
                tuple(from_python(row.get(c), path=f"rows[{i}].{c}") for c in cols)
                for i, row in enumerate(rows)
            ),
        )


@dataclass(frozen=True, slots=True)
class OpaqueValue:
    """A value of a type streamproc does not interpret; ``raw`` is the wire object, verbatim."""

    type: ValueType
    raw: Mapping[str, Any]


BotValue: TypeAlias = (
    StringValue
    | NumberValue
    | BooleanValue
    | DateTimeValue
    | ListValue
    | DictionaryValue
    | TableValue
    | OpaqueValue
)


# ---------------------------------------------------------------------------------------
# wire -> typed


def parse_value(obj: Any, path: str = "value") -> BotValue:
    """Parse one wire value; raise :class:`BotValueError` naming ``path`` when malformed."""
    return _parse(obj, path, _Nesting(path))


@dataclass(slots=True)
class _Nesting:
    """The variable being parsed (named when it nests too deeply) and the current depth."""

    variable: str
    depth: int = 0


def _parse(obj: Any, path: str, nesting: _Nesting) -> BotValue:
    if not isinstance(obj, Mapping):
        raise BotValueError(path, f"expected an object with a 'type', got {_kind(obj)}")
    raw_type = obj.get("type", ValueType.STRING.value)
    if not isinstance(raw_type, str) or raw_type not in _VALUE_TYPES:
        raise BotValueError(f"{path}.type", f"unknown value type {raw_type!r}")
    vtype = ValueType(raw_type)
    if vtype is ValueType.STRING:
        return StringValue(_require_str(obj, "string", path))
    if vtype is ValueType.NUMBER:
        return NumberValue(_parse_number(obj.get("number"), f"{path}.number"))
    if vtype is ValueType.BOOLEAN:
        return BooleanValue(_parse_boolean(obj.get("boolean"), f"{path}.boolean"))
    if vtype is ValueType.DATETIME:
        return _parse_datetime(_require_str(obj, "string", path), f"{path}.string")
    if vtype not in (ValueType.LIST, ValueType.DICTIONARY, ValueType.TABLE):
        return OpaqueValue(vtype, dict(obj))
    if nesting.depth >= MAX_NESTING:
        raise BotValueError(nesting.variable, f"values nested deeper than {MAX_NESTING} levels")
    nesting.depth += 1
    try:
        if vtype is ValueType.LIST:
            items = obj.get("list")
            if not isinstance(items, list):
                raise BotValueError(f"{path}.list", f"expected an array, got {_kind(items)}")
            return ListValue(
                tuple(_parse(v, f"{path}.list[{i}]", nesting) for i, v in enumerate(items))
            )
        if vtype is ValueType.DICTIONARY:
            return _parse_dictionary(obj.get("dictionary"), f"{path}.dictionary", nesting)
        return _parse_table(obj.get("table"), f"{path}.table", nesting)
    finally:
        nesting.depth -= 1


def parse_bot_values(obj: Any, path: str = "botInput") -> dict[str, BotValue]:
    """Parse a ``botInput`` or ``botOutput`` object: variable name -> typed value."""
    if obj is None:
        return {}
    if not isinstance(obj, Mapping):
        raise BotValueError(path, f"expected an object of variables, got {_kind(obj)}")
    out: dict[str, BotValue] = {}
    for name, value in obj.items():
        out[str(name)] = parse_value(value, f"{path}.{name}")
    return out


def _require_str(obj: Mapping[str, Any], key: str, path: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise BotValueError(f"{path}.{key}", f"expected a string, got {_kind(value)}")
    return value


def _parse_number(value: Any, path: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise BotValueError(path, f"expected a decimal number string, got {_kind(value)}")
    if isinstance(value, int | float | Decimal):
        text = repr(value) if isinstance(value, float) else str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise BotValueError(path, f"expected a decimal number string, got {_kind(value)}")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise BotValueError(path, f"{value!r} is not a decimal number") from None
    if not number.is_finite():
        raise BotValueError(path, f"{value!r} is not a finite number")
    return number


def _parse_boolean(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise BotValueError(path, f"expected 'true' or 'false', got {value!r}")


def _parse_datetime(text: str, path: str) -> DateTimeValue:
    match = _ZONED.match(text.strip())
    if match is None:
        raise BotValueError(path, f"{text!r} is not an ISO date-time")
    try:
        moment = datetime.fromisoformat(match["iso"])
    except ValueError:
        raise BotValueError(path, f"{text!r} is not an ISO date-time") from None
    if moment.tzinfo is None:
        raise BotValueError(path, f"{text!r} has no UTC offset")
    return DateTimeValue(moment, match["zone"])


def _parse_dictionary(entries: Any, path: str, nesting: _Nesting) -> DictionaryValue:
    if not isinstance(entries, list):
        raise BotValueError(path, f"expected an array of key/value entries, got {_kind(entries)}")
    parsed: list[tuple[str, BotValue]] = []
    for i, entry in enumerate(entries):
        where = f"{path}[{i}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("key"), str):
            raise BotValueError(where, "expected an entry {'key': <string>, 'value': <value>}")
        parsed.append((entry["key"], _parse(entry.get("value"), f"{where}.value", nesting)))
    return DictionaryValue(tuple(parsed))


def _parse_table(table: Any, path: str, nesting: _Nesting) -> TableValue:
    if not isinstance(table, Mapping):
        raise BotValueError(path, f"expected an object with schema and rows, got {_kind(table)}")
    schema = table.get("schema")
    if not isinstance(schema, list):
        raise BotValueError(f"{path}.schema", f"expected an array, got {_kind(schema)}")
    columns: list[str] = []
    for i, col in enumerate(schema):
        if not isinstance(col, Mapping) or not isinstance(col.get("name"), str):
            raise BotValueError(f"{path}.schema[{i}]", "expected a column {'name': <string>}")
        columns.append(col["name"])
    rows_in = table.get("rows", [])
    if not isinstance(rows_in, list):
        raise BotValueError(f"{path}.rows", f"expected an array, got {_kind(rows_in)}")
    rows: list[tuple[BotValue, ...]] = []
    for r, row in enumerate(rows_in):
        where = f"{path}.rows[{r}]"
        values = row.get("values") if isinstance(row, Mapping) else None
        if not isinstance(values, list):
            raise BotValueError(where, "expected a row {'values': [<value>, ...]}")
        if len(values) != len(columns):
            raise BotValueError(where, f"has {len(values)} values for {len(columns)} columns")
        rows.append(tuple(_parse(v, f"{where}.values[{c}]", nesting) for c, v in enumerate(values)))
    return TableValue(tuple(columns), tuple(rows))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), type(value).__name__
    )


# ---------------------------------------------------------------------------------------
# typed -> wire


def dump_value(value: BotValue) -> dict[str, Any]:
    """The wire object for a typed value, in the shape the Control Room sends."""
    if isinstance(value, StringValue):
        return {"type": "STRING", "string": value.value}
    if isinstance(value, NumberValue):
        return {"type": "NUMBER", "number": format_decimal(value.value)}
    if isinstance(value, BooleanValue):
        return {"type": "BOOLEAN", "boolean": "true" if value.value else "false"}
    if isinstance(value, DateTimeValue):
        text = value.value.isoformat()
        return {"type": "DATETIME", "string": f"{text}[{value.zone}]" if value.zone else text}
    if isinstance(value, ListValue):
        return {"type": "LIST", "list": [dump_value(v) for v in value.items]}
    if isinstance(value, DictionaryValue):
        return {
            "type": "DICTIONARY",
            "dictionary": [{"key": k, "value": dump_value(v)} for k, v in value.entries],
        }
    if isinstance(value, TableValue):
        return {
            "type": "TABLE",
            "table": {
                "schema": [{"name": c} for c in value.columns],
                "rows": [{"values": [dump_value(v) for v in row]} for row in value.rows],
            },
        }
    return dict(value.raw)


def dump_bot_values(values: Mapping[str, BotValue]) -> dict[str, dict[str, Any]]:
    """The wire ``botInput``/``botOutput`` object."""
    return {name: dump_value(v) for name, v in values.items()}


def format_decimal(number: Decimal) -> str:
    """Plain notation (no exponent), as the Control Room prints numbers."""
    return format(number, "f")


# ---------------------------------------------------------------------------------------
# typed <-> plain Python


def to_python(value: BotValue) -> Any:
    """str, Decimal, bool, datetime, list, dict, list of row dicts; opaque values stay raw."""
    if isinstance(value, StringValue | NumberValue | BooleanValue | DateTimeValue):
        return value.value
    if isinstance(value, ListValue):
        return [to_python(v) for v in value.items]
    if isinstance(value, DictionaryValue):
        return {k: to_python(v) for k, v in value.entries}
    if isinstance(value, TableValue):
        return [
            dict(zip(value.columns, (to_python(v) for v in row), strict=True)) for row in value.rows
        ]
    return dict(value.raw)


def from_python(obj: Any, path: str = "value") -> BotValue:
    """Choose the bot type for a plain Python value.

    bool -> BOOLEAN, int/float/Decimal -> NUMBER, str -> STRING, aware datetime -> DATETIME,
    list/tuple -> LIST, mapping -> DICTIONARY. Use :meth:`TableValue.from_rows` for tables.
    Containers nested deeper than :data:`MAX_NESTING` are a BotValueError naming ``path``.
    """
    return _from_python(obj, path, _Nesting(path))


def _from_python(obj: Any, path: str, nesting: _Nesting) -> BotValue:
    if isinstance(obj, StringValue | NumberValue | BooleanValue | DateTimeValue):
        return obj
    if isinstance(obj, ListValue | DictionaryValue | TableValue | OpaqueValue):
        return obj
    if isinstance(obj, bool):
        return BooleanValue(obj)
    if isinstance(obj, int | float | Decimal):
        return NumberValue(_parse_number(obj, path))
    if isinstance(obj, str):
        return StringValue(obj)
    if isinstance(obj, datetime):
        if obj.tzinfo is None:
            raise BotValueError(path, "a DATETIME needs a timezone-aware datetime")
        return DateTimeValue(obj)
    if not isinstance(obj, list | tuple | Mapping):
        raise BotValueError(path, f"no bot value type for {_kind(obj)}")
    if nesting.depth >= MAX_NESTING:
        raise BotValueError(nesting.variable, f"values nested deeper than {MAX_NESTING} levels")
    nesting.depth += 1
    try:
        if isinstance(obj, Mapping):
            return DictionaryValue(
                tuple((str(k), _from_python(v, f"{path}.{k}", nesting)) for k, v in obj.items())
            )
        return ListValue(tuple(_from_python(v, f"{path}[{i}]", nesting) for i, v in enumerate(obj)))
    finally:
        nesting.depth -= 1


def values_from_python(values: Mapping[str, Any]) -> dict[str, BotValue]:
    """Variable name -> plain value, to variable name -> typed value."""
    return {name: from_python(v, f"botInput.{name}") for name, v in values.items()}


def outputs_to_python(values: Iterable[tuple[str, BotValue]]) -> dict[str, Any]:
    """Variable name -> typed value pairs, to a plain dict."""
    return {name: to_python(v) for name, v in values}
