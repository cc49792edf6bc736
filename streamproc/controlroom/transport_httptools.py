"""httptools at the seam: HTTP/1.1 written directly on the event loop's protocols.

Cheap per execute by construction: no thread to hand the request to and back, no task, and
per request one future, one timer, the request bytes and the response. The request is built
here (request line and ``Host`` cached per URL, the caller's headers checked and appended,
``Content-Length``, the body) and written in one call; httptools' C parser (llhttp) reads the
answer in :mod:`~streamproc.controlroom.http1`; :mod:`~streamproc.controlroom.http1_pool`
holds the keep-alive connections.

``httptools_error`` is the one boundary where this transport's failures enter the error tree.

What it does not do, on purpose: no proxy from the environment, no redirects (a 3xx is returned
as a status, as the other transports do: following one would resend X-Authorization
elsewhere), no cookies (the token travels in a header), no credentials from the URL, no
compression, no ``Expect: 100-continue``, no HTTP/2. Bodies are written whole: an execute body
is a few KiB, so there is no flow control on the way out.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import httptools

from streamproc.controlroom.http1 import Origin
from streamproc.controlroom.http1_pool import ConnectionPool
from streamproc.controlroom.http_errors import public_url, scrub
from streamproc.controlroom.transport import RawResponse
from streamproc.controlroom.trust import check, tls_context
from streamproc.errors import (
    BadRequestError,
    ControlRoomError,
    EndpointConnectionError,
    EndpointTimeoutError,
)

_CACHED = 64  # URLs and header names remembered; a few are in use at a time
_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 9110 5.1: a field name is a token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# What a field value must not hold (RFC 9110 5.5): CR and LF would end the line and smuggle
# in headers of the caller's choosing, other controls are invalid; tab is allowed. Lone
# surrogates cannot be encoded at all.
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")
# Set from the request itself: a caller's copy would contradict the framing or the target.
_FRAMING = frozenset({"host", "content-length", "transfer-encoding"})
_UNSENDABLE_TARGET = re.compile(r"[\x00-\x20\x7f]")
_PRINTABLE_ASCII = "".join(chr(c) for c in range(0x21, 0x7F))  # left as they are in a target


def httptools_error(exc: BaseException, method: str, url: str) -> ControlRoomError:
    """The error-tree counterpart of a failed exchange; the caller chains it.

    A function, not a context manager, for the same reason as ``pyreqwest_error``: a ``try``
    costs nothing per request until something is raised.
    """
    public = public_url(url)
    if isinstance(exc, TimeoutError):  # before OSError, of which it is one
        return EndpointTimeoutError("no response in time", method=method, url=public)
    if isinstance(exc, OSError):  # refused, reset, DNS, TLS (ssl.SSLError), closed early
        detail = scrub(str(exc)) or "no detail"
        return EndpointConnectionError(
            f"connection failed: {type(exc).__name__}: {detail}", method=method, url=public
        )
    if isinstance(exc, httptools.HttpParserError):
        detail = scrub(str(exc)) or "no detail"
        return EndpointConnectionError(f"malformed response: {detail}", method=method, url=public)
    return BadRequestError(f"invalid URL: {scrub(str(exc))}", method=method, url=public)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a URL's requests go, and the start of every request to it."""

    origin: Origin
    head: bytes  # request line and Host header, CRLF-terminated


