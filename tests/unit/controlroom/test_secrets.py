"""No password, API key or token ever reaches an exception's str/repr or a log line."""

from __future__ import annotations

import io
import traceback
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import structlog
from pyreqwest.exceptions import ConnectError
from pyreqwest.middleware import Next
from pyreqwest.request import Request
from pyreqwest.response import Response

from streamproc import logs
from streamproc.controlroom.client import ControlRoomClient
from streamproc.controlroom.credentials import (
    ApiKeyCredentials,
    BearerCredentials,
    PasswordCredentials,
)
from streamproc.controlroom.transport import RawResponse
from streamproc.controlroom.transport_httpx import HttpxExecuteTransport
from streamproc.controlroom.transport_pyreqwest import PyreqwestExecuteTransport
from streamproc.core.values import StringValue
from streamproc.errors import BadRequestError, StreamprocError
from tests.unit.controlroom.conftest import MakeClient
from tests.unit.controlroom.fakes import (
    API_KEY,
    BEARER,
    PASSWORD,
    PATH,
    FakeControlRoom,
    FakeExecuteTransport,
    Sent,
)

EXEC_TOKEN = "exec-token-1"


@pytest.fixture
def captured() -> Iterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as entries:
        yield entries


def assert_clean(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text


def echoing_handler(status: int) -> Any:
    """A server that echoes the request it refused, secrets and all."""

    async def handle(request: httpx.Request) -> httpx.Response:
        body = {
            "code": "echo",
            "message": f"refused {request.content.decode()} {dict(request.headers)}",
            "details": request.headers.get("X-Authorization", ""),
        }
        return httpx.Response(status, content=orjson.dumps(body))

    return handle


def full_text(exc: BaseException) -> str:
    """Everything a person could see of an error: str, repr, body, and the chained trace."""
    parts = [str(exc), repr(exc), repr(getattr(exc, "body", "")), *traceback.format_exception(exc)]
    return "\n".join(parts)


@pytest.mark.parametrize(
    "credentials",
    [
        PasswordCredentials("bot-developer", PASSWORD),
        ApiKeyCredentials("bot-developer", API_KEY),
        BearerCredentials(BEARER),
    ],
    ids=["password", "api-key", "bearer"],
)
@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 429, 500])
async def test_errors_never_show_credentials_even_when_the_server_echoes_them(
    credentials: Any, status: int, captured: list[dict[str, Any]]
) -> None:
    """An error answer that echoes the request hides the password, API key and token."""
    client = ControlRoomClient(
        "https://cr.example.test",
        credentials,
        transport=httpx.MockTransport(echoing_handler(status)),
    )
    try:
        with pytest.raises(StreamprocError) as caught:
            await client.create_allocation(5)
    finally:
        await client.aclose()
    text = full_text(caught.value) + repr(captured)
    assert_clean(text, PASSWORD, API_KEY, BEARER)
    assert "echo" in text


async def test_execute_errors_never_show_the_execution_token(
    client: ControlRoomClient, captured: list[dict[str, Any]]
) -> None:
    """A 400 from /execute that echoes X-Authorization is reported without the token."""

    def respond(sent: Sent) -> RawResponse:
        return RawResponse(400, {}, orjson.dumps({"message": f"bad request {sent.headers}"}))

    session = client.execution_session(PATH, FakeExecuteTransport(respond))
    with pytest.raises(StreamprocError) as caught:
        await session.execute({"in": StringValue("x")}, timeout_s=5.0)
    assert_clean(full_text(caught.value) + repr(captured), EXEC_TOKEN, PASSWORD)


