"""The processor's HTTP side door: ``/metrics`` (Prometheus), ``/healthz``, ``/readyz``, and
the live status page at ``/`` (:mod:`.statuspage`).

``/healthz`` answers 503 when the intake loop has not polled Kafka for half of
``max.poll.interval.ms``: past that the group will evict this member, so an orchestrator should
restart it first. ``/readyz`` answers 200 once the processor has joined its group and can score.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from streamproc.observability.metrics import ProcessorMetrics
from streamproc.observability.statuspage import StatusPage, add_status_routes


@dataclass(frozen=True, slots=True)
class HealthProbe:
    """How the server asks the processor about itself."""

    ready: Callable[[], bool]
    last_poll_monotonic: Callable[[], float]
    stall_after_s: float


def _json(status: int, body: dict[str, object]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def build_app(
    metrics: ProcessorMetrics,
    probe: HealthProbe,
    status: StatusPage | None = None,
) -> web.Application:
    async def metrics_handler(_request: web.Request) -> web.Response:
        return web.Response(
            body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def healthz(_request: web.Request) -> web.Response:
        idle_s = time.monotonic() - probe.last_poll_monotonic()
        if idle_s > probe.stall_after_s:
            return _json(503, {"status": "stalled", "seconds_since_poll": round(idle_s, 1)})
        return _json(200, {"status": "ok", "seconds_since_poll": round(idle_s, 1)})

    async def readyz(_request: web.Request) -> web.Response:
        if probe.ready():
            return _json(200, {"status": "ready"})
        return _json(503, {"status": "starting"})

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if status is not None:
        add_status_routes(app, status)
    return app


class ObservabilityServer:
    """Runs the side-door app on the processor's event loop."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self._runner = web.AppRunner(app, access_log=None)
        self._host = host
        self._port = port
        self.port: int | None = None

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server  # the only way to learn an ephemeral port
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._port

    async def stop(self) -> None:
        await self._runner.cleanup()
