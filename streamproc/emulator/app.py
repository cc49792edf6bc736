"""The aiohttp application: routes, the JSON error middleware, access logging.

Every error leaves as ``{"code", "message", "details"}``: :class:`ApiError` from handlers,
aiohttp's own HTTP errors (unknown route 404, wrong method 405, body too large 413), an
unexpected exception (500, logged with its traceback; never expected), and even requests
that are not valid HTTP, which aiohttp answers before any middleware runs (see
:class:`~streamproc.emulator.connections.EmulatorConnection`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest

from streamproc.emulator.httpio import too_large
from streamproc.emulator.problems import STATUS_CODES, ApiError, error_response
from streamproc.emulator.routes import ROUTES
from streamproc.emulator.state import STATE, EmulatorState
from streamproc.logs import get_logger


def _http_error(exc: web.HTTPException, state: EmulatorState) -> web.Response:
    if exc.status == 413:
        return too_large(state.settings.max_body_bytes).response()
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    message = {
        404: "no such endpoint",
        405: "this endpoint does not accept the method",
    }.get(exc.status, exc.reason)
    return error_response(
        exc.status, STATUS_CODES.get(exc.status, "HTTP_ERROR"), message, "", headers
    )


def error_middleware(state: EmulatorState) -> Any:
    log = get_logger("emulator")

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
        except ApiError as exc:
            answer = exc.response()
            if exc.close:
                answer.force_close()
                await answer.prepare(request)
                await answer.write_eof()
                request.protocol.force_close()
            return answer
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _http_error(exc, state)
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception:
            # A bug: log the traceback (no headers or body, which may hold secrets).
            log.exception("emulator_internal_error", method=request.method, path=request.path)
            return error_response(500, "INTERNAL_ERROR", "the emulator failed unexpectedly", "")
        return response

    return middleware


class AccessLogger(AbstractAccessLogger):
    """One structlog line per request: method, path (never the query), status, duration."""

    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        super().__init__(logger, log_format)
        self._log = get_logger("emulator.access")

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        self._log.info(
            "http_request",
            method=request.method,
            path=request.path,
            status=response.status,
            duration_ms=round(time * 1000, 3),
            remote=request.remote,
        )


def build_app(state: EmulatorState) -> web.Application:
    """The application serving every route of :data:`~streamproc.emulator.routes.ROUTES`."""
    app = web.Application(
        client_max_size=state.settings.max_body_bytes, middlewares=[error_middleware(state)]
    )
    app[STATE] = state
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler, name=route.name)

    async def on_shutdown(_app: web.Application) -> None:
        state.stopping.set()

    app.on_shutdown.append(on_shutdown)
    return app
