"""The route table: every endpoint the emulator serves, on one port.

The OpenAPI document, the application and the tests all read this one table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from streamproc.emulator.routes import auth, control, execute, hotbot

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    name: str


ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/authentication", auth.login, "login_v1"),
    Route("POST", "/v2/authentication", auth.login, "login_v2"),
    Route("POST", "/v1/authentication/token", auth.refresh, "refresh_v1"),
    Route("POST", "/v2/authentication/token", auth.refresh, "refresh_v2"),
    Route("GET", "/v1/authentication/token", auth.validate, "validate"),
    Route("POST", "/v1/authentication/logout", auth.logout, "logout"),
    Route("PUT", "/orchestrator/v1/hotbot/config/create", hotbot.create_allocation, "create"),
    Route("POST", "/orchestrator/v1/hotbot/config", hotbot.list_allocations, "list"),
    Route("POST", "/orchestrator/v1/hotbot/config/accessdetails", hotbot.access_details, "access"),
    Route("POST", "/hotbot/{botId}/execute", execute.execute, "execute"),
    Route("GET", "/emulator/v1/health", control.health, "health"),
    Route("GET", "/emulator/v1/stats", control.stats, "stats"),
    Route("POST", "/emulator/v1/stats/reset", control.reset_stats, "reset_stats"),
    Route("GET", "/emulator/v1/behavior", control.list_behaviors, "behaviors"),
    Route("GET", "/emulator/v1/behavior/{fileId}", control.get_behavior, "get_behavior"),
    Route("PUT", "/emulator/v1/behavior/{fileId}", control.put_behavior, "put_behavior"),
    Route("GET", "/emulator/v1/repository", control.repository, "repository"),
    Route("GET", "/emulator/v1/openapi.json", control.openapi, "openapi"),
)
