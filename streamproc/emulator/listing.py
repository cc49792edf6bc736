"""The Control Room's list request (filter, sort, page) applied to allocation list entries.

Body: ``{"filter": {...}, "sort": [{"field", "direction"}], "page": {"offset", "length"}}``,
every part optional (``null`` counts as absent). A filter is ``{"operator", "field", "value"}``
with operator ``eq``, ``ne``, ``lt``, ``le``, ``gt``, ``ge`` or ``substring``, or ``and``/``or``
with ``operands`` (a list of filters), ``not`` with exactly one operand, or ``NONE`` (matches
everything); names are exact, as the OpenAPI document lists them. Numeric fields
(``fileId``, ``runAsUserOrNone``, ``concurrencyLimit``) compare as numbers (a JSON number or
a decimal string), the others as strings. The page length defaults to 100. Pure: no I/O.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streamproc.emulator.problems import bad_request

Entry = Mapping[str, Any]
Predicate = Callable[[Entry], bool]

NUMERIC_FIELDS = frozenset({"fileId", "runAsUserOrNone", "concurrencyLimit"})
FIELDS = NUMERIC_FIELDS | {"filePath", "fileName"}
DEFAULT_PAGE_LENGTH = 100
MAX_FILTER_DEPTH = 16
# What a numeric field's value may be as a string (the OpenAPI document uses the same pattern).
DECIMAL_PATTERN = r"^-?[0-9]{1,15}(\.[0-9]{1,15})?$"
_DECIMAL = re.compile(DECIMAL_PATTERN)
_COMPARE: Mapping[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}


@dataclass(frozen=True, slots=True)
class ListQuery:
    predicate: Predicate
    sort: tuple[tuple[str, bool], ...]  # (field, descending)
    offset: int
    length: int


def _sort_key(field: str) -> Callable[[Entry], Any]:
    if field in NUMERIC_FIELDS:
        return lambda entry: int(entry[field])
    return lambda entry: str(entry[field])


def _field(spec: Mapping[str, Any], where: str) -> str:
    field = spec.get("field")
    if not isinstance(field, str) or field not in FIELDS:
        raise bad_request(
            f"{where}.field must be one of {', '.join(sorted(FIELDS))}", {"field": f"{where}.field"}
        )
    return field


def _comparison(name: str, field: str, value: Any, where: str) -> Predicate:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise bad_request(
            f"{where}.value must be a string or a number", {"field": f"{where}.value"}
        )
    if name == "substring":
        needle = str(value).lower()
        return lambda entry: needle in str(entry[field]).lower()
    compare = _COMPARE[name]
    if field in NUMERIC_FIELDS:
        if isinstance(value, str) and not _DECIMAL.fullmatch(value):
            raise bad_request(
                f"{where}.value must be numeric for {field}", {"field": f"{where}.value"}
            )
        number = float(value)
        return lambda entry: compare(float(entry[field]), number)
    text = str(value)
    return lambda entry: compare(str(entry[field]), text)


def parse_filter(spec: Any, where: str = "filter", depth: int = 0) -> Predicate:
    """A predicate over list entries; 400 naming the part when malformed."""
    if depth > MAX_FILTER_DEPTH:
        raise bad_request(f"filter nested deeper than {MAX_FILTER_DEPTH} levels", {"field": where})
    if not isinstance(spec, Mapping):
        raise bad_request(f"{where} must be an object", {"field": where})
    name = spec.get("operator")
    if not isinstance(name, str):
        raise bad_request(f"{where}.operator must be a string", {"field": f"{where}.operator"})
    if name == "NONE":
        return lambda _entry: True
    if name in ("and", "or", "not"):
        operands = spec.get("operands")
        if not isinstance(operands, list) or not operands or (name == "not" and len(operands) != 1):
            expected = "exactly one operand" if name == "not" else "a non-empty list of filters"
            raise bad_request(
                f"{where}.operands must be {expected}", {"field": f"{where}.operands"}
            )
        parts = [
            parse_filter(op, f"{where}.operands[{i}]", depth + 1) for i, op in enumerate(operands)
        ]
        if name == "not":
            return lambda entry: not parts[0](entry)
        combine = all if name == "and" else any
        return lambda entry: combine(part(entry) for part in parts)
    if name in _COMPARE or name == "substring":
        return _comparison(name, _field(spec, where), spec.get("value"), where)
    raise bad_request(
        f"{where}.operator {name[:40]!r} is not one of NONE, eq, ne, lt, le, gt, ge, substring, "
        "and, or, not",
        {"field": f"{where}.operator"},
    )


def _parse_sort(spec: Any) -> tuple[tuple[str, bool], ...]:
    if spec is None:
        return ()
    if not isinstance(spec, list):
        raise bad_request("sort must be a list of {field, direction}", {"field": "sort"})
    keys: list[tuple[str, bool]] = []
    for i, item in enumerate(spec):
        where = f"sort[{i}]"
        if not isinstance(item, Mapping):
            raise bad_request(f"{where} must be an object", {"field": where})
        direction = item.get("direction", "asc")
        if direction not in ("asc", "desc"):
            raise bad_request(
                f"{where}.direction must be asc or desc", {"field": f"{where}.direction"}
            )
        keys.append((_field(item, where), direction == "desc"))
    return tuple(keys)


def _page_int(page: Mapping[str, Any], key: str) -> int:
    value = page.get(key, 0)
    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON has one number type: 5.0 is the integer 5
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**31 - 1:
        raise bad_request(
            f"page.{key} must be an integer from 0 to 2147483647", {"field": f"page.{key}"}
        )
    return value


def parse_query(body: Mapping[str, Any]) -> ListQuery:
    """Read a list request body (all parts optional)."""
    raw_filter = body.get("filter")
    predicate = parse_filter(raw_filter) if raw_filter is not None else (lambda _entry: True)
    page = body.get("page")
    page = {} if page is None else page
    if not isinstance(page, Mapping):
        raise bad_request("page must be an object {offset, length}", {"field": "page"})
    length = _page_int(page, "length")
    return ListQuery(
        predicate=predicate,
        sort=_parse_sort(body.get("sort")),
        offset=_page_int(page, "offset"),
        length=length or DEFAULT_PAGE_LENGTH,
    )


def run_query(entries: Sequence[Entry], query: ListQuery) -> dict[str, Any]:
    """``{"list": [...], "page": {"offset", "total", "totalFilter"}}``."""
    matched = [entry for entry in entries if query.predicate(entry)]
    for field, descending in reversed(query.sort):
        matched.sort(key=_sort_key(field), reverse=descending)
    return {
        "list": matched[query.offset : query.offset + query.length],
        "page": {"offset": query.offset, "total": len(entries), "totalFilter": len(matched)},
    }