def parse_target(url: str) -> Target:
    """``url`` as a ``Target``; ValueError (quoting no query or credentials) if unusable."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("the scheme must be http or https")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials in the URL are not sent; use a header")
    host = parts.hostname
    if not host:
        raise ValueError("no host")
    port = parts.port or _DEFAULT_PORTS[scheme]  # .port raises ValueError when out of range
    try:
        ipaddress.ip_address(host)
    except ValueError:
        host = host.encode("idna").decode("ascii")  # UnicodeError (a ValueError) if malformed
    if _UNSENDABLE_TARGET.search(host):
        raise ValueError("the host holds spaces or control characters")
    authority = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        authority = f"{authority}:{parts.port}"
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    if _UNSENDABLE_TARGET.search(target):
        raise ValueError("the path or query holds spaces or control characters")
    # Non-ASCII characters travel percent-encoded as UTF-8, as a browser sends them.
    target = quote(target, safe=_PRINTABLE_ASCII)
    head = f"POST {target} HTTP/1.1\r\nHost: {authority}\r\n".encode("ascii")
    return Target(Origin(host, port, scheme == "https"), head)


class HttptoolsExecuteTransport:
    """Keep-alive HTTP/1.1 on the event loop; ``timeout_s`` bounds the whole exchange (pool
    wait, connect, TLS handshake, write and the whole response)."""

    def __init__(
        self,
        *,
        max_connections: int = 64,
        verify_tls: bool = True,
        ca_file: str | Path | None = None,
    ) -> None:
        self.max_connections = max_connections
        check(verify_tls, ca_file)
        self._verify_tls = verify_tls
        # A CA file is read now, so a bad one stops the start. The system's CAs alone are
        # loaded at the first https URL: about 50 ms, wasted on a plain-http endpoint.
        self._tls = tls_context(verify_tls, ca_file) if ca_file is not None else None
        self._pool = ConnectionPool(max_connections)
        self._targets: dict[str, Target] = {}
        self._names: set[str] = set()  # header names already found to be valid
        self._closed = False

    @property
    def in_use(self) -> int:
        """Connections open or being opened, idle or busy: never more than max_connections."""
        return self._pool.in_use

    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes, timeout_s: float
    ) -> RawResponse:
        if self._closed:
            raise RuntimeError("the execute transport is closed")
        if timeout_s <= 0:
            raise EndpointTimeoutError(
                "no time left for the attempt", method="POST", url=public_url(url)
            )
        target = self._targets.get(url) or self._target(url)
        request = self._request(target, url, headers, body)
        pool = self._pool
        deadline = asyncio.get_running_loop().time() + timeout_s
        try:
            conn = await pool.acquire(target.origin, deadline, self._tls)
        except (OSError, ValueError) as exc:  # TimeoutError included
            raise httptools_error(exc, "POST", url) from exc
        answer = conn.request(request, deadline)
        try:
            response = await answer
        except BaseException as exc:
            # Timed out, failed or cancelled mid-exchange: the connection may hold half a
            # response, so it is closed and its slot freed, never reused.
            pool.discard(conn)
            if isinstance(exc, (OSError, httptools.HttpParserError)):
                raise httptools_error(exc, "POST", url) from exc
            if answer.done() and not answer.cancelled():
                answer.exception()  # failed as the task was cancelled: seen, not logged
            raise
        pool.release(conn)
        return response

    async def aclose(self) -> None:
        self._closed = True
        await self._pool.aclose()

    def _target(self, url: str) -> Target:
        try:
            target = parse_target(url)
        except ValueError as exc:
            raise BadRequestError(
                f"invalid URL: {scrub(str(exc))}", method="POST", url=public_url(url)
            ) from exc
        if target.origin.tls and self._tls is None:
            self._tls = tls_context(self._verify_tls, None)
        if len(self._targets) < _CACHED:  # parsed once per URL, not once per request
            self._targets[url] = target
        return target

    def _request(self, target: Target, url: str, headers: Mapping[str, str], body: bytes) -> bytes:
        """The whole request; BadRequestError naming a header HTTP cannot carry, never its
        value (the tokens travel in header values). Raised outside any handler, so no
        exception that quotes a value rides along as cause or context."""
        names = self._names
        lines: list[str] = []
        for name, value in headers.items():
            if name not in names:
                problem = _bad_name(name)
                if problem is not None:
                    raise BadRequestError(
                        f"invalid header: {problem}", method="POST", url=public_url(url)
                    )
                if len(names) < _CACHED:
                    names.add(name)
            # isprintable() is one C pass and true for nearly every value; only a value it
            # refuses (a tab, or worse) is searched for what HTTP cannot carry.
            if not value.isprintable() and _BAD_VALUE.search(value) is not None:
                raise BadRequestError(
                    f"invalid header: the value of {name!r} holds control characters",
                    method="POST",
                    url=public_url(url),
                )
            lines.append(f"{name}: {value}\r\n")
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        return b"".join((target.head, "".join(lines).encode(), body))


def _bad_name(name: str) -> str | None:
    if _TOKEN.fullmatch(name) is None:
        return "a header name is not a valid HTTP token"
    if name.lower() in _FRAMING:
        return f"{name!r} is set by the transport"
    return None
