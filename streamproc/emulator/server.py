"""Running the emulator: on the current event loop, or in a background thread with its own.

``EmulatorServer`` serves one settings object on one port (port 0 picks a free one).
``run_in_thread`` is the entry point for tests, benchmarks and the demo: it starts a server in
a daemon thread with its own event loop (uvloop when installed) and yields an
:class:`EmulatorHandle` with the base URL and blocking helpers for the control endpoints.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self

import orjson
from aiohttp import web

from streamproc.emulator.app import AccessLogger, build_app
from streamproc.emulator.connections import AppRunner, ConnectionLimits
from streamproc.emulator.settings import EmulatorSettings
from streamproc.emulator.state import EmulatorState, build_state
from streamproc.errors import ConfigError

_WILDCARD_HOSTS = ("", "0.0.0.0", "::")  # noqa: S104 - names, not a bind
_BACKLOG = 1024


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's event loop when it is installed, else asyncio's."""
    try:
        import uvloop  # noqa: PLC0415 - optional: not installed on Windows
    except ImportError:
        return asyncio.new_event_loop
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def server_tls(settings: EmulatorSettings) -> ssl.SSLContext | None:
    """The HTTPS context of ``tls_cert_file`` and ``tls_key_file``; None serves plain HTTP."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            "tls_cert_file", f"cannot load the certificate and key: {exc.strerror or exc}"
        ) from exc
    return context


class EmulatorServer:
    """One emulator listening on ``settings.host``/``settings.port``."""

    def __init__(self, settings: EmulatorSettings, *, clock: Callable[[], float] = time.time):
        self.settings = settings
        self._clock = clock
        self._runner: AppRunner | None = None
        self._state: EmulatorState | None = None
        self.port = settings.port

    @property
    def state(self) -> EmulatorState:
        if self._state is None:
            raise RuntimeError("the emulator has not started")
        return self._state

    @property
    def url(self) -> str:
        """The base URL to reach it locally (a wildcard bind is reached on 127.0.0.1)."""
        host = self.settings.host
        host = "127.0.0.1" if host in _WILDCARD_HOSTS else host
        host = f"[{host}]" if ":" in host else host
        scheme = "http" if self.settings.tls_cert_file is None else "https"
        return f"{scheme}://{host}:{self.port}"

    async def start(self) -> None:
        """Build the state and listen; ConfigError or OSError (port taken) when it cannot."""
        ssl_context = server_tls(self.settings)
        self._state = build_state(self.settings, clock=self._clock)
        access_log = (
            logging.getLogger("streamproc.emulator.access") if self.settings.access_log else None
        )
        settings = self.settings
        limits = ConnectionLimits(
            max_connections=settings.max_connections,
            header_timeout_s=settings.header_timeout_seconds,
            body_timeout_s=settings.body_timeout_seconds,
            keepalive_timeout_s=settings.keepalive_timeout_seconds,
        )
        runner = AppRunner(
            build_app(self._state),
            limits=limits,
            handler_cancellation=True,
            access_log_class=AccessLogger,
            access_log=access_log,
            shutdown_timeout=self.settings.shutdown_grace_seconds,
        )
        await runner.setup()
        try:
            site = web.TCPSite(
                runner,
                self.settings.host,
                self.settings.port,
                backlog=_BACKLOG,
                ssl_context=ssl_context,
            )
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop listening, end held requests, close connections."""
        if self._state is not None:
            self._state.stopping.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            server = runner.server
            held = [h.transport for h in server.connections] if server is not None else []
            await runner.cleanup()
            if self.settings.tls_cert_file is not None:
                # A TLS connection closes with a close_notify exchange that can outlast
                # cleanup (and the event loop): end the ones still closing now.
                for transport in held:
                    if transport is not None:
                        transport.abort()
                await asyncio.sleep(0)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class EmulatorHandle:
    """A running emulator seen from another thread: its URL and its control endpoints."""

    def __init__(self, server: EmulatorServer) -> None:
        self.server = server
        self.settings = server.settings
        self.url = server.url
        self.port = server.port

    def __repr__(self) -> str:
        return f"EmulatorHandle(url={self.url!r})"

    def _tls(self) -> ssl.SSLContext | None:
        # The control calls trust exactly the certificate this emulator serves.
        cert = self.settings.tls_cert_file
        if cert is None:
            return None
        context = ssl.create_default_context(cafile=str(cert))
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        return context

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else orjson.dumps(body)
        request = urllib.request.Request(  # noqa: S310 - always this emulator's own URL
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(  # noqa: S310
                request, timeout=10, context=self._tls()
            ) as response:
                return orjson.loads(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                detail = exc.read().decode("utf-8", "replace")
            raise RuntimeError(f"{method} {path} answered {exc.code}: {detail}") from None

    def stats(self) -> dict[str, Any]:
        """``GET /emulator/v1/stats``: ``{"allocations": [{fileId, inFlight, ...}]}``."""
        result: dict[str, Any] = self._call("GET", "/emulator/v1/stats")
        return result

    def allocation_stats(self, file_id: int | str) -> dict[str, Any]:
        """The stats entry of one allocation; KeyError when it is not allocated."""
        for entry in self.stats()["allocations"]:
            if entry["fileId"] == str(file_id):
                found: dict[str, Any] = entry
                return found
        raise KeyError(f"file {file_id} is not allocated")

    def reset_stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/emulator/v1/stats/reset")
        return result

    def behavior(self, file_id: int | str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/emulator/v1/behavior/{file_id}")
        return result

    def set_behavior(self, file_id: int | str, **fields: Any) -> dict[str, Any]:
        """Change a task's behaviour live, e.g. ``set_behavior(201, latency_ms=20)``."""
        result: dict[str, Any] = self._call("PUT", f"/emulator/v1/behavior/{file_id}", fields)
        return result


@contextmanager
def run_in_thread(
    settings: EmulatorSettings, *, start_timeout: float = 30.0
) -> Iterator[EmulatorHandle]:
    """Serve ``settings`` from a daemon thread with its own event loop until the block ends."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        server = EmulatorServer(settings)
        stop = asyncio.Event()
        try:
            await server.start()
        except BaseException as exc:
            box["error"] = exc
            ready.set()
            return
        box.update(server=server, loop=asyncio.get_running_loop(), stop=stop)
        ready.set()
        try:
            await stop.wait()
        finally:
            await server.stop()

    def target() -> None:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(main())

    thread = threading.Thread(target=target, name="streamproc-emulator", daemon=True)
    thread.start()
    if not ready.wait(start_timeout):
        raise TimeoutError(f"the emulator did not start within {start_timeout} s")
    if "error" in box:
        thread.join()
        raise box["error"]
    try:
        yield EmulatorHandle(box["server"])
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(timeout=settings.shutdown_grace_seconds + 10)
