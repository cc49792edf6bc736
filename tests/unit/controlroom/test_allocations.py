from __future__ import annotations

import httpx
import orjson
import pytest

from streamproc.controlroom.allocations import AccessDetails, Allocation, parse_allocation
from streamproc.errors import AccessDetailsError, ConflictError, ControlRoomError
from tests.unit.controlroom.conftest import MakeClient
from tests.unit.controlroom.fakes import EXEC_URL, PATH, FakeControlRoom, alloc


async def test_iterates_all_pages_until_total_filter(
    make_client: MakeClient, fake_cr: FakeControlRoom
) -> None:
    """Seven allocations at page size 3 arrive over exactly three list calls, in order."""
    fake_cr.allocations = [alloc(i, limit=i) for i in range(1, 8)]
    client = make_client()
    got = [a async for a in client.allocations(page_size=3)]
    assert [a.file_id for a in got] == list(range(1, 8))
    pages = [orjson.loads(r.content)["page"] for r in fake_cr.requests_to("/hotbot/config")]
    assert pages == [
        {"offset": 0, "length": 3},
        {"offset": 3, "length": 3},
        {"offset": 6, "length": 3},
    ]


async def test_filter_and_sort_are_passed_through(
    make_client: MakeClient, fake_cr: FakeControlRoom
) -> None:
    """A filter and sort given by the caller reach the server unchanged, on every page."""
    client = make_client()
    flt = {"operator": "substring", "field": "fileName", "value": "Fraud"}
    sort = [{"field": "fileId", "direction": "asc"}]
    assert [a async for a in client.allocations(filter=flt, sort=sort)] == []
    body = orjson.loads(fake_cr.requests_to("/hotbot/config")[0].content)
    assert body == {"filter": flt, "sort": sort, "page": {"offset": 0, "length": 100}}


async def test_allocations_are_typed_from_the_documented_string_ids(
    make_client: MakeClient, fake_cr: FakeControlRoom
) -> None:
    """fileId and runAsUserOrNone arrive as strings and come out as ints."""
    fake_cr.allocations = [alloc(149, limit=1)]
    client = make_client()
    (got,) = [a async for a in client.allocations()]
    assert got == Allocation(
        file_id=149,
        file_path="Automation Anywhere\\Bots\\Task 149",
        file_name="Task 149",
        run_as_user=12,
        concurrency_limit=1,
    )


def test_parsing_is_tolerant_of_ints_and_missing_run_as_user() -> None:
    """Native ints, an absent or empty run-as user, and string limits all parse."""
    got = parse_allocation({"fileId": 5, "runAsUserOrNone": "", "concurrencyLimit": "2"})
    assert (got.file_id, got.run_as_user, got.concurrency_limit) == (5, None, 2)
    assert got.file_path is None


@pytest.mark.parametrize(
    "obj",
    [
        {"fileId": "x", "concurrencyLimit": 1},
        {"fileId": "1"},
        {"concurrencyLimit": 1},
        {"fileId": True, "concurrencyLimit": 1},
        ["not", "an", "object"],
    ],
)
def test_malformed_allocations_are_control_room_errors(obj: object) -> None:
    """An allocation without usable ids or limit raises ControlRoomError, not KeyError."""
    with pytest.raises(ControlRoomError, match="malformed"):
        parse_allocation(obj)


async def test_create_sends_the_documented_body_and_parses_the_echo(
    make_client: MakeClient, fake_cr: FakeControlRoom
) -> None:
    """create_allocation PUTs fileId as a string with the optional fields, like the docs."""
    client = make_client()
    got = await client.create_allocation(5, run_as_user=3, concurrency_limit=2)
    (put,) = fake_cr.requests_to("/hotbot/config/create")
    assert put.method == "PUT"
    assert orjson.loads(put.content) == {"fileId": "5", "runAsUserOrNone": 3, "concurrencyLimit": 2}
    assert got == Allocation(5, None, None, 3, 2)


async def test_duplicate_create_is_a_conflict(
    make_client: MakeClient, fake_cr: FakeControlRoom
) -> None:
    """A 409 from create becomes ConflictError with the server's message and request context."""
    body = {"code": "hotbot.exists", "message": "already allocated", "details": ""}
    fake_cr.overrides["/orchestrator/v1/hotbot/config/create"] = httpx.Response(
        409, content=orjson.dumps(body)
    )
    client = make_client()
    with pytest.raises(ConflictError) as caught:
        await client.create_allocation(5, concurrency_limit=2)
    assert caught.value.body == body
    assert caught.value.method == "PUT"
    assert caught.value.url == "https://cr.example.test/orchestrator/v1/hotbot/config/create"
    assert "already allocated" in str(caught.value)


async def test_access_details_for_several_paths_with_typed_errors(
    make_client: MakeClient, fake_cr: FakeControlRoom
) -> None:
    """Allocated paths get url and headers; entries under errors become AccessDetailsError."""
    client = make_client()
    missing = "Automation Anywhere\\Bots\\Missing"
    got = await client.access_details([PATH, missing])
    details = got[PATH]
    assert isinstance(details, AccessDetails)
    assert details.url == EXEC_URL
    assert details.headers == {"X-Authorization": "exec-token-1"}
    error = got[missing]
    assert isinstance(error, AccessDetailsError)
    assert (error.path, error.reason) == (missing, "API Task is not allocated")
    assert orjson.loads(fake_cr.requests_to("/accessdetails")[0].content) == {
        "botRepositoryPath": [PATH, missing]
    }


async def test_access_details_reports_silent_gaps_and_object_errors(
    make_client: MakeClient, fake_cr: FakeControlRoom
) -> None:
    """A path in neither map, and an errors entry shaped {code,message}, are both reported."""
    fake_cr.overrides["/orchestrator/v1/hotbot/config/accessdetails"] = httpx.Response(
        200,
        content=orjson.dumps(
            {"accessDetails": {}, "errors": {"B": {"code": "E1", "message": "not checked in"}}}
        ),
    )
    client = make_client()
    got = await client.access_details(["A", "B"])
    assert isinstance(got["A"], AccessDetailsError)
    assert "absent" in got["A"].reason
    assert isinstance(got["B"], AccessDetailsError)
    assert got["B"].reason == "not checked in (E1)"


def test_access_details_repr_hides_the_execution_token() -> None:
    """The repr of access details names the headers but never shows the token."""
    details = AccessDetails(PATH, EXEC_URL, {"X-Authorization": "exec-secret-token"})
    assert "exec-secret-token" not in repr(details)
    assert "X-Authorization" in repr(details)


async def test_malformed_list_response_carries_request_context(
    make_client: MakeClient, fake_cr: FakeControlRoom
) -> None:
    """A 200 that is not JSON is reported as malformed, naming the call."""
    fake_cr.overrides["/orchestrator/v1/hotbot/config"] = httpx.Response(200, content=b"<html>")
    client = make_client()
    with pytest.raises(ControlRoomError, match="malformed") as caught:
        [a async for a in client.allocations()]
    assert caught.value.method == "POST"
    assert caught.value.status == 200
