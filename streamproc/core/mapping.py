"""Declarative mapping between events and one API Task's variables.

Inputs: each :class:`InputVariableSpec` names one botInput variable, its bot type, and where
its value comes from: an event field (``source``, a known field or ``extra.<path>``) or a
``constant``. For a source value the steps are: read the field; if it is absent use
``default`` (as written, untransformed), else fail if ``required``, else leave the variable
out so the API Task applies its own default; otherwise apply ``transform`` and convert to the
declared type. Anything that cannot convert is a :class:`MappingError` (stage "map") naming
the variable and the source, so the event is dead-lettered with a reason a person can act on.

Conversions (what a source value may be, per declared type):

- STRING: text; numbers in plain notation; booleans as ``true``/``false``; datetimes in ISO
- NUMBER: numbers, or text holding a finite decimal; never booleans
- BOOLEAN: booleans, or the text ``true``/``false`` in any case
- DATETIME: aware datetimes, or RFC 3339 text with ``Z`` or an offset
- LIST: arrays, each item typed by :func:`~streamproc.core.values.from_python`

Outputs: :func:`read_task_output` turns the botOutput into a :class:`TaskVerdict` or raises
:class:`~streamproc.errors.BadOutputError`, a permanent execute-stage error.

The spec models are frozen pydantic models with ``extra="forbid"`` so that configuration
embeds them directly and a mistake is reported with its key path at start.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from operator import attrgetter
from typing import Annotated, Any, Final, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, StringConstraints, field_validator, model_validator

from streamproc.core.events import KNOWN_FIELDS, TransactionEvent, check_path, parse_timestamp
from streamproc.core.values import (
    BooleanValue,
    BotValue,
    DateTimeValue,
    ListValue,
    NumberValue,
    StringValue,
    dump_value,
    format_decimal,
    from_python,
)
from streamproc.errors import BadOutputError, BotValueError, MappingError

BotInputType: TypeAlias = Literal["STRING", "NUMBER", "BOOLEAN", "DATETIME", "LIST"]
Transform: TypeAlias = Literal["upper", "lower", "trim", "str", "abs"]
Decision: TypeAlias = Literal["APPROVE", "REVIEW", "DECLINE"]
# Order matters to pydantic's smart union only for ambiguous input; bool first keeps TOML
# `true` a bool rather than the int 1.
ConstantValue: TypeAlias = bool | int | float | str
VariableName: TypeAlias = Annotated[
    str, StringConstraints(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_-]+$")
]

DECISIONS: Final[tuple[Decision, ...]] = ("APPROVE", "REVIEW", "DECLINE")
SCORE_MIN: Final = Decimal(0)
SCORE_MAX: Final = Decimal(100)

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class _Unconvertible(Exception):
    """A value cannot take the declared type; the message says why, without the variable."""


class InputVariableSpec(BaseModel):
    """One botInput variable: its name, bot type, and where its value comes from."""

    model_config = _FROZEN

    name: VariableName
    type: BotInputType
    source: str | None = None
    constant: ConstantValue | None = None
    default: ConstantValue | None = None
    transform: Transform | None = None
    required: bool = False

    @field_validator("source")
    @classmethod
    def _source_is_an_event_path(cls, source: str | None) -> str | None:
        if source is not None and (problem := check_path(source)) is not None:
            raise ValueError(problem)
        return source

    @model_validator(mode="after")
    def _consistent(self) -> InputVariableSpec:
        if (self.source is None) == (self.constant is None):
            raise ValueError("set exactly one of source and constant")
        if self.constant is not None:
            if self.default is not None or self.transform is not None or self.required:
                raise ValueError(
                    "default, transform and required apply to a source, not a constant"
                )
            _check_converts(self.constant, self.type, "constant")
        if self.default is not None:
            if self.required:
                raise ValueError("a required input cannot have a default")
            _check_converts(self.default, self.type, "default")
        return self


class OutputSpec(BaseModel):
    """Which botOutput variables hold the verdict. ``None`` means the task has no such output."""

    model_config = _FROZEN

    score: VariableName | None = "oNumScore"
    decision: VariableName = "oStrDecision"
    reasons: VariableName | None = "oLstReasons"


class TaskMappingSpec(BaseModel):
    """The whole contract of one API Task: how to build its botInput, how to read its verdict."""

    model_config = _FROZEN

    inputs: tuple[InputVariableSpec, ...]
    outputs: OutputSpec = OutputSpec()

    @field_validator("inputs")
    @classmethod
    def _unique_names(cls, inputs: tuple[InputVariableSpec, ...]) -> tuple[InputVariableSpec, ...]:
        if not inputs:
            raise ValueError("an API Task needs at least one input")
        seen: set[str] = set()
        for spec in inputs:
            if spec.name in seen:
                raise ValueError(f"input {spec.name!r} is declared twice")
            seen.add(spec.name)
        return inputs


@dataclass(frozen=True, slots=True)
class TaskVerdict:
    """What one API Task said about one event."""

    score: Decimal | None
    decision: Decision
    reasons: tuple[str, ...] = ()


def _input(
    name: str, type_: BotInputType, source: str, *, required: bool = False
) -> InputVariableSpec:
    return InputVariableSpec(name=name, type=type_, source=source, required=required)


DEFAULT_FRAUD_MAPPING: Final = TaskMappingSpec(
    inputs=(
        _input("iStrEventId", "STRING", "event_id", required=True),
        _input("iNumAmount", "NUMBER", "amount", required=True),
        _input("iStrCurrency", "STRING", "currency"),
        _input("iStrCardId", "STRING", "card_id"),
        _input("iStrCountry", "STRING", "country"),
        _input("iStrCardCountry", "STRING", "card_country"),
        _input("iStrMerchantCategory", "STRING", "merchant_category"),
        _input("iStrChannel", "STRING", "channel"),
        _input("iDtOccurredAt", "DATETIME", "occurred_at", required=True),
    ),
)
"""The Fraud Score API Task's contract; its verdict is in oNumScore, oStrDecision, oLstReasons."""


