"""Scripted HTTP/1.1 peers on 127.0.0.1 for the httptools transport, on both event loops.

Every test here runs twice, on asyncio's loop (what the rest of the suite uses) and on uvloop
(what the processor runs on): the transport talks to the loop's protocols directly, and the
two loops differ in their transports (types, sockets, when callbacks run).

``Peer`` answers each request with a script, ``(request, writer) -> keep the connection?``,
and counts what a test asserts on: connections accepted, open at once, closed by the client,
and every request with the number of the connection it came on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

import pytest
import uvloop

from streamproc.controlroom.transport_httptools import HttptoolsExecuteTransport

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, LoopFactory]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@dataclass(frozen=True)
class Request:
    line: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    connection: int  # 1 for the first connection the peer accepted


Script = Callable[[Request, asyncio.StreamWriter], Awaitable[bool]]


async def read_request(reader: asyncio.StreamReader, connection: int) -> Request | None:
    """The next request on a connection, or None once the client closed it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    line, *fields = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    headers = {}
    for field in fields:
        name, _, value = field.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Request(line, headers, body, connection)


def response(
    status: int = 200, body: bytes = b"{}", headers: Mapping[str, str] | None = None
) -> bytes:
    """A whole HTTP/1.1 response with a Content-Length."""
    fields = {"Content-Type": "application/json", **(headers or {})}
    fields["Content-Length"] = str(len(body))
    head = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return f"HTTP/1.1 {status} Status\r\n{head}\r\n".encode() + body


async def answer_ok(request: Request, writer: asyncio.StreamWriter) -> bool:
    """The default script: 200 with a small JSON body, keep the connection."""
    writer.write(response(body=b'{"ok":true}'))
    return True


class Peer:
    """A server that runs ``script`` for each request it reads; see the module docstring."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.accepted = 0
        self.open = 0
        self.peak = 0
        self.closed_by_client = 0
        self.requests: list[Request] = []
        self.request_arrived = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def url(self, path: str = "/execute", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def start(self, **options: object) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, **options)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        number = self.accepted
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            while True:
                request = await read_request(reader, number)
                if request is None:
                    self.closed_by_client += 1
                    break
                self.requests.append(request)
                self.request_arrived.set()
                if not await self.script(request, writer):
                    break
                await writer.drain()
        except ConnectionError:
            self.closed_by_client += 1
        finally:
            self.open -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._tasks.discard(task)


PeerFactory = Callable[..., Awaitable[Peer]]


@pytest.fixture
async def peer() -> AsyncIterator[PeerFactory]:
    """``await peer(script=answer_ok, **start_server options)``: stopped at teardown."""
    started: list[Peer] = []

    async def make(script: Script = answer_ok, **options: object) -> Peer:
        server = Peer(script)
        await server.start(**options)
        started.append(server)
        return server

    yield make
    for server in started:
        await server.stop()


@pytest.fixture
async def transport() -> AsyncIterator[HttptoolsExecuteTransport]:
    """A transport with 4 connections, closed at teardown."""
    made = HttptoolsExecuteTransport(max_connections=4)
    yield made
    await made.aclose()
