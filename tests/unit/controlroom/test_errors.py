from __future__ import annotations

from datetime import UTC, datetime

import aiohttp
import httpx
import pytest
from pyreqwest import exceptions as pyreqwest_errors
from pyreqwest.middleware import Next
from pyreqwest.request import Request
from pyreqwest.response import Response, ResponseBuilder

from streamproc.app import make_execute_transport
from streamproc.controlroom.http_errors import (
    error_for_status,
    public_url,
    retry_after_seconds,
)
from streamproc.controlroom.transport import TransportKind
from streamproc.controlroom.transport_aiohttp import map_aiohttp_errors
from streamproc.controlroom.transport_httpx import HttpxExecuteTransport, map_httpx_errors
from streamproc.controlroom.transport_pyreqwest import PyreqwestExecuteTransport
from streamproc.errors import (
    AuthError,
    BadRequestError,
    ConflictError,
    ControlRoomError,
    EndpointConnectionError,
    EndpointTimeoutError,
    NotFoundError,
    OverConcurrencyLimitError,
    PermissionDeniedError,
    ServerError,
)

URL = "https://cr.example.test/orchestrator/v1/hotbot/config?token=abc"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadRequestError),
        (401, AuthError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (418, BadRequestError),
        (429, OverConcurrencyLimitError),
        (500, ServerError),
        (503, ServerError),
        (302, BadRequestError),
    ],
)
def test_each_status_maps_to_its_error(status: int, error: type[ControlRoomError]) -> None:
    """Every HTTP status lands on the documented branch of the error tree, with context."""
    body = b'{"code":"x.y","message":"went wrong","details":"more"}'
    exc = error_for_status(status, body, {}, method="POST", url=URL, what="list allocations")
    assert type(exc) is error
    assert exc.status == status
    assert exc.body == {"code": "x.y", "message": "went wrong", "details": "more"}
    assert (exc.method, exc.url) == (
        "POST",
        "https://cr.example.test/orchestrator/v1/hotbot/config",
    )
    assert "token=abc" not in str(exc)
    assert exc.retryable == (status in (429, 500, 503))


def test_message_names_the_call_the_reason_and_the_code() -> None:
    """The one-line message says what failed, why, the server's code, method, URL and status."""
    exc = error_for_status(
        404, b'{"code":"nf","message":"no such file"}', {}, method="GET", url=URL, what="lookup"
    )
    assert str(exc) == (
        "lookup failed: no such file (nf) "
        "(GET https://cr.example.test/orchestrator/v1/hotbot/config) [HTTP 404]"
    )


def test_non_json_error_body_is_kept_as_text() -> None:
    """A proxy's HTML error page is kept (shortened) under "text" and used as the reason."""
    exc = error_for_status(502, b"Bad gateway" * 100, {}, method="POST", url=URL, what="execute")
    assert exc.body["text"].startswith("Bad gateway")
    assert len(exc.body["text"]) <= 300


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("3", 3.0),
        ("0.5", 0.5),
        ("-2", 0.0),
        ("Sat, 28 Nov 2026 18:00:10 GMT", 10.0),
        ("soon", None),
    ],
)
def test_retry_after_delta_or_date(value: str, seconds: float | None) -> None:
    """Retry-After is read as delta-seconds or as an HTTP date, never negative."""
    now = datetime(2026, 11, 28, 18, 0, 0, tzinfo=UTC)
    assert retry_after_seconds(value, now) == seconds


def test_retry_after_header_lookup_ignores_case() -> None:
    """A lower-case retry-after header from a plain dict still sets retry_after."""
    exc = error_for_status(429, b"", {"retry-after": "4"}, method="POST", url=URL, what="execute")
    assert isinstance(exc, OverConcurrencyLimitError)
    assert exc.retry_after == 4.0


def test_public_url_drops_query_fragment_and_userinfo() -> None:
    """What may be shown of a URL: scheme, host, port and path only."""
    assert public_url("https://u:p@h.test:8443/a/b?x=1#f") == "https://h.test:8443/a/b"


@pytest.mark.parametrize(
    ("raised", "error"),
    [
        (httpx.ConnectError("refused"), EndpointConnectionError),
        (httpx.RemoteProtocolError("peer closed"), EndpointConnectionError),
        (httpx.ReadTimeout("slow"), EndpointTimeoutError),
        (httpx.PoolTimeout("pool"), EndpointTimeoutError),
        (httpx.UnsupportedProtocol("ftp"), BadRequestError),
    ],
)
def test_httpx_exceptions_are_mapped_and_chained(raised: Exception, error: type[Exception]) -> None:
    """httpx exceptions enter the tree at one boundary, chained with ``from``."""
    with pytest.raises(error) as caught, map_httpx_errors("POST", URL):
        raise raised
    assert caught.value.__cause__ is raised
    assert "token=abc" not in str(caught.value)


@pytest.mark.parametrize(
    ("raised", "error"),
    [
        (aiohttp.ClientConnectionError("refused"), EndpointConnectionError),
        (aiohttp.ServerDisconnectedError(), EndpointConnectionError),
        (aiohttp.ServerTimeoutError("slow"), EndpointTimeoutError),
        (TimeoutError(), EndpointTimeoutError),
        (ConnectionResetError("reset"), EndpointConnectionError),
        (aiohttp.InvalidURL("nope"), BadRequestError),
        (aiohttp.NonHttpUrlClientError("ftp://h.test/execute"), BadRequestError),
    ],
)
def test_aiohttp_exceptions_are_mapped_and_chained(
    raised: Exception, error: type[Exception]
) -> None:
    """aiohttp and socket exceptions enter the tree at one boundary, chained with ``from``."""
    with pytest.raises(error) as caught, map_aiohttp_errors("POST", URL):
        raise raised
    assert caught.value.__cause__ is raised


