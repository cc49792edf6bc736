"""The httptools transport's connections: reuse, the limit, the deadline, and giving up."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable

import pytest

from streamproc.controlroom import http1_pool
from streamproc.controlroom.transport_httptools import HttptoolsExecuteTransport
from streamproc.errors import EndpointConnectionError, EndpointTimeoutError
from tests.integration.controlroom.conftest import wait_until
from tests.integration.controlroom.http1.conftest import PeerFactory, Request, response

pytestmark = pytest.mark.integration


async def test_keep_alive_connection_is_reused(
    peer: PeerFactory, transport: HttptoolsExecuteTransport
) -> None:
    """Posts one after another share one connection."""
    server = await peer()
    for _ in range(5):
        assert (await transport.post(server.url(), {}, b"{}", 5.0)).status == 200
    assert server.accepted == 1
    assert [r.connection for r in server.requests] == [1] * 5


@pytest.mark.parametrize(
    "answer",
    [
        response(headers={"Connection": "close"}),
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}",
    ],
    ids=["connection-close", "http-1.0"],
)
async def test_answer_that_ends_keep_alive_is_not_reused(
    peer: PeerFactory, transport: HttptoolsExecuteTransport, answer: bytes
) -> None:
    """After "Connection: close" or an HTTP/1.0 answer, the next post opens a new connection."""

    async def once(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer)
        return True  # the peer would go on; the client must not

    server = await peer(once)
    await transport.post(server.url(), {}, b"{}", 5.0)
    await transport.post(server.url(), {}, b"{}", 5.0)
    assert [r.connection for r in server.requests] == [1, 2]


async def test_idle_connection_closed_by_the_peer_is_not_reused(
    peer: PeerFactory, transport: HttptoolsExecuteTransport
) -> None:
    """A keep-alive connection the server closed while idle frees its slot and is never used."""

    async def answer_then_close(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(response())
        return False  # as a server whose keep-alive timeout ran out

    server = await peer(answer_then_close)
    await transport.post(server.url(), {}, b"{}", 5.0)
    await wait_until(lambda: transport.in_use == 0)
    await transport.post(server.url(), {}, b"{}", 5.0)
    assert [r.connection for r in server.requests] == [1, 2]


async def test_close_the_loop_has_not_read_yet_is_seen_before_writing(
    transport: HttptoolsExecuteTransport,
) -> None:
    """A FIN still in the socket when the next post picks the connection: it opens another.

    The peer runs on a thread, and the test blocks the loop while the peer closes, so the
    loop cannot learn of the close from its own callbacks; only a look at the socket can.
    Written into, the old connection would fail the post with "closed before answering".
    """
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    close_first = threading.Event()
    requests: list[int] = []

    def serve() -> None:
        for number in (1, 2):
            conn, _ = listener.accept()
            with conn:
                data = b""
                while not data.endswith(b"{}"):  # the head and the 2-byte body
                    data += conn.recv(65536)
                requests.append(number)
                conn.sendall(response())
                if number == 1:
                    close_first.wait(10)  # then closes: a request written now would fail

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{port}/execute"
        await transport.post(url, {}, b"{}", 5.0)
        close_first.set()
        _block_until(lambda: _fin_pending(transport))  # the loop runs no callback meanwhile
        answer = await transport.post(url, {}, b"{}", 5.0)
        assert answer.status == 200
    finally:
        close_first.set()
        await asyncio.to_thread(thread.join, 10)
        listener.close()
    assert requests == [1, 2]


def _block_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``predicate`` without yielding to the event loop; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s} s")
        time.sleep(0.01)


def _fin_pending(transport: HttptoolsExecuteTransport) -> bool:
    """Whether every idle connection has the peer's close waiting, unread, on its socket."""
    conns = [c for stack in transport._pool._idle.values() for c in stack]
    return bool(conns) and all(c.readable() for c in conns)


