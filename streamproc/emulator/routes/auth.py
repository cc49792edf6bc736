"""Authentication endpoints: login (v1 and v2), token refresh, validate, logout."""

from __future__ import annotations

from aiohttp import web

from streamproc.emulator.httpio import json_response, read_json_object
from streamproc.emulator.problems import bad_request
from streamproc.emulator.state import STATE


async def login(request: web.Request) -> web.Response:
    """POST /v1|v2/authentication: username with password or apiKey -> token and user."""
    state = request.app[STATE]
    body = await read_json_object(request, state.body)
    return json_response(state.identity.login(body))


async def refresh(request: web.Request) -> web.Response:
    """POST /v1|v2/authentication/token: a fresh token for a live one."""
    state = request.app[STATE]
    principal = state.identity.authenticate(request.headers)
    body = await read_json_object(request, state.body, required=False)
    return json_response({"token": state.identity.refresh(principal, body)})


async def validate(request: web.Request) -> web.Response:
    """GET /v1/authentication/token?token=: whether the token would be accepted now."""
    state = request.app[STATE]
    token = request.query.get("token")
    if not token:
        raise bad_request("the token query parameter is required", {"field": "token"})
    return json_response({"valid": state.identity.is_valid(token)})


async def logout(request: web.Request) -> web.Response:
    """POST /v1/authentication/logout: end the session; 204."""
    state = request.app[STATE]
    body = await read_json_object(request, state.body, required=False)
    state.identity.logout(request.headers, body)
    return web.Response(status=204)
