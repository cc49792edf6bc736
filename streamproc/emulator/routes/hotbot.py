"""Allocation endpoints of the orchestrator: create and list (admin), accessdetails."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from streamproc.emulator.httpio import json_response, read_json_object
from streamproc.emulator.identity import Principal
from streamproc.emulator.listing import parse_query, run_query
from streamproc.emulator.problems import bad_request, forbidden
from streamproc.emulator.repository import FileKind
from streamproc.emulator.state import STATE, EmulatorState

MAX_PATHS_PER_REQUEST = 100


def _admin(state: EmulatorState, request: web.Request) -> Principal:
    principal = state.identity.authenticate(request.headers)
    if not principal.user.is_admin:
        raise forbidden("this operation needs the AAE_Admin role")
    return principal


async def create_allocation(request: web.Request) -> web.Response:
    """PUT /orchestrator/v1/hotbot/config/create: allocate an API Task (admin)."""
    state = request.app[STATE]
    _admin(state, request)
    body = await read_json_object(request, state.body)
    return json_response(state.allocations.create(body))


async def list_allocations(request: web.Request) -> web.Response:
    """POST /orchestrator/v1/hotbot/config: the allocations, filtered, sorted, paged (admin)."""
    state = request.app[STATE]
    _admin(state, request)
    body = await read_json_object(request, state.body, required=False)
    query = parse_query(body)
    return json_response(run_query([a.list_entry() for a in state.allocations], query))


def base_url(state: EmulatorState, request: web.Request) -> str:
    """Where clients reach this emulator: the configured public URL, else the request's host."""
    if state.settings.public_url:
        return state.settings.public_url
    return f"{request.scheme}://{request.host}"


async def access_details(request: web.Request) -> web.Response:
    """POST /orchestrator/v1/hotbot/config/accessdetails: execute URL and token per path."""
    state = request.app[STATE]
    principal = state.identity.authenticate(request.headers)
    if not principal.user.may_request_access:
        raise forbidden("accessdetails needs the AAE_Admin or AAE_Bot Developer role")
    body = await read_json_object(request, state.body)
    paths = body.get("botRepositoryPath")
    if (
        not isinstance(paths, list)
        or not paths
        or not all(isinstance(p, str) for p in paths)
        or len(paths) > MAX_PATHS_PER_REQUEST
    ):
        raise bad_request(
            f"botRepositoryPath must be a list of 1 to {MAX_PATHS_PER_REQUEST} repository paths",
            {"field": "botRepositoryPath"},
        )
    base = base_url(state, request)
    details: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for path in dict.fromkeys(paths):
        file = state.repository.by_path(path)
        if file is None:
            errors[path] = "no file at this repository path"
        elif file.kind is not FileKind.API_TASK:
            errors[path] = "the file is not an API Task"
        elif state.allocations.get(file.file_id) is None:
            errors[path] = "the API Task is not allocated; an admin must create an allocation"
        else:
            token = state.identity.execution_token(principal, file.file_id)
            details[path] = {
                "url": f"{base}/hotbot/{file.file_id}/execute",
                "headers": {"X-Authorization": token},
            }
    return json_response({"accessDetails": details, "errors": errors})
