"""The status page over HTTP: the page and its assets from the package, one snapshot as JSON,
a live event stream, and a stop that never waits for an open browser."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from streamproc.errors import KafkaAdminError
from streamproc.kafka.admin import GroupDescription, GroupMember
from streamproc.observability.recent import RecentOutputs
from streamproc.observability.server import HealthProbe, ObservabilityServer, build_app
from streamproc.observability.status import Identity, StatusBoard
from streamproc.observability.statuspage import StatusPage
from tests.unit.processor.fakes import TP0, Harness, build, eventually, record

IDENTITY = Identity("streamproc", "fraud-scoring", "node-7", 4242, "2026-11-28T18:00:00.000Z")
PROBE = HealthProbe(ready=lambda: True, last_poll_monotonic=time.monotonic, stall_after_s=150.0)


@pytest.fixture
def recent() -> RecentOutputs:
    return RecentOutputs()


@pytest.fixture
async def harness(recent: RecentOutputs) -> AsyncIterator[Harness]:
    """A running processor wired to fakes, its outputs kept in ``recent``; stopped at teardown."""
    h = build(assignment=(TP0,), on_output=recent)
    await h.start()
    yield h
    await h.aclose()


@pytest.fixture
async def served(
    harness: Harness, recent: RecentOutputs
) -> AsyncIterator[tuple[Harness, str, ObservabilityServer]]:
    """The side door with the status page of ``harness``'s processor, on a free port."""
    board = StatusBoard(harness.processor, recent, IDENTITY)
    server = ObservabilityServer(
        build_app(harness.metrics, PROBE, StatusPage(board)), "127.0.0.1", 0
    )
    await server.start()
    yield harness, f"http://127.0.0.1:{server.port}", server
    await server.stop()


async def get(url: str) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, dict(response.headers), await response.read()


async def test_the_page_and_its_assets_come_from_the_package_only(
    served: tuple[Harness, str, ObservabilityServer],
) -> None:
    """``/`` is an HTML page whose script and style are served by the processor itself; none
    of the three files refers to another host, and the policy header forbids loading any."""
    _, base, _ = served
    status, headers, html = await get(base + "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    text = html.decode()
    assert '<script src="status.js"' in text
    assert '<link rel="stylesheet" href="status.css"' in text
    for path, kind in (("/status.js", "text/javascript"), ("/status.css", "text/css")):
        asset_status, asset_headers, body = await get(base + path)
        assert asset_status == 200
        assert asset_headers["Content-Type"].startswith(kind)
        text += body.decode()
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE)
    assert "innerHTML" not in text  # data is set as text, never parsed as markup


async def test_status_is_one_snapshot_as_json(
    served: tuple[Harness, str, ObservabilityServer],
) -> None:
    """``/status`` answers the page's data: identity, rates, budgets, mix, latency, recent."""
    h, base, _ = served
    h.source.feed(record(0), record(1, value=b""))
    await h.outputs(2)
    status, headers, body = await get(base + "/status")
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    snapshot = orjson.loads(body)
    assert snapshot["identity"]["client_id"] == "streamproc"
    assert snapshot["totals"]["decisions"] == 1
    assert snapshot["dead_letters"]["decode"] == 1
    assert [a["name"] for a in snapshot["allocations"]] == ["fraud"]
    assert [d["event_id"] for d in snapshot["recent"]["decisions"]] == ["p0-0"]
    assert [d["stage"] for d in snapshot["recent"]["dead_letters"]] == ["decode"]
    assert snapshot["partitions"]["owned"] == [
        {"topic": "transactions", "partition": 0, "lag": None}
    ]


async def test_the_event_stream_sends_a_fresh_snapshot_each_second(
    served: tuple[Harness, str, ObservabilityServer],
) -> None:
    """``/status/events`` is a server-sent event stream: one snapshot as soon as it opens, and
    the next ones carry what happened since."""
    h, base, _ = served
    async with (
        aiohttp.ClientSession() as session,
        session.get(base + "/status/events") as response,
    ):
        assert response.headers["Content-Type"] == "text/event-stream"
        first = await asyncio.wait_for(next_event(response), 5)
        h.source.feed(*(record(o, key=f"card-{o}") for o in range(5)))
        await h.outputs(5)
        second = await asyncio.wait_for(next_event(response), 5)
    assert second["totals"]["decisions"] == first["totals"]["decisions"] + 5


async def next_event(response: aiohttp.ClientResponse) -> dict[str, object]:
    line = b""
    while not line.startswith(b"data: "):
        line = await response.content.readline()
        assert line, "the stream ended"
    assert await response.content.readline() == b"\n"
    data: dict[str, object] = orjson.loads(line[len(b"data: ") :])
    return data


async def test_stopping_the_server_ends_open_streams_at_once(
    served: tuple[Harness, str, ObservabilityServer],
) -> None:
    """A browser left on the page does not hold up the processor's stop: the server closes
    every open event stream when it stops."""
    _, base, server = served
    async with (
        aiohttp.ClientSession() as session,
        session.get(base + "/status/events") as response,
    ):
        await asyncio.wait_for(next_event(response), 5)
        started = time.monotonic()
        await asyncio.wait_for(server.stop(), 5)
        assert time.monotonic() - started < 2.0
        await asyncio.wait_for(response.content.read(), 5)  # the stream has ended
        assert response.content.at_eof()


async def test_the_member_id_is_asked_of_the_coordinator_off_the_loop(
    harness: Harness,
) -> None:
    """The group coordinator is asked who this member is from a thread, not the event loop; a
    coordinator that does not answer leaves the member unknown and the page working."""
    threads: list[str] = []
    answers: list[GroupDescription | Exception] = [
        KafkaAdminError("no answer"),
        GroupDescription(
            "g", "stable", (GroupMember("streamproc-9", "streamproc", "/h", frozenset({TP0})),)
        ),
    ]

    def lookup() -> GroupDescription:
        threads.append(threading.current_thread().name)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    clock = [0.0]
    board = StatusBoard(harness.processor, RecentOutputs(), IDENTITY, monotonic=lambda: clock[0])
    server = ObservabilityServer(
        build_app(harness.metrics, PROBE, StatusPage(board, lookup)), "127.0.0.1", 0
    )
    await server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/status"
        await eventually(lambda: harness.processor.assignment == [TP0], "the assignment")
        await get(url)
        await eventually(lambda: len(threads) == 1, "the first lookup")
        await eventually(lambda: board.wants_member_lookup() is False, "its answer")
        clock[0] += 60
        assert orjson.loads((await get(url))[2])["identity"]["member_id"] is None
        await eventually(lambda: len(threads) == 2, "the second lookup")

        def member_shown() -> bool:
            clock[0] += 1  # a new snapshot each time
            return board.snapshot()["identity"]["member_id"] == "streamproc-9"

        await eventually(member_shown, "the member id")
    finally:
        await server.stop()
    assert threading.main_thread().name not in threads


async def test_the_page_can_be_turned_off(harness: Harness) -> None:
    """Without a status page the side door serves only its probes and metrics."""
    server = ObservabilityServer(build_app(harness.metrics, PROBE), "127.0.0.1", 0)
    await server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert (await get(base + "/"))[0] == 404
        assert (await get(base + "/status"))[0] == 404
        assert (await get(base + "/metrics"))[0] == 200
    finally:
        await server.stop()
