"""One request and its response through the httptools transport: what is sent, what is read."""

from __future__ import annotations

import asyncio
import socket
import ssl

import httptools
import pytest

from streamproc.controlroom.http1 import MAX_RESPONSE_BYTES
from streamproc.controlroom.transport_httptools import HttptoolsExecuteTransport
from streamproc.errors import EndpointConnectionError
from tests.fixtures.tls import TlsFiles
from tests.integration.controlroom.http1.conftest import PeerFactory, Request, response

pytestmark = pytest.mark.integration

SECRET = "query-Secret-Token-Value"


async def test_request_carries_host_length_headers_query_and_body(
    peer: PeerFactory, transport: HttptoolsExecuteTransport
) -> None:
    """The request line keeps path and query; Host, Content-Length and each header are sent."""
    server = await peer()
    url = server.url("/v1/execute?a=1&b=two")
    body = b'{"botInput":{}}'
    headers = {"X-Authorization": "tok", "X-Attempt": "1", "X-Tab": "a\tb"}
    await transport.post(url, headers, body, 5.0)
    [sent] = server.requests
    assert sent.line == "POST /v1/execute?a=1&b=two HTTP/1.1"
    assert sent.headers["host"] == f"127.0.0.1:{server.port}"
    assert sent.headers["content-length"] == str(len(body))
    assert sent.headers["x-authorization"] == "tok"
    assert sent.headers["x-attempt"] == "1"
    assert sent.headers["x-tab"] == "a\tb"  # a tab is allowed in a value
    assert sent.body == body


async def test_chunked_body_is_joined_and_headers_read_by_any_case(
    peer: PeerFactory, transport: HttptoolsExecuteTransport
) -> None:
    """A chunked answer arrives as one body; its headers are found whatever the case."""

    async def chunked(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nRetry-After: 3\r\n"
            b"X-Twice: a\r\nX-Twice: b\r\n\r\n"
            b'5\r\n{"ok"\r\n6\r\n:true}\r\n0\r\n\r\n'
        )
        return True

    server = await peer(chunked)
    answer = await transport.post(server.url(), {}, b"{}", 5.0)
    assert answer.status == 200
    assert answer.body == b'{"ok":true}'
    assert answer.headers["retry-after"] == "3"
    assert answer.headers.get("Retry-After") == "3"
    assert answer.headers["X-TWICE"] == "a, b"
    assert "Content-Length" not in answer.headers


async def test_body_delimited_by_the_close_is_read_and_not_reused(
    peer: PeerFactory, transport: HttptoolsExecuteTransport
) -> None:
    """Without a length or chunks the body runs to the close; the next post connects anew."""

    async def until_close(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"to":"eof"}')
        return False

    server = await peer(until_close)
    first = await transport.post(server.url(), {}, b"{}", 5.0)
    second = await transport.post(server.url(), {}, b"{}", 5.0)
    assert first.body == second.body == b'{"to":"eof"}'
    assert server.accepted == 2


