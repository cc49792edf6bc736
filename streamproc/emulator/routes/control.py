"""Emulator-control endpoints (no authentication: they steer a test double, not a service).

Stats and their reset, live behaviour per API Task, the repository's task contracts, a
health probe and the OpenAPI document.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from streamproc.emulator.behavior import TaskBehavior
from streamproc.emulator.httpio import json_response, read_json_object
from streamproc.emulator.openapi import openapi_document
from streamproc.emulator.problems import bad_request, not_found
from streamproc.emulator.settings import dotted
from streamproc.emulator.state import STATE, EmulatorState


async def health(_request: web.Request) -> web.Response:
    """GET /emulator/v1/health."""
    return json_response({"status": "ok"})


async def stats(request: web.Request) -> web.Response:
    """GET /emulator/v1/stats: counters per allocation."""
    return json_response(request.app[STATE].stats())


async def reset_stats(request: web.Request) -> web.Response:
    """POST /emulator/v1/stats/reset: zero the counters; answers the stats after reset."""
    state = request.app[STATE]
    state.reset_stats()
    return json_response(state.stats())


def _task_behavior(state: EmulatorState, request: web.Request) -> tuple[int, TaskBehavior]:
    raw = request.match_info["fileId"]
    file_id = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 12 else -1
    behavior = state.behavior(file_id)
    if behavior is None:
        raise not_found("FILE_NOT_FOUND", "no API Task with this file id", {"fileId": raw[:40]})
    return file_id, behavior


async def list_behaviors(request: web.Request) -> web.Response:
    """GET /emulator/v1/behavior: every task's behaviour, by file id."""
    state = request.app[STATE]
    return json_response(
        {str(fid): b.settings.model_dump() for fid, b in sorted(state.behaviors.items())}
    )


async def get_behavior(request: web.Request) -> web.Response:
    """GET /emulator/v1/behavior/{fileId}."""
    state = request.app[STATE]
    file_id, behavior = _task_behavior(state, request)
    return json_response({"fileId": str(file_id), **behavior.settings.model_dump()})


async def put_behavior(request: web.Request) -> web.Response:
    """PUT /emulator/v1/behavior/{fileId}: change some fields; answers the whole behaviour."""
    state = request.app[STATE]
    file_id, behavior = _task_behavior(state, request)
    patch = await read_json_object(request, state.body)
    try:
        updated = behavior.update(patch)
    except ValidationError as exc:
        problems = exc.errors(include_input=False, include_url=False)
        raise bad_request(
            "invalid behaviour",
            {dotted(p["loc"]) or "body": p["msg"] for p in problems},
        ) from None
    return json_response({"fileId": str(file_id), **updated.model_dump()})


async def repository(request: web.Request) -> web.Response:
    """GET /emulator/v1/repository: each API Task's declared inputs and outputs."""
    state = request.app[STATE]
    return json_response({"tasks": [t.describe() for t in state.repository.tasks()]})


async def openapi(_request: web.Request) -> web.Response:
    """GET /emulator/v1/openapi.json."""
    return json_response(openapi_document())