async def test_request_unanswered_on_a_reused_connection_is_not_resent(
    peer: PeerFactory, transport: HttptoolsExecuteTransport
) -> None:
    """The keep-alive race: the server reads a POST and closes without answering. The POST
    fails as EndpointConnectionError and is not resent (the server may have run it)."""

    async def drop_second(request: Request, writer: asyncio.StreamWriter) -> bool:
        if len(server.requests) == 2:
            return False  # closes without a byte of answer
        writer.write(response())
        return True

    server = await peer(drop_second)
    await transport.post(server.url(), {}, b"{}", 5.0)
    with pytest.raises(EndpointConnectionError, match="before answering"):
        await transport.post(server.url(), {}, b"{}", 5.0)
    assert [r.connection for r in server.requests] == [1, 1]
    await transport.post(server.url(), {}, b"{}", 5.0)
    assert [r.connection for r in server.requests] == [1, 1, 2]


async def test_idle_connection_past_the_reuse_age_is_not_reused(
    peer: PeerFactory, transport: HttptoolsExecuteTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection idle longer than IDLE_REUSE_S is closed instead of reused."""
    server = await peer()
    await transport.post(server.url(), {}, b"{}", 5.0)
    monkeypatch.setattr(http1_pool, "IDLE_REUSE_S", -1.0)  # every idle connection is too old
    await transport.post(server.url(), {}, b"{}", 5.0)
    assert [r.connection for r in server.requests] == [1, 2]
    await wait_until(lambda: server.closed_by_client == 1)


async def test_timeout_closes_the_connection_and_frees_its_slot(
    peer: PeerFactory, transport: HttptoolsExecuteTransport
) -> None:
    """No answer in time: EndpointTimeoutError, the connection closed, its slot free again."""

    async def silent_at_first(request: Request, writer: asyncio.StreamWriter) -> bool:
        if request.connection > 1:
            writer.write(response())
        return True

    server = await peer(silent_at_first)
    with pytest.raises(EndpointTimeoutError):
        await transport.post(server.url(), {}, b"{}", 0.2)
    assert transport.in_use == 0
    await wait_until(lambda: server.closed_by_client == 1)
    answer = await transport.post(server.url(), {}, b"{}", 5.0)
    assert answer.status == 200
    assert [r.connection for r in server.requests] == [1, 2]


async def test_deadline_of_an_earlier_request_does_not_end_a_later_one(
    peer: PeerFactory, transport: HttptoolsExecuteTransport
) -> None:
    """A reused connection's timer, armed for a short first request, spares a longer second."""
    loop = asyncio.get_running_loop()
    release = asyncio.Event()

    async def second_waits(request: Request, writer: asyncio.StreamWriter) -> bool:
        if len(server.requests) == 2:
            await release.wait()
        writer.write(response())
        return True

    server = await peer(second_waits)
    first_deadline = loop.time() + 0.3
    await transport.post(server.url(), {}, b"{}", 0.3)
    second = asyncio.create_task(transport.post(server.url(), {}, b"{}", 10.0))
    await wait_until(lambda: loop.time() > first_deadline + 0.2)
    release.set()
    assert (await second).status == 200
    assert [r.connection for r in server.requests] == [1, 1]


async def test_shorter_deadline_on_a_reused_connection_is_kept(
    peer: PeerFactory, transport: HttptoolsExecuteTransport
) -> None:
    """After a request with a long timeout, a short one on the same connection still ends on
    time: the timer is moved earlier, not left at the long deadline."""

    async def answer_first_only(request: Request, writer: asyncio.StreamWriter) -> bool:
        if len(server.requests) == 1:
            writer.write(response())
        return True

    server = await peer(answer_first_only)
    await transport.post(server.url(), {}, b"{}", 30.0)
    started = time.monotonic()
    with pytest.raises(EndpointTimeoutError):
        await transport.post(server.url(), {}, b"{}", 0.2)
    assert time.monotonic() - started < 5.0
    assert [r.connection for r in server.requests] == [1, 1]


async def test_cancelled_post_closes_the_connection_and_frees_its_slot(
    peer: PeerFactory, transport: HttptoolsExecuteTransport
) -> None:
    """Cancelling the awaiting task mid-exchange closes the connection and frees the slot."""

    async def hang(request: Request, writer: asyncio.StreamWriter) -> bool:
        return True  # never answers, reads on

    server = await peer(hang)
    task = asyncio.create_task(transport.post(server.url(), {}, b"{}", 30.0))
    await asyncio.wait_for(server.request_arrived.wait(), 5.0)
    assert transport.in_use == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert transport.in_use == 0
    await wait_until(lambda: server.closed_by_client == 1)


async def test_cancelled_wait_for_a_connection_leaks_nothing(
    peer: PeerFactory,
) -> None:
    """A post cancelled while it waits for the pool takes no slot and blocks no one."""
    release = asyncio.Event()

    async def gated(request: Request, writer: asyncio.StreamWriter) -> bool:
        await release.wait()
        writer.write(response())
        return True

    server = await peer(gated)
    transport = HttptoolsExecuteTransport(max_connections=1)
    try:
        first = asyncio.create_task(transport.post(server.url(), {}, b"{}", 30.0))
        await asyncio.wait_for(server.request_arrived.wait(), 5.0)
        waiting = asyncio.create_task(transport.post(server.url(), {}, b"{}", 30.0))
        third = asyncio.create_task(transport.post(server.url(), {}, b"{}", 30.0))
        await wait_until(lambda: len(transport._pool._waiters) == 2)
        waiting.cancel()
        release.set()
        assert (await first).status == 200
        assert (await third).status == 200
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert transport.in_use == 1  # the one idle connection
        assert server.accepted == 1
    finally:
        await transport.aclose()


async def test_never_more_connections_than_max_connections(peer: PeerFactory) -> None:
    """Twelve posts at once over a pool of 3: at most 3 connections, all posts answered."""
    in_flight = 0
    all_busy = asyncio.Event()

    async def slow(request: Request, writer: asyncio.StreamWriter) -> bool:
        nonlocal in_flight
        in_flight += 1
        if in_flight == 3:
            all_busy.set()
        await all_busy.wait()  # hold every connection until all three are in use
        in_flight -= 1
        writer.write(response())
        return True

    server = await peer(slow)
    transport = HttptoolsExecuteTransport(max_connections=3)
    try:
        answers = await asyncio.gather(
            *(transport.post(server.url(), {}, b"{}", 10.0) for _ in range(12))
        )
    finally:
        await transport.aclose()
    assert [a.status for a in answers] == [200] * 12
    assert server.accepted == 3
    assert server.peak == 3


async def test_pool_wait_counts_against_the_timeout(peer: PeerFactory) -> None:
    """A post that waits for the only connection times out on its own deadline, unsent."""
    release = asyncio.Event()

    async def gated(request: Request, writer: asyncio.StreamWriter) -> bool:
        await release.wait()
        writer.write(response())
        return True

    server = await peer(gated)
    transport = HttptoolsExecuteTransport(max_connections=1)
    try:
        first = asyncio.create_task(transport.post(server.url(), {}, b"{}", 30.0))
        await asyncio.wait_for(server.request_arrived.wait(), 5.0)
        with pytest.raises(EndpointTimeoutError):
            await transport.post(server.url(), {}, b"{}", 0.2)
        assert len(server.requests) == 1
        release.set()
        assert (await first).status == 200
        assert (await transport.post(server.url(), {}, b"{}", 5.0)).status == 200
        assert server.accepted == 1
    finally:
        await transport.aclose()


async def test_no_time_left_is_a_timeout_at_once(transport: HttptoolsExecuteTransport) -> None:
    """timeout_s <= 0 raises EndpointTimeoutError without connecting anywhere."""
    for timeout_s in (0.0, -1.0):
        with pytest.raises(EndpointTimeoutError):
            await transport.post("http://127.0.0.1:9/execute", {}, b"{}", timeout_s)
    assert transport.in_use == 0


async def test_aclose_closes_every_connection_and_refuses_posts(peer: PeerFactory) -> None:
    """aclose closes idle connections (the server sees them go) and later posts raise."""
    server = await peer()
    transport = HttptoolsExecuteTransport(max_connections=4)
    await asyncio.gather(*(transport.post(server.url(), {}, b"{}", 5.0) for _ in range(3)))
    opened = server.accepted
    await transport.aclose()
    assert transport.in_use == 0
    await wait_until(lambda: server.closed_by_client == opened)
    with pytest.raises(RuntimeError, match="closed"):
        await transport.post(server.url(), {}, b"{}", 5.0)
