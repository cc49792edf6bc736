"""The list request's filter, sort and page rules."""

from __future__ import annotations

from typing import Any

import pytest

from streamproc.emulator.listing import parse_filter, parse_query, run_query
from streamproc.emulator.problems import ApiError

ENTRIES = [
    {"fileId": "149", "filePath": "A\\Zip Code API Task", "fileName": "Zip Code API Task",
     "runAsUserOrNone": "12", "concurrencyLimit": 1},
    {"fileId": "180", "filePath": "A\\API_task_String", "fileName": "API_task_String",
     "runAsUserOrNone": "12", "concurrencyLimit": 3},
    {"fileId": "184", "filePath": "A\\API_task_Rest", "fileName": "API_task_Rest",
     "runAsUserOrNone": "7", "concurrencyLimit": 5},
]  # fmt: skip


def ids(body: dict[str, Any]) -> list[str]:
    return [e["fileId"] for e in run_query(ENTRIES, parse_query(body))["list"]]


def test_empty_body_lists_everything_with_page_totals() -> None:
    """No filter, sort or page: every entry, offset 0, total and totalFilter equal."""
    result = run_query(ENTRIES, parse_query({}))
    assert [e["fileId"] for e in result["list"]] == ["149", "180", "184"]
    assert result["page"] == {"offset": 0, "total": 3, "totalFilter": 3}


def test_page_offset_and_length() -> None:
    """offset skips, length bounds; totalFilter counts all matches."""
    result = run_query(ENTRIES, parse_query({"page": {"offset": 1, "length": 1}}))
    assert [e["fileId"] for e in result["list"]] == ["180"]
    assert result["page"] == {"offset": 1, "total": 3, "totalFilter": 3}
    assert ids({"page": {"offset": 0, "length": 0}}) == ["149", "180", "184"]


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"operator": "substring", "field": "fileName", "value": "api_task"}, ["180", "184"]),
        ({"operator": "eq", "field": "fileId", "value": "180"}, ["180"]),
        ({"operator": "eq", "field": "fileId", "value": 184}, ["184"]),
        ({"operator": "ne", "field": "runAsUserOrNone", "value": "12"}, ["184"]),
        ({"operator": "gt", "field": "concurrencyLimit", "value": 1}, ["180", "184"]),
        ({"operator": "le", "field": "concurrencyLimit", "value": "3"}, ["149", "180"]),
        ({"operator": "lt", "field": "fileId", "value": 9}, []),
        ({"operator": "ge", "field": "fileName", "value": "Z"}, ["149"]),
        ({"operator": "NONE"}, ["149", "180", "184"]),
        (
            {"operator": "and", "operands": [
                {"operator": "substring", "field": "filePath", "value": "API_task"},
                {"operator": "eq", "field": "runAsUserOrNone", "value": "12"}]},
            ["180"],
        ),
        (
            {"operator": "or", "operands": [
                {"operator": "eq", "field": "fileId", "value": "149"},
                {"operator": "eq", "field": "fileId", "value": "184"}]},
            ["149", "184"],
        ),
        ({"operator": "not", "operands": [{"operator": "eq", "field": "fileId", "value": "149"}]},
         ["180", "184"]),
    ],
)  # fmt: skip
def test_filters(flt: dict[str, Any], expected: list[str]) -> None:
    """Each operator selects the expected entries; numeric fields compare as numbers."""
    assert ids({"filter": flt}) == expected


def test_sort_by_several_keys() -> None:
    """Sort keys apply in order, each asc or desc; numbers sort numerically."""
    body = {"sort": [{"field": "runAsUserOrNone", "direction": "desc"},
                     {"field": "fileId", "direction": "desc"}]}  # fmt: skip
    assert ids(body) == ["180", "149", "184"]
    assert ids({"sort": [{"field": "concurrencyLimit", "direction": "desc"}]}) == [
        "184", "180", "149"
    ]  # fmt: skip


@pytest.mark.parametrize(
    "body",
    [
        {"filter": "x"},
        {"filter": {"field": "fileId"}},
        {"filter": {"operator": "like", "field": "fileId", "value": "1"}},
        {"filter": {"operator": "eq", "field": "secret", "value": "1"}},
        {"filter": {"operator": "eq", "field": "fileId", "value": "abc"}},
        {"filter": {"operator": "eq", "field": "fileId", "value": None}},
        {"filter": {"operator": "eq", "field": "fileId", "value": True}},
        {"filter": {"operator": "and", "operands": []}},
        {"filter": {"operator": "not", "operands": [{"operator": "NONE"}, {"operator": "NONE"}]}},
        {"sort": {"field": "fileId"}},
        {"sort": [{"field": "fileId", "direction": "up"}]},
        {"sort": ["fileId"]},
        {"page": []},
        {"page": {"offset": -1}},
        {"page": {"length": "10"}},
        {"page": {"offset": 2**40}},
        # Names are exact, as the OpenAPI document lists them; numbers are plain decimals.
        {"filter": {"operator": "EQ", "field": "fileId", "value": "1"}},
        {"filter": {"operator": "none"}},
        {"sort": [{"field": "fileId", "direction": "DESC"}]},
        {"filter": {"operator": "eq", "field": "fileId", "value": "1_000"}},
        {"filter": {"operator": "eq", "field": "fileId", "value": "inf"}},
        {"filter": {"operator": "eq", "field": "fileId", "value": "12\n"}},
    ],
)
def test_malformed_queries_are_400(body: dict[str, Any]) -> None:
    """A malformed filter, sort or page is a 400 naming the part."""
    with pytest.raises(ApiError) as info:
        parse_query(body)
    assert info.value.status == 400
    assert isinstance(info.value.details, dict)
    assert "field" in info.value.details


def test_deeply_nested_filter_is_refused_not_recursed() -> None:
    """Nesting beyond 16 levels is a 400, well before Python's recursion limit."""
    flt: dict[str, Any] = {"operator": "NONE"}
    for _ in range(500):
        flt = {"operator": "not", "operands": [flt]}
    with pytest.raises(ApiError, match="nested"):
        parse_filter(flt)