async def test_httpx_transport_returns_statuses_and_maps_failures() -> None:
    """The httpx execute transport returns any status as data and raises only tree errors."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/down":
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(429, headers={"Retry-After": "1"}, content=b"{}")

    transport = HttpxExecuteTransport(transport=httpx.MockTransport(handler))
    try:
        raw = await transport.post("https://h.test/execute", {}, b"{}", 1.0)
        assert (raw.status, raw.headers["retry-after"], raw.body) == (429, "1", b"{}")
        with pytest.raises(EndpointConnectionError):
            await transport.post("https://h.test/down", {}, b"{}", 1.0)
    finally:
        await transport.aclose()


def _causes(*messages: str) -> pyreqwest_errors.CauseErrorDetails:
    return {"causes": [{"message": m} for m in messages]}


@pytest.mark.parametrize(
    ("raised", "error"),
    [
        (
            pyreqwest_errors.ConnectError(
                "connection error", _causes(f"error sending request for url ({URL})", "refused")
            ),
            EndpointConnectionError,
        ),
        (pyreqwest_errors.ReadError("read error", _causes("reset")), EndpointConnectionError),
        (
            pyreqwest_errors.ClientClosedError("Client was closed", {"causes": None}),
            EndpointConnectionError,
        ),
        (pyreqwest_errors.ReadTimeoutError("read timeout", _causes("slow")), EndpointTimeoutError),
        (
            pyreqwest_errors.ConnectTimeoutError("connection timeout", _causes()),
            EndpointTimeoutError,
        ),
        (
            pyreqwest_errors.PoolTimeoutError("Timeout acquiring semaphore", _causes()),
            EndpointTimeoutError,
        ),
        (pyreqwest_errors.BuilderError("builder error", _causes("scheme")), BadRequestError),
        (ValueError("relative URL without a base"), BadRequestError),
        (ConnectionResetError("reset"), EndpointConnectionError),
    ],
)
async def test_pyreqwest_exceptions_are_mapped_and_chained(
    raised: Exception, error: type[Exception]
) -> None:
    """pyreqwest exceptions enter the tree in the transport, chained, the URL's query cut off."""

    async def handler(_request: Request, _next: Next) -> Response:
        raise raised

    transport = PyreqwestExecuteTransport(middleware=handler)
    try:
        with pytest.raises(error) as caught:
            await transport.post(URL, {}, b"{}", 1.0)
    finally:
        await transport.aclose()
    assert caught.value.__cause__ is raised
    assert "token=abc" not in str(caught.value)


async def test_pyreqwest_transport_returns_statuses_and_maps_failures() -> None:
    """The pyreqwest transport sends headers and body as given, returns any status as data."""
    seen: list[Request] = []

    async def handler(request: Request, _next: Next) -> Response:
        seen.append(request)
        if request.url.path == "/down":
            raise pyreqwest_errors.ConnectError("connection error", _causes("refused"))
        return await (
            ResponseBuilder().status(429).header("Retry-After", "1").body_bytes(b"{}").build()
        )

    transport = PyreqwestExecuteTransport(middleware=handler)
    try:
        raw = await transport.post("https://h.test/execute", {"X-Request-Id": "r1"}, b"[1]", 1.0)
        assert (raw.status, raw.headers["retry-after"], raw.body) == (429, "1", b"{}")
        assert type(raw.body) is bytes
        with pytest.raises(EndpointConnectionError) as caught:
            await transport.post("https://h.test/down", {}, b"{}", 1.0)
    finally:
        await transport.aclose()
    assert isinstance(caught.value.__cause__, pyreqwest_errors.ConnectError)
    sent = seen[0]
    assert (sent.method, sent.headers["x-request-id"]) == ("POST", "r1")
    assert sent.body is not None
    assert sent.body.copy_bytes() == b"[1]"


async def test_pyreqwest_transport_without_time_left_is_a_timeout() -> None:
    """A spent budget is a timeout at once, not a duration reqwest would refuse as invalid."""
    transport = PyreqwestExecuteTransport()
    try:
        with pytest.raises(EndpointTimeoutError):
            await transport.post("https://h.test/execute", {}, b"{}", -0.5)
    finally:
        await transport.aclose()


async def test_pyreqwest_transport_refuses_use_after_close() -> None:
    """A closed transport says so, like the aiohttp one, instead of a retryable error."""
    transport = PyreqwestExecuteTransport()
    await transport.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await transport.post("https://h.test/execute", {}, b"{}", 1.0)


@pytest.mark.parametrize("kind", ["aiohttp", "httpx", "httptools", "pyreqwest"])
@pytest.mark.parametrize(
    "url", ["not a url", "/relative/execute", "ftp://h.test/execute", "http://"]
)
async def test_unusable_urls_are_bad_requests(kind: TransportKind, url: str) -> None:
    """Every execute transport rejects a URL it cannot send to with BadRequestError."""
    transport = make_execute_transport(kind)
    try:
        with pytest.raises(BadRequestError) as caught:
            await transport.post(url, {}, b"{}", 1.0)
    finally:
        await transport.aclose()
    assert caught.value.__cause__ is not None
