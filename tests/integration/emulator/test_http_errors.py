"""Request-level errors over HTTP: every one is a 4xx with a {code, message, details} body."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest

from streamproc.emulator import EmulatorHandle
from tests.fixtures.emulator import EmulatorFactory
from tests.integration.emulator.helpers import (
    DEVELOPER,
    FRAUD_PATH,
    access,
    assert_error,
    call,
    fraud_input,
    login,
)

pytestmark = pytest.mark.integration

LIMIT = 2 * 1024 * 1024
ECHO_PATH = "Automation Anywhere\\Bots\\My-API-Task"
JSON_ENDPOINTS = [
    ("POST", "/v1/authentication"),
    ("POST", "/v2/authentication"),
    ("PUT", "/orchestrator/v1/hotbot/config/create"),
    ("POST", "/orchestrator/v1/hotbot/config"),
    ("POST", "/orchestrator/v1/hotbot/config/accessdetails"),
    ("PUT", "/emulator/v1/behavior/201"),
]


async def raw_exchange(url: str, request: bytes) -> tuple[int, bytes]:
    """Send raw bytes; the status and body of the answer (the server closes the connection)."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def test_malformed_json_is_400_everywhere(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """A body that is not JSON is MALFORMED_JSON on every JSON endpoint, before or after auth."""
    token = await login(session, emulator.url)
    for method, path in JSON_ENDPOINTS:
        status, body = await call(
            session,
            method,
            emulator.url + path,
            data=b'{"username": "cr-admin", ',
            headers={"X-Authorization": token, "Content-Type": "application/json"},
        )
        assert_error(status, body, 400, "MALFORMED_JSON")
    url, execution = await access(session, emulator.url, token)
    status, body = await call(
        session, "POST", url, data=b"[1,", headers={"X-Authorization": execution}
    )
    assert_error(status, body, 400, "MALFORMED_JSON")


async def test_non_object_json_is_400(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """A JSON array or string where an object is expected is INVALID_REQUEST."""
    for payload in ([1, 2], "text", 5, None):
        data = orjson.dumps(payload)
        status, body = await call(
            session, "POST", f"{emulator.url}/v1/authentication", data=data,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        assert_error(status, body, 400, "INVALID_REQUEST")


async def test_oversized_body_is_413(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """A body over 2 MiB is 413, announced by Content-Length or streamed chunked."""
    big = b'{"username": "' + b"x" * LIMIT + b'"}'
    status, body = await call(
        session, "POST", f"{emulator.url}/v1/authentication", data=big,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert_error(status, body, 413, "PAYLOAD_TOO_LARGE")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b" " * (LIMIT // 2)

    async with session.post(
        f"{emulator.url}/v1/authentication",
        data=chunks(),
        headers={"Content-Type": "application/json"},
    ) as response:
        assert_error(response.status, await response.json(), 413, "PAYLOAD_TOO_LARGE")


async def test_oversized_execute_body_is_413(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """The execute endpoint has the same limit, and nothing is admitted."""
    token = await login(session, emulator.url)
    url, execution = await access(session, emulator.url, token)
    status, body = await call(
        session, "POST", url, data=b" " * (LIMIT + 1), headers={"X-Authorization": execution}
    )
    assert_error(status, body, 413)
    assert emulator.allocation_stats(201)["maxInFlight"] == 0


async def test_body_just_under_the_limit_is_read(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """A 2 MiB body is not refused for its size (here: wrong credentials, 401)."""
    pad = b" " * (LIMIT - 100)
    data = b'{"username": "ghost", "password": "x"}' + pad
    status, body = await call(
        session, "POST", f"{emulator.url}/v1/authentication", data=data,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert_error(status, body, 401)


async def test_non_json_content_type_is_415(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """A form or text body is refused with 415; a missing Content-Type is read as JSON."""
    status, body = await call(
        session, "POST", f"{emulator.url}/v1/authentication", data=b"username=cr-admin",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert_error(status, body, 415, "UNSUPPORTED_MEDIA_TYPE")
    async with session.post(
        f"{emulator.url}/v1/authentication",
        data=b'{"username": "cr-admin", "password": "cr-admin-password"}',
        skip_auto_headers=["Content-Type"],
    ) as response:
        assert response.status == 200


async def test_unknown_route_404_and_wrong_method_405(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """Unknown paths are 404 and known paths with another method 405 (with Allow), as JSON."""
    status, body = await call(session, "GET", f"{emulator.url}/v3/nothing")
    assert_error(status, body, 404, "NOT_FOUND")
    async with session.delete(f"{emulator.url}/v1/authentication") as response:
        assert response.headers["Allow"] == "POST"
        assert_error(response.status, await response.json(), 405, "METHOD_NOT_ALLOWED")


async def test_request_that_is_not_http_gets_a_json_400(emulator: EmulatorHandle) -> None:
    """Bytes that do not parse as HTTP still get the JSON error shape, never a 5xx."""
    for garbage in (
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /v1/authentication HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
    ):
        status, raw = await raw_exchange(emulator.url, garbage)
        assert 400 <= status < 500
        assert_error(status, orjson.loads(raw), status)


async def test_wrong_value_types_name_the_variable(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """A STRING for iNumAmount is 400 naming botInput.iNumAmount; nothing is admitted."""
    token = await login(session, emulator.url, DEVELOPER)
    url, execution = await access(session, emulator.url, token)
    headers = {"X-Authorization": execution}
    body = {"botInput": {"iNumAmount": {"type": "STRING", "string": "12"}}}
    status, answer = await call(session, "POST", url, body, headers=headers)
    assert_error(status, answer, 400, "INVALID_BOT_INPUT")
    assert answer["message"] == "botInput.iNumAmount: expected NUMBER, got STRING"
    assert answer["details"] == {"variable": "botInput.iNumAmount"}
    for bad, variable in (
        ({"botInput": {"iNumAmount": {"type": "NUMBER", "number": "lots"}}},
         "botInput.iNumAmount.number"),
        ({"botInput": {}}, "botInput.iNumAmount"),
        ({"botInput": []}, "botInput"),
        (fraud_input(iDtOccurredAt="2026-01-01T00:00:00Z"), "botInput.iDtOccurredAt"),
    ):  # fmt: skip
        status, answer = await call(session, "POST", url, bad, headers=headers)
        assert_error(status, answer, 400, "INVALID_BOT_INPUT")
        assert answer["details"] == {"variable": variable}
    stats = emulator.allocation_stats(201)
    assert (stats["invalid"], stats["maxInFlight"], stats["executed"]) == (5, 0, 0)


@pytest.mark.parametrize("depth", [340, 500])
async def test_deeply_nested_input_is_400_naming_the_variable(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession, depth: int
) -> None:
    """A LIST nested hundreds of levels deep sent to the echo task is a 400, not a 500."""
    emulator = emulator_factory(allocations=[{"fileId": 5, "concurrencyLimit": 1}])
    token = await login(session, emulator.url, DEVELOPER)
    url, execution = await access(session, emulator.url, token, ECHO_PATH)
    # Written as text: JSON encoders refuse to nest this deep.
    value = '{"type":"LIST","list":[' * depth + '{"string":"x"}' + "]}" * depth
    status, answer = await call(
        session,
        "POST",
        url,
        data=b'{"botInput":{"iDeep":' + value.encode() + b"}}",
        headers={"X-Authorization": execution},
    )
    assert_error(status, answer, 400, "INVALID_BOT_INPUT")
    assert answer["details"] == {"variable": "botInput.iDeep"}


async def test_execute_body_must_be_an_object(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """A JSON array body is 400; an empty body means no botInput (here: a missing input)."""
    token = await login(session, emulator.url)
    url, execution = await access(session, emulator.url, token)
    headers = {"X-Authorization": execution, "Content-Type": "application/json"}
    status, body = await call(session, "POST", url, data=b"[]", headers=headers)
    assert_error(status, body, 400, "INVALID_REQUEST")
    status, body = await call(session, "POST", url, headers={"X-Authorization": execution})
    assert_error(status, body, 400, "INVALID_BOT_INPUT")


async def test_duplicate_allocation_is_409(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """Creating an allocation for an allocated file is 409 ALLOCATION_EXISTS."""
    token = await login(session, emulator.url)
    status, body = await call(
        session, "PUT", f"{emulator.url}/orchestrator/v1/hotbot/config/create",
        {"fileId": "201", "concurrencyLimit": 3}, headers={"X-Authorization": token},
    )  # fmt: skip
    assert_error(status, body, 409, "ALLOCATION_EXISTS")


@pytest.mark.parametrize(
    ("create", "status", "code"),
    [
        ({"fileId": "999"}, 404, "FILE_NOT_FOUND"),
        ({"fileId": 7}, 400, "NOT_AN_API_TASK"),
        ({"fileId": 5, "concurrencyLimit": 0}, 400, "INVALID_REQUEST"),
        ({"runAsUserOrNone": 3}, 400, "INVALID_REQUEST"),
    ],
)
async def test_invalid_allocations(
    emulator: EmulatorHandle,
    session: aiohttp.ClientSession,
    create: dict[str, object],
    status: int,
    code: str,
) -> None:
    """Unknown files, non-API Tasks and bad limits are refused with their codes."""
    token = await login(session, emulator.url)
    got, body = await call(
        session, "PUT", f"{emulator.url}/orchestrator/v1/hotbot/config/create", create,
        headers={"X-Authorization": token},
    )  # fmt: skip
    assert_error(got, body, status, code)


async def test_accessdetails_reports_unusable_paths_under_errors(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """Unknown, unallocated and non-API-Task paths go to errors with a 200."""
    token = await login(session, emulator.url, DEVELOPER)
    paths = [
        FRAUD_PATH,
        "Automation Anywhere\\Bots\\Nope",
        "Automation Anywhere\\Bots\\Zip Code API Task",
        "Automation Anywhere\\Bots\\Nightly Settlement Report",
    ]
    status, body = await call(
        session, "POST", f"{emulator.url}/orchestrator/v1/hotbot/config/accessdetails",
        {"botRepositoryPath": paths}, headers={"X-Authorization": token},
    )  # fmt: skip
    assert status == 200
    assert list(body["accessDetails"]) == [FRAUD_PATH]
    assert set(body["errors"]) == set(paths[1:])
    assert all(isinstance(m, str) and m for m in body["errors"].values())
    for bad in ({}, {"botRepositoryPath": "x"}, {"botRepositoryPath": []},
                {"botRepositoryPath": [1]}):  # fmt: skip
        got, answer = await call(
            session, "POST", f"{emulator.url}/orchestrator/v1/hotbot/config/accessdetails", bad,
            headers={"X-Authorization": token},
        )  # fmt: skip
        assert_error(got, answer, 400)


async def test_public_url_overrides_the_execute_host(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    """With public_url set, accessdetails URLs use it instead of the request's Host."""
    emulator = emulator_factory(public_url="http://emulator:8090/")
    token = await login(session, emulator.url)
    url, _ = await access(session, emulator.url, token)
    assert url == "http://emulator:8090/hotbot/201/execute"


async def test_behavior_control_errors(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """Invalid behaviour updates are 400 naming the field; unknown tasks 404."""
    status, body = await call(
        session, "PUT", f"{emulator.url}/emulator/v1/behavior/201", {"error_rate": 7}
    )
    assert_error(status, body, 400, "INVALID_REQUEST")
    assert "error_rate" in body["details"]
    status, body = await call(session, "GET", f"{emulator.url}/emulator/v1/behavior/12345")
    assert_error(status, body, 404)
    status, body = await call(session, "GET", f"{emulator.url}/emulator/v1/behavior/abc")
    assert_error(status, body, 404)


async def test_a_blank_body_is_not_json(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """An optional body that is given must be JSON: blanks are refused with 400, as the
    OpenAPI document says, instead of being read as no body."""
    token = await login(session, emulator.url)
    status, body = await call(
        session, "POST", f"{emulator.url}/v1/authentication/token", data=b"\n",
        headers={"X-Authorization": token, "Content-Type": "application/json"},
    )  # fmt: skip
    assert_error(status, body, 400)
