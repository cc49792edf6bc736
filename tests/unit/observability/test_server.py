"""The side door: /metrics, /healthz (intake stall) and /readyz (started and assigned)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import test_utils, web

from streamproc.observability.metrics import ProcessorMetrics
from streamproc.observability.server import HealthProbe, ObservabilityServer, build_app
from tests.unit.processor.fakes import TP0, build, record

MakeClient = Callable[[web.Application], test_utils.TestClient[web.Request, web.Application]]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """aiohttp test clients on an ephemeral loopback port; closed at teardown."""
    clients: list[test_utils.TestClient[web.Request, web.Application]] = []

    def make(app: web.Application) -> test_utils.TestClient[web.Request, web.Application]:
        client = test_utils.TestClient(test_utils.TestServer(app))
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def probe(*, ready: bool = True, idle_s: float = 0.0, stall_after_s: float = 150.0) -> HealthProbe:
    polled = time.monotonic() - idle_s
    return HealthProbe(
        ready=lambda: ready, last_poll_monotonic=lambda: polled, stall_after_s=stall_after_s
    )


async def test_metrics_serves_the_processor_registry(make_client: MakeClient) -> None:
    """/metrics is the Prometheus exposition of the processor's own registry."""
    metrics = ProcessorMetrics()
    metrics.consumed.inc(3)
    metrics.fallbacks.labels("deadline").inc()
    client = make_client(build_app(metrics, probe()))
    await client.start_server()
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    assert "streamproc_events_consumed_total 3.0" in text
    assert 'streamproc_fallbacks_total{reason="deadline"} 1.0' in text
    assert "python_gc" not in text  # the global default registry is not exposed


async def test_healthz_turns_503_when_intake_stalls(make_client: MakeClient) -> None:
    """/healthz is 200 while the intake loop polls, 503 once it has not for stall_after_s."""
    healthy = make_client(build_app(ProcessorMetrics(), probe(idle_s=1.0, stall_after_s=10.0)))
    stalled = make_client(build_app(ProcessorMetrics(), probe(idle_s=11.0, stall_after_s=10.0)))
    await healthy.start_server()
    await stalled.start_server()
    ok = await healthy.get("/healthz")
    assert ok.status == 200
    assert (await ok.json())["status"] == "ok"
    bad = await stalled.get("/healthz")
    assert bad.status == 503
    body = await bad.json()
    assert body["status"] == "stalled"
    assert body["seconds_since_poll"] >= 11.0


async def test_readyz_is_503_until_the_processor_has_joined_its_group_and_200_after(
    make_client: MakeClient,
) -> None:
    """/readyz follows the processor: starting (503) until run() has started *and* the group
    has assigned it partitions; records produced before that would wait for the join."""
    h = build(assignment=())
    processor = h.processor
    app = build_app(
        h.metrics,
        HealthProbe(
            ready=processor.ready,
            last_poll_monotonic=lambda: processor.last_poll_monotonic,
            stall_after_s=150.0,
        ),
    )
    client = make_client(app)
    await client.start_server()
    before = await client.get("/readyz")
    assert (before.status, (await before.json())["status"]) == (503, "starting")
    await h.start()
    try:
        assert processor.started.is_set()
        starting = await client.get("/readyz")
        assert (starting.status, (await starting.json())["status"]) == (503, "starting")
        await h.source.assign([TP0])
        h.source.feed(record(0))
        await h.outputs(1)
        after = await client.get("/readyz")
        assert (after.status, (await after.json())["status"]) == (200, "ready")
        assert (await client.get("/healthz")).status == 200
    finally:
        await h.aclose()


async def test_the_server_listens_on_an_ephemeral_port_and_stops() -> None:
    """Port 0 binds a free port, which the server reports; stop() closes it."""
    server = ObservabilityServer(build_app(ProcessorMetrics(), probe()), "127.0.0.1", 0)
    await server.start()
    try:
        assert server.port
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{server.port}/readyz") as response,
        ):
            assert response.status == 200
    finally:
        await server.stop()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"http://127.0.0.1:{server.port}/readyz")