async def test_interim_response_is_skipped(
    peer: PeerFactory, transport: HttptoolsExecuteTransport
) -> None:
    """A 103 Early Hints before the answer is not mistaken for it."""

    async def hints_first(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n")
        writer.write(response(201, b"done"))
        return True

    server = await peer(hints_first)
    answer = await transport.post(server.url(), {}, b"{}", 5.0)
    assert (answer.status, answer.body) == (201, b"done")
    assert "link" not in answer.headers
    assert (await transport.post(server.url(), {}, b"{}", 5.0)).status == 201
    assert server.accepted == 1


async def test_redirect_is_returned_as_a_status_not_followed(
    peer: PeerFactory, transport: HttptoolsExecuteTransport
) -> None:
    """A 307 comes back as data: following it would resend the token elsewhere."""

    async def redirect(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(response(307, b"", {"Location": "http://elsewhere.test/execute"}))
        return True

    server = await peer(redirect)
    answer = await transport.post(server.url(), {"X-Authorization": "tok"}, b"{}", 5.0)
    assert answer.status == 307
    assert answer.headers["location"] == "http://elsewhere.test/execute"
    assert len(server.requests) == 1


async def test_garbage_is_a_connection_error_and_the_connection_is_closed(
    peer: PeerFactory, transport: HttptoolsExecuteTransport
) -> None:
    """Bytes that are not HTTP fail the post as EndpointConnectionError; nothing is reused."""

    async def garbage(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        return True

    server = await peer(garbage)
    with pytest.raises(EndpointConnectionError, match="malformed response") as caught:
        await transport.post(server.url("/execute?token=" + SECRET), {}, b"{}", 5.0)
    assert isinstance(caught.value.__cause__, httptools.HttpParserError)
    assert SECRET not in str(caught.value)
    with pytest.raises(EndpointConnectionError):
        await transport.post(server.url(), {}, b"{}", 5.0)
    assert server.accepted == 2


async def test_oversized_response_is_a_connection_error_and_closes(
    peer: PeerFactory, transport: HttptoolsExecuteTransport
) -> None:
    """A response past the size limit fails the post and closes the connection mid-body."""

    async def huge(request: Request, writer: asyncio.StreamWriter) -> bool:
        size = MAX_RESPONSE_BYTES + 1
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
        writer.write(b"x" * size)
        return True

    server = await peer(huge)
    with pytest.raises(EndpointConnectionError, match="larger than 8 MiB"):
        await transport.post(server.url(), {}, b"{}", 10.0)
    assert transport._pool.in_use == 0


async def test_early_close_is_a_connection_error(
    peer: PeerFactory, transport: HttptoolsExecuteTransport
) -> None:
    """A close in the middle of a body fails the post; the partial body is not returned."""

    async def cut_short(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        return False

    server = await peer(cut_short)
    with pytest.raises(EndpointConnectionError, match="in the middle of a response"):
        await transport.post(server.url(), {}, b"{}", 5.0)


async def test_refused_connection_is_a_connection_error_without_the_query(
    transport: HttptoolsExecuteTransport,
) -> None:
    """Nothing listening: EndpointConnectionError, its text and URL free of the query."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    url = f"http://127.0.0.1:{port}/execute?token={SECRET}"
    with pytest.raises(EndpointConnectionError) as caught:
        await transport.post(url, {}, b"{}", 5.0)
    assert isinstance(caught.value.__cause__, OSError)
    assert SECRET not in str(caught.value) + repr(caught.value)
    assert caught.value.url == f"http://127.0.0.1:{port}/execute"
    assert transport._pool.in_use == 0


@pytest.fixture
def server_tls(tls_files: TlsFiles) -> ssl.SSLContext:
    """The test CA's certificate for 127.0.0.1, as a server presents it."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files.cert, tls_files.key)
    return context


async def test_https_is_verified_against_the_ca_file_and_kept_alive(
    peer: PeerFactory, server_tls: ssl.SSLContext, tls_files: TlsFiles
) -> None:
    """Over TLS with the CA trusted, posts succeed and share one connection."""
    server = await peer(ssl=server_tls)
    transport = HttptoolsExecuteTransport(max_connections=2, ca_file=tls_files.ca)
    try:
        for _ in range(3):
            answer = await transport.post(server.url(scheme="https"), {}, b"{}", 5.0)
            assert answer.body == b'{"ok":true}'
    finally:
        await transport.aclose()
    assert server.accepted == 1


@pytest.mark.parametrize(("verify_tls", "accepted"), [(True, False), (False, True)])
async def test_https_certificate_check_follows_verify_tls(
    peer: PeerFactory, server_tls: ssl.SSLContext, verify_tls: bool, accepted: bool
) -> None:
    """Without the CA the certificate is refused, unless verification is off."""
    server = await peer(ssl=server_tls)
    transport = HttptoolsExecuteTransport(verify_tls=verify_tls)
    try:
        if accepted:
            assert (await transport.post(server.url(scheme="https"), {}, b"{}", 5.0)).status == 200
        else:
            with pytest.raises(EndpointConnectionError, match="certificate"):
                await transport.post(server.url(scheme="https"), {}, b"{}", 5.0)
    finally:
        await transport.aclose()
    assert transport.in_use == 0
