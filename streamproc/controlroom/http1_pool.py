"""Keep-alive HTTP/1.1 connections, at most ``max_connections`` of them, shared by origin.

A slot is one connection, open or being opened, idle or carrying a request; there are never
more than ``max_connections`` slots, whatever the origins. A request takes the most recently
used idle connection of its origin (LIFO keeps a few connections warm instead of cycling
through all of them), else opens one in a free slot, else closes an idle connection of another
origin to make room, else waits. A freed slot or a released connection goes straight to the
longest waiter (a connection of its origin as it is; otherwise the slot, to open one), so a
request that arrives later does not overtake one that waits.

The wait and the connect run against the request's own deadline: the seam's "pool wait
included". A request whose task is cancelled, or whose deadline passes, while it waits gives
back whatever was handed to it at that moment.

No request is ever resent by the pool. RFC 9112 (9.3.1) forbids a client to retry a
non-idempotent request on its own unless it knows the request was never applied, and an
execute is a POST: once its bytes are written, a close without an answer may mean the server
gave up an idle connection without reading them (the keep-alive race) or that it read them,
ran the bot and died before answering, and the client cannot tell which. hyper resends only
requests it had not started to write; aiohttp and Go's net/http resend only idempotent ones
(Go also a request that carries an Idempotency-Key).
The pool instead keeps the race rare: it never picks a connection the server has closed
(``closed``), one with anything waiting on its socket (``readable``: typically the FIN of a
close that crossed this request), or one idle longer than ``IDLE_REUSE_S``. What remains is a
close that is still on the wire while the request is written; it surfaces as
``EndpointConnectionError`` and the processor's retry policy decides, with the attempt counted
and sent as ``X-Attempt``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque

from streamproc.controlroom.http1 import Http1Connection, Origin

# Servers close idle keep-alive connections after a few seconds: uvicorn after 5 s, the
# emulator (aiohttp) after 10 s, many load balancers after 60 s. A connection idle about that
# long may be closed by the server just as a request is written into it (the race above), so
# one idle longer than this, a second under uvicorn's default, is dropped instead of reused.
IDLE_REUSE_S = 4.0

_Waiter = tuple[Origin, "asyncio.Future[Http1Connection | None]"]
_CLOSED = "the execute transport is closed"  # a RuntimeError, as for every execute transport


class ConnectionPool:
    """Connections by origin, ``max_connections`` slots in all; see the module docstring."""

    def __init__(self, max_connections: int) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.max_connections = max_connections
        self._slots = 0
        self._idle: dict[Origin, list[Http1Connection]] = {}
        self._waiters: deque[_Waiter] = deque()
        self._connections: set[Http1Connection] = set()
        self._closed = False

    @property
    def in_use(self) -> int:
        """Slots taken: connections open, being opened, or promised to a waiter."""
        return self._slots

    async def acquire(
        self, origin: Origin, deadline: float, tls: ssl.SSLContext | None = None
    ) -> Http1Connection:
        """A connection to ``origin`` that is open and idle, now the caller's; by ``deadline``
        (loop time) or ``TimeoutError``. ``tls`` is the context for an ``https`` origin."""
        while True:
            if self._closed:
                raise RuntimeError(_CLOSED)
            conn = self._take_idle(origin)
            if conn is not None:
                return conn
            if self._slots >= self.max_connections:
                self._evict_idle()
            if self._slots < self.max_connections:
                self._slots += 1
                handed: Http1Connection | None = None
            else:
                handed = await self._wait(origin, deadline)
            if handed is None:  # a slot of our own: open a connection in it
                return await self._connect(origin, deadline, tls)
            if not handed.closed:
                return handed
            self.discard(handed)  # it closed between the hand-over and now: try again

    def release(self, conn: Http1Connection) -> None:
        """Take back a connection whose response was read in full."""
        if conn.discarded:
            return
        if conn.closed or not conn.reusable or self._closed:
            self.discard(conn)
            return
        waiter = self._next_waiter()
        if waiter is not None:
            origin, future = waiter
            if origin == conn.origin:
                future.set_result(conn)
            else:
                self._drop(conn)
                future.set_result(None)  # the slot goes with it
            return
        conn.idle_since = now = conn.loop.time()
        stack = self._idle.setdefault(conn.origin, [])
        stack.append(conn)
        # LIFO leaves the oldest at the bottom; retire one per release once it is too old
        # rather than holding it until the server closes it.
        if len(stack) > 1 and now - stack[0].idle_since > IDLE_REUSE_S:
            self.discard(stack[0])

    def discard(self, conn: Http1Connection) -> None:
        """Close ``conn`` (if still open) and free its slot; safe to call more than once."""
        if conn.discarded:
            return
        self._drop(conn)
        self._free_slot()

    async def aclose(self) -> None:
        """Close every connection and refuse every waiter; waits until the sockets are closed."""
        self._closed = True
        while self._waiters:
            _, future = self._waiters.popleft()
            if not future.done():
                future.set_exception(RuntimeError(_CLOSED))
        connections = list(self._connections)
        for conn in connections:
            self.discard(conn)
        pending = [conn.lost for conn in connections if not conn.lost.done()]
        if pending:
            # connection_lost follows close() within a loop iteration or two; the bound only
            # keeps a loop that is being torn down from holding aclose forever.
            await asyncio.wait(pending, timeout=5.0)

    # Internals.

    def _take_idle(self, origin: Origin) -> Http1Connection | None:
        stack = self._idle.get(origin)
        if not stack:
            return None
        now = stack[-1].loop.time()
        while stack:
            conn = stack.pop()
            if conn.closed or now - conn.idle_since > IDLE_REUSE_S or conn.readable():
                self.discard(conn)
                continue
            return conn
        return None

    def _evict_idle(self) -> None:
        """At the limit, close the oldest idle connection (of another origin: ours had none)."""
        for stack in self._idle.values():
            if stack:
                self.discard(stack[0])
                return

    async def _wait(self, origin: Origin, deadline: float) -> Http1Connection | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Http1Connection | None] = loop.create_future()
        waiter = (origin, future)
        self._waiters.append(waiter)
        timer = loop.call_at(deadline, _expire, future)
        try:
            return await future
        except BaseException:
            if future.done() and not future.cancelled() and future.exception() is None:
                # Handed a connection or a slot in the same iteration it gave up: pass it on.
                handed = future.result()
                if handed is None:
                    self._free_slot()
                else:
                    self.release(handed)
            else:
                with contextlib.suppress(ValueError):  # already taken off by _next_waiter
                    self._waiters.remove(waiter)
            raise
        finally:
            timer.cancel()

    async def _connect(
        self, origin: Origin, deadline: float, tls: ssl.SSLContext | None
    ) -> Http1Connection:
        """Open a connection in a slot already counted; the slot is freed if that fails."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await loop.create_connection(
                    lambda: Http1Connection(origin, loop, self._lost),
                    origin.host,
                    origin.port,
                    ssl=tls if origin.tls else None,
                    server_hostname=origin.host if origin.tls else None,
                )
        except BaseException:
            self._free_slot()
            raise
        if conn.closed or self._closed:  # lost while connecting, or the pool closed meanwhile
            self.discard(conn)
            if self._closed:
                raise RuntimeError(_CLOSED)
            raise ConnectionError("the connection closed as soon as it opened")
        self._connections.add(conn)
        return conn

    def _lost(self, conn: Http1Connection) -> None:
        # Called by the connection once its socket is gone. A connection lost while connecting
        # is not in the pool yet: _connect sees ``closed`` and frees its slot itself.
        if conn in self._connections:
            self.discard(conn)

    def _drop(self, conn: Http1Connection) -> None:
        """Close ``conn`` and forget it, keeping its slot for the caller to pass on or free."""
        conn.discarded = True
        conn.close()
        self._connections.discard(conn)
        stack = self._idle.get(conn.origin)
        if stack and conn in stack:
            stack.remove(conn)

    def _free_slot(self) -> None:
        waiter = self._next_waiter()
        if waiter is None:
            self._slots -= 1
        else:
            waiter[1].set_result(None)

    def _next_waiter(self) -> _Waiter | None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter[1].done():  # skip those that timed out or were cancelled
                return waiter
        return None


def _expire(future: asyncio.Future[Http1Connection | None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())
