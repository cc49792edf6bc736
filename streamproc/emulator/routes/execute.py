"""The real-time execute endpoint: the hot path, kept free of validation frameworks.

Order of work: the execution token (401), the body and its botInput (400, counted as
``invalid``), then admission against the allocation's concurrency limit. Over the limit the
request fails at once (429 by default) and is never queued. An admitted request counts as in
flight until its response is written, through simulated latency and injected failures; if
the client disconnects, aiohttp cancels the handler and ``finally`` releases the slot.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from streamproc.emulator.allocations import Allocation
from streamproc.emulator.behavior import Fate
from streamproc.emulator.httpio import is_empty, parse_json, read_body
from streamproc.emulator.identity import header_token
from streamproc.emulator.problems import JSON_CONTENT_TYPE, ApiError, error_response, unauthorized
from streamproc.emulator.state import STATE, EmulatorState
from streamproc.errors import BotValueError

# A correlation header is recorded as sent, up to this many characters.
_MAX_ID_CHARS = 128


def _over_limit(state: EmulatorState, allocation: Allocation) -> ApiError:
    return ApiError(
        state.settings.over_limit_status,
        "CONCURRENCY_LIMIT_EXCEEDED",
        "the API Task's real-time concurrency limit is reached; real-time requests are not queued",
        {
            "fileId": str(allocation.file.file_id),
            "concurrencyLimit": allocation.concurrency_limit,
        },
    )


async def _hold(state: EmulatorState, seconds: float) -> web.Response:
    """An injected hang: wait for the client to give up, the timeout, or the server to stop."""
    try:
        async with asyncio.timeout(seconds):
            await state.stopping.wait()
    except TimeoutError:
        return error_response(
            504,
            "TIMEOUT",
            f"the API Task did not finish within {seconds:g} s (injected hang)",
            {"injected": "hang_rate"},
        )
    return error_response(503, "SERVICE_UNAVAILABLE", "the emulator is stopping", "")


async def _until(state: EmulatorState, due: float) -> None:
    """Sleep until ``due`` on the loop's clock, correcting for how late its timers fire."""
    loop = asyncio.get_running_loop()
    delay = due - loop.time() - state.timer_lateness
    if delay <= 0:
        return
    await asyncio.sleep(delay)
    late = loop.time() - due + state.timer_lateness  # how late this timer itself fired
    state.timer_lateness += 0.05 * (min(max(late, 0.0), 0.005) - state.timer_lateness)


async def execute(request: web.Request) -> web.StreamResponse:
    """POST /hotbot/{botId}/execute: run the API Task with the body's botInput."""
    state = request.app[STATE]
    arrived = asyncio.get_running_loop().time()
    bot_id = request.match_info["botId"]
    token = header_token(request.headers)
    if token is None:
        raise unauthorized("AUTHENTICATION_REQUIRED", "send the execution token as X-Authorization")
    claims = state.identity.verify_execution(token, bot_id)
    allocation = state.allocations.get(claims.bot_id or 0)
    if allocation is None:
        raise ApiError(
            404, "ALLOCATION_NOT_FOUND", "the API Task is no longer allocated", {"fileId": bot_id}
        )
    allocation.last_request_id = request.headers.get("X-Request-Id", "")[:_MAX_ID_CHARS] or None
    allocation.last_attempt = request.headers.get("X-Attempt", "")[:_MAX_ID_CHARS] or None
    allocation.last_traceparent = request.headers.get("traceparent", "")[:_MAX_ID_CHARS] or None
    raw = await read_body(request, state.body)
    body: Any = parse_json(raw, required=False)
    if not is_empty(raw) and not isinstance(body, dict):
        allocation.invalid += 1
        raise ApiError(400, "INVALID_REQUEST", "request body must be a JSON object {botInput}")
    try:
        inputs = allocation.task.bind(body.get("botInput") if body else None)
    except BotValueError as exc:
        allocation.invalid += 1
        raise ApiError(400, "INVALID_BOT_INPUT", str(exc), {"variable": exc.path}) from None
    if not allocation.try_acquire():
        raise _over_limit(state, allocation)
    try:
        behavior = state.behaviors[allocation.file.file_id]
        latency, fate = behavior.draw()
        output = allocation.task.run(inputs) if fate is Fate.SUCCEED else None
        if latency > 0:
            # The latency counts from the request's arrival: checking the token, reading the
            # body and running the task are part of it, not added to it.
            await _until(state, arrived + latency)
        if fate is Fate.SUCCEED:
            allocation.executed += 1
            response = web.Response(
                body=orjson.dumps({"hotBotResult": {"botOutput": output}}),
                content_type=JSON_CONTENT_TYPE,
            )
        elif fate is Fate.FAIL:
            allocation.failed += 1
            response = error_response(
                behavior.error_status,
                "INJECTED_FAILURE",
                "the API Task failed (injected failure)",
                {"injected": "error_rate"},
            )
        else:
            allocation.failed += 1
            response = await _hold(state, behavior.hang_max_seconds)
        await response.prepare(request)
        await response.write_eof()
        return response
    finally:
        allocation.release()
