"""One HTTP/1.1 keep-alive connection: write a request, read its response with httptools.

``Http1Connection`` is an asyncio ``Protocol``: the loop (uvloop in the processor) hands it the
bytes, httptools' C parser (llhttp) frames the response, and one future per request carries
the ``RawResponse`` back. Nothing here waits or loops: :mod:`http1_pool` decides which
connection a request takes, :mod:`transport_httptools` builds the request bytes and maps the
failures into the error tree.

A request's future fails with ``TimeoutError`` (the deadline passed), an ``OSError`` (a reset,
a close before the answer, a TLS error; a ``ConnectionError`` whose text says which) or
``httptools.HttpParserError`` (bytes that are not an HTTP/1.1 response). Any failure closes the
connection: a connection left in the middle of a response is never used again.
"""

from __future__ import annotations

import asyncio
import select
from collections.abc import Callable, Iterator, Mapping
from typing import NamedTuple, cast

import httptools

from streamproc.controlroom.transport import RawResponse

# An execute answer is a few KiB of botOutput; a peer that sends more than this (head, body and
# chunk framing together) is broken or hostile, and buffering it would only cost memory.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024


class Origin(NamedTuple):
    """Where a connection goes; connections are pooled and reused per origin."""

    host: str
    port: int
    tls: bool


class ResponseHeaders(Mapping[str, str]):
    """Response headers by case-insensitive name: kept lower-cased, looked up lower-cased.

    A repeated header's values are joined with ", " (RFC 9110, 5.3); no cookies are kept, so
    the one header that must not be joined never matters here.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[str, str]) -> None:
        self._fields = fields

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"ResponseHeaders({self._fields!r})"


class Http1Connection(asyncio.Protocol):
    """One connection to ``origin``, one request at a time (no pipelining).

    ``closed`` turns true once either side closed it or a response went wrong; ``reusable`` is
    true only after a response that ended cleanly and allowed keep-alive. ``on_lost`` is called
    once when the connection is gone, so its pool can drop it and free its slot.
    """

    def __init__(
        self,
        origin: Origin,
        loop: asyncio.AbstractEventLoop,
        on_lost: Callable[[Http1Connection], None],
    ) -> None:
        self.origin = origin
        self.closed = False
        self.reusable = False
        self.discarded = False  # the pool's mark: its slot is already freed
        self.idle_since = 0.0
        self.lost: asyncio.Future[None] = loop.create_future()
        self.loop = loop
        self._on_lost = on_lost
        self._transport: asyncio.Transport | None = None
        self._poll: select.poll | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[RawResponse] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._received = 0
        self._status = 0
        self._fields: dict[str, str] = {}
        self._body: list[bytes] = []
        self._headers_done = False
        self._until_eof = False

    # The pool's side.

    def request(self, data: bytes, deadline: float) -> asyncio.Future[RawResponse]:
        """Write ``data`` (a whole request) and return the future of its response.

        ``deadline`` is in loop time. The connection's timer is not replaced per request (about
        3 us each on uvloop): the armed one stays when it fires no later than ``deadline``,
        and on firing it only fails a request whose own deadline has passed, else moves on to
        that deadline. With requests one after another under the same attempt timeout, a
        connection arms a timer about once per timeout, not once per request.
        """
        waiter: asyncio.Future[RawResponse] = self.loop.create_future()
        self._waiter = waiter
        self.reusable = False
        self._received = 0
        self._status = 0
        self._fields = {}
        self._body = []
        self._headers_done = self._until_eof = False
        self._deadline = deadline
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(deadline, self._expire)
        assert self._transport is not None  # connection_made ran before the pool got it
        self._transport.write(data)
        return waiter

    def readable(self) -> bool:
        """Whether an idle connection has bytes or a close waiting that the loop has not read.

        An idle connection must receive nothing; anything waiting is usually the server's FIN
        (or TLS close_notify) for a keep-alive connection it just gave up. The loop reads
        sockets only between callbacks, so without this look a FIN that arrived during the
        current loop iteration would go unnoticed and the request would be written into a
        closed connection. One ``poll(0)`` system call, about 1 us.
        """
        if self._poll is None:
            return False
        try:
            return bool(self._poll.poll(0))
        except (OSError, ValueError):  # a descriptor already closed under us
            return True

    def close(self) -> None:
        """Close now, without waiting for buffered writes (nothing worth sending is left)."""
        self.closed = True
        if self._transport is not None:
            self._transport.abort()

    # asyncio's side.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport; they implement it.
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and hasattr(select, "poll"):
            self._poll = select.poll()
            self._poll.register(sock.fileno(), select.POLLIN)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            # Bytes nobody asked for (after a response, or on an idle connection): the
            # stream's framing can no longer be trusted.
            self._fail(ConnectionError("the server sent bytes outside a response"))
            return
        self._received += len(data)
        if self._received > MAX_RESPONSE_BYTES:
            limit = MAX_RESPONSE_BYTES // (1024 * 1024)
            self._fail(ConnectionError(f"the response is larger than {limit} MiB"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)
        except httptools.HttpParserUpgrade:
            self._fail(ConnectionError("the server switched protocols"))

    def eof_received(self) -> bool:
        if self._waiter is not None and self._until_eof and self._headers_done:
            self._complete()  # a body delimited by the close (no length, not chunked)
        elif self._waiter is not None:
            what = "before answering" if self._received == 0 else "in the middle of a response"
            self._fail(ConnectionError(f"the server closed the connection {what}"))
        self.closed = True
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None:
            if exc is None and self._until_eof and self._headers_done:
                self._complete()
            else:
                self._fail(exc or ConnectionError("the connection closed before the response"))
        if self._timer is not None:
            self._timer.cancel()
        if self._poll is not None:
            self._poll = None
        if not self.lost.done():
            self.lost.set_result(None)
        self._on_lost(self)

    # httptools' side.

    def on_message_begin(self) -> None:
        if self._waiter is None:  # a second response in the bytes of the first
            self.reusable = False
            self.closed = True

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = self._fields.get(key)
        self._fields[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        self._status = status
        self._headers_done = True
        fields = self._fields
        # Without a length or chunked framing the body runs to the close (RFC 9112, 6.3);
        # llhttp then never reports the end, so eof_received does.
        self._until_eof = (
            status >= 200
            and status not in (204, 304)
            and "content-length" not in fields
            and "transfer-encoding" not in fields
        )

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:
            # An interim answer (103 Early Hints, an unasked 100 Continue): the real one follows.
            self._fields = {}
            self._headers_done = False
            return
        if self._waiter is not None:
            self._complete()

    # Internals.

    def _complete(self) -> None:
        waiter, self._waiter = self._waiter, None  # the timer stays armed for the next request
        self.reusable = not self.closed and not self._until_eof and self._parser.should_keep_alive()
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._body = []
        if waiter is not None and not waiter.done():
            waiter.set_result(RawResponse(self._status, ResponseHeaders(self._fields), body))

    def _fail(self, exc: BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.reusable = False
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _expire(self) -> None:
        self._timer = None
        if self._waiter is None:
            return  # idle: the deadline was a finished request's
        # Within a millisecond counts as reached: uvloop's clock moves in milliseconds, and a
        # timer that fires a little early must not be re-armed at once, again and again.
        if self.loop.time() + 0.001 >= self._deadline:
            self._fail(TimeoutError())
        else:
            self._timer = self.loop.call_at(self._deadline, self._expire)