def map_bot_input(event: TransactionEvent, spec: TaskMappingSpec) -> dict[str, BotValue]:
    """Build the botInput for ``event``, variables in spec order; MappingError when impossible."""
    bot_input: dict[str, BotValue] = {}
    for var in spec.inputs:
        if var.source is None:
            # Validation proved the constant converts; conversion is a few attribute sets.
            bot_input[var.name] = _convert(var.constant, var.type)
            continue
        value = event.field(var.source)
        if value is None:
            if var.default is not None:
                bot_input[var.name] = _convert(var.default, var.type)
            elif var.required:
                raise MappingError(
                    f"botInput {var.name} (from {var.source}): required value is missing",
                    field=var.source,
                )
            continue
        try:
            if var.transform is not None:
                value = _transform(value, var.transform)
            bot_input[var.name] = _convert(value, var.type)
        except _Unconvertible as exc:
            raise MappingError(
                f"botInput {var.name} (from {var.source}): {exc}", field=var.source
            ) from None
    return bot_input


WireValue: TypeAlias = dict[str, Any]
_GENERAL: Final = object()


def compile_bot_input(spec: TaskMappingSpec) -> Callable[[TransactionEvent], dict[str, WireValue]]:
    """:func:`map_bot_input` then :func:`~streamproc.core.values.dump_value`, as one function.

    Built once per API Task and called per event, it writes the wire objects directly for the
    common shapes (text into STRING, a number into NUMBER, the event's own date-time into
    DATETIME, from a known field without a transform) and hands every other variable to the
    general path, so results and errors are the same (a property test holds them together).
    """
    plans: list[tuple[str, Any, InputVariableSpec, TaskMappingSpec]] = []
    for var in spec.inputs:
        alone = TaskMappingSpec(inputs=(var,), outputs=spec.outputs)
        if var.source is None:
            plans.append((var.name, dump_value(_convert(var.constant, var.type)), var, alone))
        elif var.source in KNOWN_FIELDS and var.transform is None:
            plans.append((var.name, attrgetter(var.source), var, alone))
        else:
            plans.append((var.name, _GENERAL, var, alone))

    def wire(event: TransactionEvent) -> dict[str, WireValue]:
        out: dict[str, WireValue] = {}
        for name, how, var, alone in plans:
            if type(how) is dict:
                out[name] = how
                continue
            if how is not _GENERAL:
                value = how(event)
                kind = var.type
                if type(value) is str and kind == "STRING":
                    out[name] = {"type": "STRING", "string": value}
                    continue
                if type(value) is Decimal and kind == "NUMBER" and value.is_finite():
                    out[name] = {"type": "NUMBER", "number": format_decimal(value)}
                    continue
                if type(value) is datetime and kind == "DATETIME" and value.tzinfo is not None:
                    out[name] = {"type": "DATETIME", "string": value.isoformat()}
                    continue
                if value is None and var.default is None and not var.required:
                    continue  # absent and optional: the API Task applies its own default
            found = map_bot_input(event, alone)
            if name in found:
                out[name] = dump_value(found[name])
        return out

    return wire


def read_task_output(outputs: Mapping[str, BotValue], spec: OutputSpec) -> TaskVerdict:
    """The verdict in an API Task's botOutput; BadOutputError when it breaks the contract.

    A score must be a NUMBER (or text holding one) in [0, 100]; the decision is text naming
    APPROVE, REVIEW or DECLINE (case and surrounding blanks ignored); reasons, when the task
    has them, are a LIST of STRING. A missing reasons variable reads as no reasons and blank
    reasons are dropped, since both mean "nothing to say".
    """
    score = _read_score(outputs, spec.score) if spec.score is not None else None
    decision = _read_decision(outputs, spec.decision)
    reasons = _read_reasons(outputs, spec.reasons) if spec.reasons is not None else ()
    return TaskVerdict(score=score, decision=decision, reasons=reasons)