async def test_connection_errors_never_show_query_secrets(captured: list[dict[str, Any]]) -> None:
    """A library error quoting a URL with a token in its query is cut at the '?'."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}", request=request)

    transport = HttpxExecuteTransport(transport=httpx.MockTransport(handler))
    try:
        with pytest.raises(StreamprocError) as caught:
            await transport.post(f"https://h.test/execute?token={BEARER}", {}, b"{}", 1.0)
    finally:
        await transport.aclose()
    assert_clean(str(caught.value) + repr(caught.value), BEARER)


async def test_pyreqwest_connection_errors_never_show_query_secrets() -> None:
    """pyreqwest's causes quote the full URL; the mapped error keeps none of its query."""

    async def handler(request: Request, _next: Next) -> Response:
        quoted = f"error sending request for url ({request.url})"
        raise ConnectError("connection error", {"causes": [{"message": quoted}] * 2})

    transport = PyreqwestExecuteTransport(middleware=handler)
    try:
        with pytest.raises(StreamprocError) as caught:
            await transport.post(f"https://h.test/execute?token={BEARER}", {}, b"{}", 1.0)
    finally:
        await transport.aclose()
    assert_clean(str(caught.value) + repr(caught.value), BEARER)


@pytest.mark.parametrize("token", [f"{BEARER}\r\n", f"{BEARER}\x00", f"Bearer\n{BEARER}"])
async def test_pyreqwest_unsendable_token_is_not_quoted(token: str) -> None:
    """pyreqwest quotes a header value it rejects; the error names the header, not the token."""
    transport = PyreqwestExecuteTransport()
    try:
        with pytest.raises(BadRequestError) as caught:
            await transport.post("https://h.test/execute", {"X-Authorization": token}, b"{}", 1.0)
    finally:
        await transport.aclose()
    assert "'X-Authorization'" in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    assert_clean(full_text(caught.value), BEARER)


async def test_normal_operation_logs_no_secret(
    make_client: MakeClient, fake_cr: FakeControlRoom, captured: list[dict[str, Any]]
) -> None:
    """Login, a 401 replay, and an access-details refresh log events, none with a secret."""
    client = make_client()
    await client.authenticate()
    fake_cr.revoke_all()
    [a async for a in client.allocations()]
    session = client.execution_session(PATH, FakeExecuteTransport())
    await session.execute({"in": StringValue("x")}, timeout_s=5.0)
    events = [e["event"] for e in captured]
    assert "controlroom_token_obtained" in events
    assert "controlroom_token_rejected" in events
    assert "access_details_refreshed" in events
    tokens = [r.headers.get("X-Authorization", "") for r in fake_cr.requests]
    assert_clean(repr(captured), PASSWORD, EXEC_TOKEN, *filter(None, tokens))


async def test_rendered_log_lines_hold_no_secret(make_client: MakeClient) -> None:
    """Through the real JSON renderer (with redaction), log lines carry no secret either."""
    stream = io.StringIO()
    old = structlog.get_config()
    logs.configure("DEBUG", stream=stream)
    structlog.configure(cache_logger_on_first_use=False)
    try:
        client = make_client()
        await client.authenticate()
        logs.get_logger("test").info("login_done", token=client.token)
    finally:
        structlog.configure(**old)
    out = stream.getvalue()
    assert "login_done" in out
    assert_clean(out, PASSWORD, client.token.token.get_secret_value())  # type: ignore[union-attr]


def test_credential_reprs_are_masked() -> None:
    """repr and str of every credential kind show the username but never the secret."""
    for creds in (
        PasswordCredentials("u", PASSWORD),
        ApiKeyCredentials("u", API_KEY),
        BearerCredentials(BEARER),
        BearerCredentials(provider=lambda: BEARER),
    ):
        assert_clean(repr(creds) + str(creds), PASSWORD, API_KEY, BEARER)
    assert "username='u'" in repr(PasswordCredentials("u", PASSWORD))


def test_credentials_refuse_empty_or_ambiguous_input() -> None:
    """Empty secrets and a bearer with both token and provider are rejected at construction."""
    with pytest.raises(ValueError, match="password"):
        PasswordCredentials("u", "")
    with pytest.raises(ValueError, match="exactly one"):
        BearerCredentials(BEARER, provider=lambda: BEARER)
    with pytest.raises(ValueError, match="exactly one"):
        BearerCredentials()
