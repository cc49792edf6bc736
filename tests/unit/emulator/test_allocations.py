"""Allocations: create validation, duplicates, and the real-time concurrency limiter."""

from __future__ import annotations

from typing import Any

import pytest

from streamproc.emulator.allocations import Allocations, read_int
from streamproc.emulator.problems import ApiError
from streamproc.emulator.repository import default_repository


@pytest.fixture
def allocations() -> Allocations:
    return Allocations(default_repository(), default_run_as_user_id=12)


def test_create_echoes_the_documented_example(allocations: Allocations) -> None:
    """The documentation's create body comes back exactly as sent."""
    body = {"fileId": "5", "runAsUserOrNone": 3, "concurrencyLimit": 2}
    assert allocations.create(body) == body
    allocation = allocations.get(5)
    assert allocation is not None
    assert (allocation.concurrency_limit, allocation.run_as_user_id) == (2, 3)


def test_create_applies_defaults(allocations: Allocations) -> None:
    """Without a limit or run-as user: limit 1 and the default run-as user, both echoed."""
    assert allocations.create({"fileId": 149}) == {
        "fileId": 149, "runAsUserOrNone": 12, "concurrencyLimit": 1
    }  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "INVALID_REQUEST"),
        ({"fileId": None}, 400, "INVALID_REQUEST"),
        ({"fileId": "abc"}, 400, "INVALID_REQUEST"),
        ({"fileId": 5.5}, 400, "INVALID_REQUEST"),
        ({"fileId": True}, 400, "INVALID_REQUEST"),
        ({"fileId": "-5"}, 400, "INVALID_REQUEST"),
        ({"fileId": 0}, 400, "INVALID_REQUEST"),
        ({"fileId": 2**40}, 400, "INVALID_REQUEST"),
        ({"fileId": 5, "concurrencyLimit": 0}, 400, "INVALID_REQUEST"),
        ({"fileId": 5, "concurrencyLimit": "x"}, 400, "INVALID_REQUEST"),
        ({"fileId": 5, "concurrencyLimit": 10**6}, 400, "INVALID_REQUEST"),
        ({"fileId": 5, "runAsUserOrNone": []}, 400, "INVALID_REQUEST"),
        ({"fileId": 999}, 404, "FILE_NOT_FOUND"),
        ({"fileId": 7}, 400, "NOT_AN_API_TASK"),
    ],
)
def test_invalid_create_bodies(
    allocations: Allocations, body: dict[str, Any], status: int, code: str
) -> None:
    """Each invalid create answers its status and code, and allocates nothing."""
    with pytest.raises(ApiError) as info:
        allocations.create(body)
    assert (info.value.status, info.value.code) == (status, code)
    assert len(allocations) == 0


def test_duplicate_allocation_is_409(allocations: Allocations) -> None:
    """Allocating the same file twice is a conflict, whatever form the id takes."""
    allocations.create({"fileId": 201})
    with pytest.raises(ApiError) as info:
        allocations.create({"fileId": "201", "concurrencyLimit": 4})
    assert (info.value.status, info.value.code) == (409, "ALLOCATION_EXISTS")
    assert allocations.get(201).concurrency_limit == 1  # type: ignore[union-attr]


def test_create_reads_an_integral_json_number_as_an_integer(allocations: Allocations) -> None:
    """JSON has one number type: 149.0 names file 149, as the OpenAPI document's integer does."""
    assert allocations.create({"fileId": 149.0, "concurrencyLimit": 2.0})["fileId"] == 149.0
    allocation = allocations.get(149)
    assert allocation is not None
    assert allocation.concurrency_limit == 2


def test_read_int_accepts_numbers_and_numeric_strings() -> None:
    """JSON numbers and digit strings are integers; absent or null is None."""
    assert read_int({"a": "12"}, "a", minimum=1, maximum=99) == 12
    assert read_int({"a": 12}, "a", minimum=1, maximum=99) == 12
    assert read_int({"a": None}, "a", minimum=1, maximum=99) is None
    assert read_int({}, "a", minimum=1, maximum=99) is None
    with pytest.raises(ApiError):
        read_int({"a": "١٢"}, "a", minimum=1, maximum=99)  # non-ASCII digits


def test_limiter_admits_up_to_the_limit_and_counts_rejections(allocations: Allocations) -> None:
    """try_acquire fails at the limit (never waits); the high-water mark never exceeds it."""
    allocation = allocations.add(201, concurrency_limit=2)
    assert [allocation.try_acquire() for _ in range(4)] == [True, True, False, False]
    assert (allocation.in_flight, allocation.max_in_flight, allocation.rejected) == (2, 2, 2)
    allocation.release()
    assert allocation.try_acquire()
    assert allocation.max_in_flight == 2


def test_reset_keeps_in_flight_and_restarts_the_high_water_mark(allocations: Allocations) -> None:
    """Reset zeroes counters; maxInFlight restarts at what is in flight now."""
    allocation = allocations.add(201, concurrency_limit=3)
    for _ in range(3):
        allocation.try_acquire()
    allocation.release()
    allocation.release()
    allocation.executed = 5
    allocation.reset_stats()
    stats = allocation.stats()
    assert (stats["inFlight"], stats["maxInFlight"], stats["executed"]) == (1, 1, 0)


def test_list_entry_has_ids_as_strings(allocations: Allocations) -> None:
    """List entries carry fileId and runAsUserOrNone as strings, the limit as a number."""
    allocations.add(149, concurrency_limit=1, run_as_user_id=12)
    assert allocations.get(149).list_entry() == {  # type: ignore[union-attr]
        "fileId": "149",
        "filePath": "Automation Anywhere\\Bots\\Zip Code API Task",
        "fileName": "Zip Code API Task",
        "runAsUserOrNone": "12",
        "concurrencyLimit": 1,
    }