def _read_score(outputs: Mapping[str, BotValue], name: str) -> Decimal:
    value = outputs.get(name)
    if value is None:
        raise BadOutputError(f"botOutput has no score variable {name!r}", variable=name)
    if isinstance(value, NumberValue):
        score = value.value
    elif isinstance(value, StringValue):
        try:
            score = Decimal(value.value.strip())
        except InvalidOperation:
            raise BadOutputError(
                f"botOutput {name} is not a number: {value.value[:40]!r}", variable=name
            ) from None
    else:
        raise BadOutputError(f"botOutput {name} is {value.type}, expected NUMBER", variable=name)
    if not score.is_finite() or not SCORE_MIN <= score <= SCORE_MAX:
        raise BadOutputError(f"botOutput {name} = {score} is outside 0-100", variable=name)
    return score


def _read_decision(outputs: Mapping[str, BotValue], name: str) -> Decision:
    value = outputs.get(name)
    if value is None:
        raise BadOutputError(f"botOutput has no decision variable {name!r}", variable=name)
    if not isinstance(value, StringValue):
        raise BadOutputError(f"botOutput {name} is {value.type}, expected STRING", variable=name)
    text = value.value.strip().upper()
    for decision in DECISIONS:
        if text == decision:
            return decision
    raise BadOutputError(
        f"botOutput {name} = {value.value[:40]!r} is not one of {', '.join(DECISIONS)}",
        variable=name,
    )


def _read_reasons(outputs: Mapping[str, BotValue], name: str) -> tuple[str, ...]:
    value = outputs.get(name)
    if value is None:
        return ()
    if not isinstance(value, ListValue):
        raise BadOutputError(f"botOutput {name} is {value.type}, expected LIST", variable=name)
    reasons: list[str] = []
    for i, item in enumerate(value.items):
        if not isinstance(item, StringValue):
            raise BadOutputError(
                f"botOutput {name}[{i}] is {item.type}, expected STRING", variable=name
            )
        if item.value.strip():
            reasons.append(item.value)
    return tuple(reasons)


# ---------------------------------------------------------------------------------------
# conversions


def _transform(value: Any, transform: Transform) -> Any:
    if transform == "str":
        return _convert_string(value).value
    if transform == "abs":
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            raise _Unconvertible(f"abs needs a number, got {_kind(value)}")
        # copy_abs is exact; abs() would round a long Decimal to the context's 28 digits.
        return value.copy_abs() if isinstance(value, Decimal) else abs(value)
    if not isinstance(value, str):
        raise _Unconvertible(f"{transform} needs text, got {_kind(value)}")
    if transform == "upper":
        return value.upper()
    if transform == "lower":
        return value.lower()
    return value.strip()


def _convert(value: Any, kind: BotInputType) -> BotValue:
    if kind == "STRING":
        return _convert_string(value)
    if kind == "NUMBER":
        return NumberValue(_to_decimal(value))
    if kind == "BOOLEAN":
        if isinstance(value, bool):
            return BooleanValue(value)
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return BooleanValue(value.strip().lower() == "true")
        raise _Unconvertible(f"expected a boolean or 'true'/'false', got {_shown(value)}")
    if kind == "DATETIME":
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise _Unconvertible("datetime has no UTC offset")
            return DateTimeValue(value)
        if isinstance(value, str):
            try:
                return DateTimeValue(parse_timestamp(value.strip()))
            except ValueError as exc:
                raise _Unconvertible(str(exc)) from None
        raise _Unconvertible(f"expected an RFC 3339 date-time, got {_shown(value)}")
    if isinstance(value, list | tuple):
        try:
            return ListValue(tuple(from_python(v, f"[{i}]") for i, v in enumerate(value)))
        except BotValueError as exc:
            raise _Unconvertible(f"list item {exc}") from None
    raise _Unconvertible(f"expected an array, got {_shown(value)}")


def _convert_string(value: Any) -> StringValue:
    if isinstance(value, str):
        return StringValue(value)
    if isinstance(value, bool):
        return StringValue("true" if value else "false")
    if isinstance(value, int | float | Decimal):
        return StringValue(format_decimal(_to_decimal(value)))
    if isinstance(value, datetime):
        return StringValue(value.isoformat())
    raise _Unconvertible(f"expected text, a number, a boolean or a date-time, got {_shown(value)}")


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise _Unconvertible("expected a number, got a boolean")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _Unconvertible(f"{value!r} is not a finite number")
        # repr is the shortest text that round-trips, i.e. what a person wrote in TOML.
        number = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise _Unconvertible(f"{value[:40]!r} is not a decimal number") from None
    else:
        raise _Unconvertible(f"expected a number, got {_kind(value)}")
    if not number.is_finite():
        raise _Unconvertible(f"{_shown(value)} is not a finite number")
    return number


def _check_converts(value: ConstantValue, kind: BotInputType, what: str) -> None:
    try:
        _convert(value, kind)
    except _Unconvertible as exc:
        raise ValueError(f"{what} {value!r} cannot be a {kind}: {exc}") from None


def _shown(value: Any) -> str:
    return repr(value)[:40] if isinstance(value, str | int | float | Decimal) else _kind(value)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__
