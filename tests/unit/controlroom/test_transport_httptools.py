"""The httptools transport without a network: URLs, headers it refuses, its error boundary."""

from __future__ import annotations

import ssl

import httptools
import pytest

from streamproc.controlroom.http1 import Origin, ResponseHeaders
from streamproc.controlroom.transport_httptools import (
    HttptoolsExecuteTransport,
    httptools_error,
    parse_target,
)
from streamproc.errors import (
    BadRequestError,
    ControlRoomError,
    EndpointConnectionError,
    EndpointTimeoutError,
)
from tests.unit.controlroom.fakes import BEARER

URL = "https://cr.example.test/execute?token=abc"


@pytest.mark.parametrize(
    ("url", "origin", "head"),
    [
        (
            "http://h.test/execute",
            Origin("h.test", 80, tls=False),
            "POST /execute HTTP/1.1\r\nHost: h.test\r\n",
        ),
        (
            "https://H.Test:8443/a/b?x=1&y=%20#frag",
            Origin("h.test", 8443, tls=True),
            "POST /a/b?x=1&y=%20 HTTP/1.1\r\nHost: h.test:8443\r\n",
        ),
        (
            "HTTPS://h.test",
            Origin("h.test", 443, tls=True),
            "POST / HTTP/1.1\r\nHost: h.test\r\n",
        ),
        (
            "http://[::1]:8090/execute",
            Origin("::1", 8090, tls=False),
            "POST /execute HTTP/1.1\r\nHost: [::1]:8090\r\n",
        ),
        (
            "http://bücher.test/straße",
            Origin("xn--bcher-kva.test", 80, tls=False),
            "POST /stra%C3%9Fe HTTP/1.1\r\nHost: xn--bcher-kva.test\r\n",
        ),
    ],
)
def test_a_url_becomes_an_origin_and_a_request_head(url: str, origin: Origin, head: str) -> None:
    """Default ports, Host as the URL gave it, query kept, fragment dropped, IDNs encoded."""
    target = parse_target(url)
    assert target.origin == origin
    assert target.head == head.encode()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("not a url", "scheme"),
        ("/relative/execute", "scheme"),
        ("ftp://h.test/execute", "scheme"),
        ("http://", "no host"),
        ("http://h.test:99999/execute", "[Pp]ort"),
        (f"http://user:{BEARER}@h.test/execute", "credentials"),
        ("http://h.test/a path", "spaces"),
        ("http://h.test/execute?x=\r\nX-Injected: 1", "spaces"),
        ("http://a..b/execute", "label"),
    ],
)
def test_unusable_urls_are_value_errors_without_secrets(url: str, problem: str) -> None:
    """Every URL the transport cannot send to is a ValueError saying why, quoting no secret."""
    with pytest.raises(ValueError, match=problem) as caught:
        parse_target(url)
    assert BEARER not in str(caught.value)


def test_response_headers_are_found_by_any_case() -> None:
    """Lookups by any case find the header; iteration gives the lower-cased names."""
    headers = ResponseHeaders({"retry-after": "2", "content-type": "application/json"})
    assert headers["Retry-After"] == headers.get("RETRY-AFTER") == "2"
    assert "Content-Type" in headers
    assert headers.get("x-missing") is None
    assert sorted(headers) == ["content-type", "retry-after"]
    assert len(headers) == 2


@pytest.mark.parametrize("token", [f"{BEARER}\r\n", f"{BEARER}\x00", f"Bearer\n{BEARER}", "\ud800"])
async def test_unsendable_header_value_is_refused_by_name(token: str) -> None:
    """A value HTTP cannot carry is refused naming the header, never quoting the value."""
    transport = HttptoolsExecuteTransport()
    try:
        with pytest.raises(BadRequestError) as caught:
            await transport.post("http://h.test/execute", {"X-Authorization": token}, b"{}", 1.0)
    finally:
        await transport.aclose()
    text = str(caught.value) + repr(caught.value)
    assert "'X-Authorization'" in text
    assert BEARER not in text
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    assert transport.in_use == 0  # refused before any connection


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("X Authorization", "not a valid HTTP token"),
        ("X-Authorization:", "not a valid HTTP token"),
        ("", "not a valid HTTP token"),
        ("Content-Length", "set by the transport"),
        ("host", "set by the transport"),
        ("Transfer-Encoding", "set by the transport"),
    ],
)
async def test_header_names_that_break_the_request_are_refused(name: str, problem: str) -> None:
    """Names that are not tokens, or that would contradict the request's framing, are refused."""
    transport = HttptoolsExecuteTransport()
    try:
        with pytest.raises(BadRequestError, match=problem):
            await transport.post("http://h.test/execute", {name: "v"}, b"{}", 1.0)
    finally:
        await transport.aclose()


@pytest.mark.parametrize(
    ("raised", "error"),
    [
        (TimeoutError(), EndpointTimeoutError),
        (ConnectionRefusedError(111, f"Connect call failed for {URL}"), EndpointConnectionError),
        (
            ConnectionError("the server closed the connection before answering"),
            EndpointConnectionError,
        ),
        (ssl.SSLCertVerificationError("certificate verify failed"), EndpointConnectionError),
        (httptools.HttpParserError("invalid constant string"), EndpointConnectionError),
        (ValueError("label empty or too long"), BadRequestError),
    ],
)
def test_failures_map_into_the_error_tree_without_the_query(
    raised: Exception, error: type[ControlRoomError]
) -> None:
    """Each failure becomes its branch of the tree; the URL and text lose the query."""
    mapped = httptools_error(raised, "POST", URL)
    assert type(mapped) is error
    assert mapped.url == "https://cr.example.test/execute"
    assert "token=abc" not in str(mapped)


async def test_without_time_left_is_a_timeout_and_after_close_a_runtime_error() -> None:
    """A spent budget times out at once; a closed transport says so, like the others."""
    transport = HttptoolsExecuteTransport()
    with pytest.raises(EndpointTimeoutError):
        await transport.post("http://h.test/execute", {}, b"{}", 0.0)
    await transport.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await transport.post("http://h.test/execute", {}, b"{}", 1.0)


def test_max_connections_must_be_positive() -> None:
    """A pool of no connections could never send anything."""
    with pytest.raises(ValueError, match="at least 1"):
        HttptoolsExecuteTransport(max_connections=0)
