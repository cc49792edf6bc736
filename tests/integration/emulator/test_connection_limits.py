"""Hostile connections: idle, slow and too many of them do not starve the emulator.

The emulator runs as its own process (as ``streamproc emulator`` does in Docker), and this
test process holds a thousand connections against it while it keeps probing the health
endpoint on fresh connections.
"""

from __future__ import annotations

import asyncio
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from streamproc.emulator import EmulatorHandle
from tests.fixtures.emulator import EmulatorFactory
from tests.integration.emulator.test_process import free_port, wait_for_health

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[3]
TIMEOUT = 2.0  # each of the three timeouts, in seconds, for the emulator under test
# Slack for a loaded 2-core machine: a connection must be closed by its timeout plus this.
SLACK = 3.0
HEALTH = b"GET /emulator/v1/health HTTP/1.1\r\nHost: emulator\r\nConnection: close\r\n\r\n"


def raise_file_limit(needed: int) -> None:
    """Let this process hold ``needed`` sockets (as root the hard limit can be raised too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        hard = needed
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


@contextmanager
def emulator_process(*flags: str, file_limit: int | None = None) -> Iterator[str]:
    """``streamproc emulator`` on a free port, optionally under an open-file limit."""

    def limit_files() -> None:
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (file_limit, file_limit))

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "streamproc.emulator", "--port", str(port), *flags]
    with subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=limit_files,  # noqa: PLW1509 - the limit must apply before the emulator starts
    ) as proc:
        try:
            wait_for_health(url, proc)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class Held:
    """One held connection: when its last phase began, when the server closed it, and what
    the server sent before closing (an error answer, or nothing)."""

    kind: str
    started: float = 0.0
    closed: float | None = None
    answer: bytes = b""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    writer: asyncio.StreamWriter | None = None

    @property
    def lasted(self) -> float:
        assert self.closed is not None
        return self.closed - self.started

    @property
    def status(self) -> int | None:
        return int(self.answer.split(b" ", 2)[1]) if self.answer.startswith(b"HTTP/") else None


async def hold(port: int, kind: str) -> Held:
    """Open a connection and misbehave on it as ``kind`` says, until the server closes it."""
    held = Held(kind)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    held.started = time.monotonic()
    held.writer = writer

    async def watch() -> None:
        # Chunk by chunk: a reset (the server closed while a header line was on its way)
        # must not lose the answer read before it.
        with suppress(ConnectionError):
            while chunk := await reader.read(65536):
                held.answer += chunk
        held.closed = time.monotonic()
        writer.close()

    async def trickle_headers() -> None:
        # A request head that never ends: one header line every 0.4 s.
        writer.write(b"GET /emulator/v1/health HTTP/1.1\r\nHost: emulator\r\n")
        line = 0
        while held.closed is None:
            await asyncio.sleep(0.4)
            line += 1
            try:
                writer.write(b"X-Slow-%d: 1\r\n" % line)
                await writer.drain()
            except ConnectionError:
                return

    if kind == "idle after a request":
        writer.write(HEALTH.replace(b"Connection: close", b"Connection: keep-alive"))
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        held.started = time.monotonic()
    elif kind == "slow headers":
        held.tasks.append(asyncio.create_task(trickle_headers()))
    elif kind == "slow body":
        # Most of nothing of a 2 MB body, then silence.
        writer.write(
            b"POST /v1/authentication HTTP/1.1\r\nHost: emulator\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2000000\r\n\r\n{" + b" " * 65536
        )
        held.started = time.monotonic()
    held.tasks.append(asyncio.create_task(watch()))
    return held


async def probe_health(port: int) -> tuple[int, float]:
    """Status and seconds of one health request on a fresh connection."""
    began = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(HEALTH)
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    return int(answer.split(b" ", 2)[1]), time.monotonic() - began


async def probe_while(done: Callable[[], bool], port: int) -> list[tuple[int, float]]:
    """Health probes every 0.1 s until ``done()``."""
    probes = []
    while not done():
        probes.append(await probe_health(port))
        await asyncio.sleep(0.1)
    return probes


async def hold_many(port: int, kinds: dict[str, int]) -> list[Held]:
    """Open the connections in batches (a burst of a thousand SYNs overflows the backlog)."""
    plan = [kind for kind, count in kinds.items() for _ in range(count)]
    held: list[Held] = []
    for first in range(0, len(plan), 100):
        held += await asyncio.gather(*(hold(port, kind) for kind in plan[first : first + 100]))
    return held


async def release(held: list[Held]) -> None:
    """Stop misbehaving and close this side of every held connection."""
    for h in held:
        for task in h.tasks:
            task.cancel()
        if h.writer is not None:
            h.writer.close()
    for h in held:
        if h.writer is not None:
            with suppress(ConnectionError):
                await h.writer.wait_closed()


async def until(predicate: Callable[[], bool], within: float) -> None:
    """Poll ``predicate`` every 50 ms for at most ``within`` seconds (callers assert after)."""
    deadline = time.monotonic() + within
    while not predicate() and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded poll
        await asyncio.sleep(0.05)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_health_answers_within_1_s_while_1000_idle_and_slow_connections_are_held() -> None:
    """With 1,000 idle and slow connections held, health answers in under 1 s, and each
    held connection is closed by its own timeout (408 for slow requests)."""
    raise_file_limit(4096)
    kinds = {"idle": 300, "idle after a request": 100, "slow headers": 300, "slow body": 300}
    flags = [
        "--max-connections", "1100", "--log-level", "WARNING", "--no-access-log",
        "--header-timeout-seconds", str(TIMEOUT), "--body-timeout-seconds", str(TIMEOUT),
        "--keepalive-timeout-seconds", str(TIMEOUT),
    ]  # fmt: skip

    async def scenario(port: int) -> tuple[list[Held], list[tuple[int, float]]]:
        held: list[Held] = []
        opening = asyncio.create_task(hold_many(port, kinds))
        probes = asyncio.create_task(
            probe_while(lambda: opening.done() and all(h.closed for h in held), port)
        )
        held += await opening
        await until(lambda: all(h.closed for h in held), TIMEOUT + SLACK + 5)
        await release(held)
        return held, await probes

    with emulator_process(*flags) as url:
        held, probes = asyncio.run(scenario(port_of(url)))

    assert len(held) == 1000
    assert [h for h in held if h.closed is None] == [], "connections left open"
    slowest = max(seconds for _, seconds in probes)
    assert {status for status, _ in probes} == {200}
    assert slowest < 1.0, f"slowest health answer {slowest:.3f} s"
    assert len(probes) >= 10
    for kind in kinds:
        group = [h for h in held if h.kind == kind]
        lasted = sorted(h.lasted for h in group)
        # Closed by the timeout: not long before it (nothing else closed them), nor long after.
        assert lasted[0] >= TIMEOUT * 0.75, (kind, lasted[0])
        assert lasted[-1] <= TIMEOUT + SLACK, (kind, lasted[-1])
    for h in held:
        expected = 408 if h.kind in ("slow headers", "slow body") else None
        assert h.status == expected, (h.kind, h.answer[:200])
        if expected:
            body = orjson.loads(h.answer.partition(b"\r\n\r\n")[2])
            assert body["code"] == "REQUEST_TIMEOUT"


def test_over_the_cap_idle_connections_give_way_and_health_still_answers() -> None:
    """Under a 256 open-file limit, 400 idle connections cannot starve the health endpoint:
    the cap fits the limit, and new connections close the oldest idle ones."""
    raise_file_limit(4096)
    flags = ["--log-level", "WARNING", "--no-access-log",
             "--header-timeout-seconds", "60", "--keepalive-timeout-seconds", "60"]  # fmt: skip

    async def scenario(port: int) -> tuple[list[Held], list[tuple[int, float]]]:
        held: list[Held] = []
        opening = asyncio.create_task(hold_many(port, {"idle": 400}))
        probes = asyncio.create_task(probe_while(opening.done, port))
        held += await opening
        # The earliest ones were evicted as the later ones came in; the rest stay open.
        await until(lambda: sum(h.closed is None for h in held) <= 192, 10)
        probes_after = [await probe_health(port) for _ in range(5)]
        await release(held)
        return held, await probes + probes_after

    with emulator_process(*flags, file_limit=256) as url:
        held, probes = asyncio.run(scenario(port_of(url)))

    still_open = sum(h.closed is None for h in held)
    assert still_open <= 192, still_open
    assert {status for status, _ in probes} == {200}
    slowest = max(seconds for _, seconds in probes)
    assert slowest < 1.0, f"slowest health answer {slowest:.3f} s"
    evicted = [h for h in held if h.closed is not None]
    assert evicted
    assert all(h.answer == b"" for h in evicted)


async def test_when_every_held_connection_is_busy_a_new_one_gets_a_json_503(
    emulator_factory: EmulatorFactory,
) -> None:
    """At the cap with every connection inside a request, a new connection is answered 503
    in the one error shape and closed; once they finish, connections are admitted again."""
    emulator: EmulatorHandle = emulator_factory(max_connections=3, body_timeout_seconds=2)
    port = emulator.port
    busy = [await hold(port, "slow body") for _ in range(3)]
    status, answer = await raw_answer(port)
    assert status == 503
    assert orjson.loads(answer)["code"] == "SERVICE_UNAVAILABLE"
    await until(lambda: all(h.closed for h in busy), 10)
    await release(busy)
    assert [h.status for h in busy] == [408, 408, 408]
    assert (await probe_health(port))[0] == 200


async def raw_answer(port: int) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(HEALTH)
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body
