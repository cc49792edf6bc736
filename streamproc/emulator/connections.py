"""Connections: how many the emulator holds, and how long each may take to send a request.

The emulator is published on all interfaces by ``docker-compose.yml``, so a client that opens
connections and then sends nothing, or sends its request a byte at a time, must not be able
to hold them forever or starve everyone else. Four limits, all in the settings:

- ``keepalive_timeout_seconds``: how long a connection may wait for the first byte of its
  next request, at connect and after each response (aiohttp's keep-alive timer);
- ``header_timeout_seconds``: from that first byte until the request line and headers are
  complete, however slowly the bytes trickle in; then 408 and the connection is closed;
- ``body_timeout_seconds``: how long reading a body may take once its handler starts reading
  it (:func:`streamproc.emulator.httpio.read_body`), and how long an unread body is drained
  after the answer; then 408 and close;
- ``max_connections``: at the cap, a new connection closes the oldest one that is waiting for
  a request (idle or sending a slow request head), so a health check always gets in; only
  when every held connection is busy with a request is the new one answered 503 and closed.
  The cap is lowered to fit the process's open-file limit (raised first where allowed), so
  the listening socket never runs out of descriptors to accept with.

Unparsable requests are answered with the one JSON error shape, like every other error.
"""

from __future__ import annotations

import asyncio
import resource
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, cast

import orjson
from aiohttp import web
from aiohttp.web_request import BaseRequest

from streamproc.emulator.problems import STATUS_CODES, error_response
from streamproc.logs import get_logger

# Descriptors the emulator needs besides its client connections: the listening socket, the
# event loop, standard streams, log files, a key file.
RESERVED_FILES = 64
# How long a connection answered with a canned error (408, 503) lingers before it closes.
ANSWER_LINGER_S = 1.0


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_connections: int
    header_timeout_s: float
    body_timeout_s: float
    keepalive_timeout_s: float


def canned_error(status: int, code: str, message: str, details: Any = "") -> bytes:
    """A whole HTTP/1.1 error answer that closes the connection, written without a request."""
    body = orjson.dumps({"code": code, "message": message, "details": details})
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def fit_to_file_limit(wanted: int) -> int:
    """How many connections the open-file limit allows: the soft limit is raised toward the
    hard one when ``wanted`` needs it, and the cap lowered when even that is not enough."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + RESERVED_FILES
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return wanted
    return max(1, min(wanted, soft - RESERVED_FILES, soft // 2))


def answer_and_close(transport: asyncio.Transport, answer: bytes) -> None:
    """Send ``answer``, end the sending side, and close soon after.

    Closing at once would make the kernel reset the connection when the client's request
    bytes arrive, and a reset can destroy the answer before the client reads it; so input is
    discarded for a moment while the answer goes out.
    """
    transport.write(answer)
    if transport.can_write_eof():
        transport.write_eof()
    asyncio.get_running_loop().call_later(ANSWER_LINGER_S, transport.close)


class EmulatorConnection(web.RequestHandler):
    """aiohttp's connection handler, with the emulator's limits and its JSON error bodies."""

    __slots__ = ("_answered", "_head_timer", "_limits", "_refused")

    def __init__(self, manager: ConnectionServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = manager.limits
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False  # never admitted: aiohttp's handler never started
        self._answered = False  # a canned error answer was sent; the rest is discarded

    @property
    def awaiting_request(self) -> bool:
        """Whether the connection waits for (the rest of) a request head, with none queued."""
        waiter = self._waiter
        if waiter is None:
            # Before the handler task first runs (tasks do not start eagerly before 3.12),
            # bytes may already arrive: a connection that has not had a request yet waits.
            return self._request_count == 0
        return not waiter.done()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self._manager
        assert isinstance(server, ConnectionServer)
        if not server.admit(self):
            self._refused = True
            # uvloop's transports are not asyncio.Transport subclasses, but write the same.
            answer_and_close(cast(asyncio.Transport, transport), server.refusal)
            return
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused:
            return
        server = self._manager
        if isinstance(server, ConnectionServer):
            server.forget(self)
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused or self._answered:
            return
        waiting = self.awaiting_request
        super().data_received(data)
        if not self.awaiting_request:
            self._cancel_head_timer()
        elif waiting and data and self._head_timer is None:
            # The first bytes of a request, and its head is not complete: the idle timer
            # gives way to the head timer, which does not restart as more bytes trickle in.
            self.keep_alive(True)
            self._head_timer = self._loop.call_later(
                self._limits.header_timeout_s, self._head_timed_out
            )

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.awaiting_request or self.transport is None:
            return
        seconds = self._limits.header_timeout_s
        self._answered = True
        answer_and_close(
            self.transport,
            canned_error(
                408,
                "REQUEST_TIMEOUT",
                f"the request line and headers did not arrive within {seconds:g} s",
                {"timeoutSeconds": seconds},
            ),
        )

    def evict(self) -> None:
        """Close this idle connection to make room for a new one."""
        self._cancel_head_timer()
        self.force_close()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp renders parse errors (bad request line, oversized header) as text before
        # any middleware runs; this keeps the one error shape on the wire. The parser's
        # message is not echoed: it can quote request bytes, headers included.
        if request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        text = "the request is not valid HTTP" if status == 400 else phrase
        response = error_response(
            status, STATUS_CODES.get(status, "BAD_REQUEST"), text, type(exc).__name__ if exc else ""
        )
        response.force_close()
        return response


class ConnectionServer(web.Server):
    """aiohttp's server, admitting connections within :class:`ConnectionLimits`."""

    limits: ConnectionLimits
    cap: int
    refusal: bytes
    held: dict[EmulatorConnection, None]

    def configure(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.cap = fit_to_file_limit(limits.max_connections)
        if self.cap < limits.max_connections:
            get_logger("emulator").warning(
                "emulator_connection_cap_lowered",
                max_connections=limits.max_connections,
                cap=self.cap,
                reason="the open-file limit of the process is too low",
            )
        self.refusal = canned_error(
            503,
            "SERVICE_UNAVAILABLE",
            "the emulator holds as many connections as it may, all busy; try again shortly",
            {"maxConnections": self.cap},
        )
        self.held = {}

    def admit(self, connection: EmulatorConnection) -> bool:
        """Hold ``connection``, closing the oldest idle one at the cap; False to refuse it."""
        if len(self.held) >= self.cap:
            idle = next((c for c in self.held if c.awaiting_request), None)
            if idle is None:
                return False
            self.forget(idle)
            idle.evict()
        self.held[connection] = None
        return True

    def forget(self, connection: EmulatorConnection) -> None:
        self.held.pop(connection, None)

    def __call__(self) -> web.RequestHandler:
        return EmulatorConnection(self, loop=self._loop, **self._kwargs)


class AppRunner(web.AppRunner):
    """An AppRunner whose server applies :class:`ConnectionLimits` to every connection."""

    def __init__(self, app: web.Application, *, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(
            app,
            keepalive_timeout=limits.keepalive_timeout_s,
            # How long an unread body is drained after the answer, before closing.
            lingering_time=limits.body_timeout_s,
            **kwargs,
        )
        self._limits = limits

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # AppRunner builds a plain Server; retyping it (same fields, plus the limits) is the
        # narrowest way to choose the connection handler class.
        server.__class__ = ConnectionServer
        assert isinstance(server, ConnectionServer)
        server.configure(self._limits)
        return server
