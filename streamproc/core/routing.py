"""Routing: which API Tasks score an event, chosen by ordered rules over event fields.

The first rule whose conditions all hold wins; when none does, ``default_tasks`` score the
event under the rule name ``"default"``. A rule with no conditions matches everything, so it
may only come last (rules after it could never match, which is a configuration mistake).

Condition semantics, for ``field`` read with :meth:`TransactionEvent.field`:

- ``exists`` / ``missing``: the field has a non-null value / has none. ``value`` must be unset.
- ``eq`` / ``ne`` / ``in`` / ``not_in``: typed equality. Numbers compare by value and exactly
  (``amount eq 100`` holds for ``100.00``; the configured number is taken as written, never
  through a binary float), text compares case-sensitively, booleans only equal booleans.
  A number never equals text (``"100"``), so a typo in the configuration does not silently
  widen a rule. ``ne`` and ``not_in`` hold when the field is missing; add ``exists`` to
  require it.
- ``gt`` / ``gte`` / ``lt`` / ``lte``: exact numeric comparison; they never hold for a missing
  or non-numeric field.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import Annotated, Any, Final, Literal, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from streamproc.core.events import TransactionEvent, check_path

Op: TypeAlias = Literal["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists", "missing"]
CombinePolicy: TypeAlias = Literal["strictest", "highest_score", "first"]
Name: TypeAlias = Annotated[str, StringConstraints(min_length=1, max_length=100)]

DEFAULT_RULE: Final = "default"
_RULE_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_ORDERED: Final = frozenset({"gt", "gte", "lt", "lte"})
_FROZEN = ConfigDict(frozen=True, extra="forbid")

# A comparison key: equality across kinds never holds, and bool (an int in Python) stays
# apart from numbers, so True never equals 1.
_Key: TypeAlias = tuple[str, Any]


@dataclass(frozen=True, slots=True)
class Route:
    """The rule that matched (``"default"`` when none did) and the tasks to call, in order."""

    rule: str
    tasks: tuple[str, ...]


class Condition(BaseModel):
    """One test on one event field; see the module docstring for each operator."""

    model_config = _FROZEN

    field: str
    op: Op
    value: Any = None

    @field_validator("field")
    @classmethod
    def _field_is_an_event_path(cls, field: str) -> str:
        if (problem := check_path(field)) is not None:
            raise ValueError(problem)
        return field

    @field_validator("value")
    @classmethod
    def _value_fits_op(cls, value: Any, info: ValidationInfo) -> Any:
        op = info.data.get("op")
        if op is None:  # op itself failed validation; that error is the one to report
            return value
        if op in ("exists", "missing"):
            if value is not None:
                raise ValueError(f"{op} takes no value")
            return None
        if op in _ORDERED:
            number = _config_number(value)
            if number is None:
                raise ValueError(f"{op} needs a number, got {value!r}")
            return number
        if op in ("in", "not_in"):
            if not isinstance(value, list | tuple) or not value:
                raise ValueError(f"{op} needs a non-empty list of values")
            return tuple(_config_scalar(v, op) for v in value)
        return _config_scalar(value, op)

    @model_validator(mode="after")
    def _value_required(self) -> Condition:
        if self.op not in ("exists", "missing") and self.value is None:
            raise ValueError(f"{self.op} needs a value (use exists/missing to test presence)")
        return self

    # Comparison keys are built once, on first use: holds() runs per event. (A cached
    # property rather than a pydantic private attribute, whose access costs microseconds.)
    @cached_property
    def _key(self) -> _Key:
        return _key(self.value)

    @cached_property
    def _keys(self) -> frozenset[_Key]:
        return frozenset(_key(v) for v in self.value)

    def holds(self, event: TransactionEvent) -> bool:
        """Whether this condition is true of ``event``."""
        actual = event.field(self.field)
        op = self.op
        if op == "exists":
            return actual is not None
        if op == "missing":
            return actual is None
        if op in _ORDERED:
            number = _event_number(actual)
            if number is None:
                return False
            if op == "gt":
                return bool(number > self.value)
            if op == "gte":
                return bool(number >= self.value)
            if op == "lt":
                return bool(number < self.value)
            return bool(number <= self.value)
        if op in ("eq", "ne"):
            equal = actual is not None and _key(actual) == self._key
            return equal if op == "eq" else not equal
        member = actual is not None and _key(actual) in self._keys
        return member if op == "in" else not member


class RouteRule(BaseModel):
    """Send events for which every condition in ``when`` holds to ``tasks``, in order."""

    model_config = _FROZEN

    name: Name
    when: tuple[Condition, ...] = ()
    tasks: tuple[Name, ...] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name_is_a_label(cls, name: str) -> str:
        # The rule name lands in metrics labels and headers, so keep it a plain token.
        if not _RULE_NAME.fullmatch(name):
            raise ValueError("use letters, digits, '_', '-' and '.' only")
        if name == DEFAULT_RULE:
            raise ValueError(f"{DEFAULT_RULE!r} is reserved for events no rule matches")
        return name

    @field_validator("tasks")
    @classmethod
    def _tasks_unique(cls, tasks: tuple[str, ...]) -> tuple[str, ...]:
        return _unique(tasks)


class RoutingSpec(BaseModel):
    """Ordered rules, the tasks for events no rule matches, and how to combine verdicts."""

    model_config = _FROZEN

    rules: tuple[RouteRule, ...] = ()
    default_tasks: tuple[Name, ...] = Field(min_length=1)
    combine: CombinePolicy = "strictest"

    @field_validator("default_tasks")
    @classmethod
    def _tasks_unique(cls, tasks: tuple[str, ...]) -> tuple[str, ...]:
        return _unique(tasks)

    @field_validator("rules")
    @classmethod
    def _rules_reachable(cls, rules: tuple[RouteRule, ...]) -> tuple[RouteRule, ...]:
        names: set[str] = set()
        for i, rule in enumerate(rules):
            if rule.name in names:
                raise ValueError(f"rule name {rule.name!r} is used twice")
            names.add(rule.name)
            if not rule.when and i < len(rules) - 1:
                raise ValueError(
                    f"rule {rule.name!r} has no conditions, so the rules after it never match"
                )
        return rules

    # Built once, on first use: route() runs per event and should not allocate.
    @cached_property
    def _table(self) -> tuple[tuple[tuple[Condition, ...], Route], ...]:
        return tuple((r.when, Route(r.name, r.tasks)) for r in self.rules)

    @cached_property
    def _default(self) -> Route:
        return Route(DEFAULT_RULE, self.default_tasks)

    def route(self, event: TransactionEvent) -> Route:
        """The first rule that matches ``event``, else the default route."""
        for conditions, matched in self._table:
            for condition in conditions:
                if not condition.holds(event):
                    break
            else:
                return matched
        return self._default


def check_routing(spec: RoutingSpec, known_tasks: Collection[str]) -> list[str]:
    """Every task name in ``spec`` that is not in ``known_tasks``, one problem per line."""
    known = set(known_tasks)
    hint = ", ".join(sorted(known)) or "none"
    problems: list[str] = []
    for i, rule in enumerate(spec.rules):
        problems.extend(
            f"rules[{i}] ({rule.name}): unknown task {task!r} (configured tasks: {hint})"
            for task in rule.tasks
            if task not in known
        )
    problems.extend(
        f"default_tasks: unknown task {task!r} (configured tasks: {hint})"
        for task in spec.default_tasks
        if task not in known
    )
    return problems


def _unique(tasks: tuple[str, ...]) -> tuple[str, ...]:
    if len(set(tasks)) != len(tasks):
        raise ValueError("a task is listed twice")
    return tasks


def _config_number(value: Any) -> Decimal | None:
    """A configured number, exactly as written; None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        # TOML and JSON floats: repr is the shortest text that round-trips, i.e. the literal.
        number = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
    else:
        return None
    return number if number.is_finite() else None


def _config_scalar(value: Any, op: str) -> str | bool | Decimal:
    if isinstance(value, bool | str):
        return value
    number = _config_number(value)
    if number is None or isinstance(value, str):
        raise ValueError(f"{op} compares with text, numbers or booleans, got {value!r}")
    return number


def _event_number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, int | float):
        number = Decimal(value)
        return number if number.is_finite() else None
    return None


def _key(value: Any) -> _Key:
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, str):
        return ("str", value)
    number = _event_number(value)
    if number is not None:
        return ("num", number)
    # Containers and other values never equal a configured scalar.
    return ("other", id(value))
