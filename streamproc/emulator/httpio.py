"""Reading JSON request bodies and writing JSON responses, with the emulator's limits.

A body is accepted as JSON when it carries no Content-Type (curl-style clients) or a JSON
media type; any other type is 415. The size limit is checked against Content-Length before
reading and again while reading (chunked bodies), so an oversized body is always 413. A body
that does not arrive within the time limit is 408, and the connection is closed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from streamproc.emulator.problems import JSON_CONTENT_TYPE, ApiError


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """How large a request body may be, and how long reading it may take."""

    max_bytes: int
    timeout_s: float


def _is_json_media_type(value: str) -> bool:
    media = value.split(";", 1)[0].strip().lower()
    return media in ("application/json", "text/json") or media.endswith("+json")


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "PAYLOAD_TOO_LARGE",
        f"request body exceeds the limit of {limit} bytes",
        {"limitBytes": limit},
    )


async def read_body(request: web.Request, limits: BodyLimits) -> bytes:
    """The raw body: 413 above the size limit, 408 past the time limit, 415 for a non-JSON
    type."""
    length = request.content_length
    if length is not None and length > limits.max_bytes:
        raise too_large(limits.max_bytes)
    if request.content.is_eof():
        # The whole body came with the head (the usual case): no timer to arm.
        raw = await request.read()
    else:
        raw = await _read_within(request, limits.timeout_s)
    if raw:
        content_type = request.headers.get("Content-Type")
        if content_type is not None and not _is_json_media_type(content_type):
            raise ApiError(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                "request body must be JSON (Content-Type: application/json)",
                {"contentType": content_type[:100]},
            )
    return raw


async def _read_within(request: web.Request, timeout_s: float) -> bytes:
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError:
        raise ApiError(
            408,
            "REQUEST_TIMEOUT",
            f"the request body did not arrive within {timeout_s:g} s",
            {"timeoutSeconds": timeout_s},
            close=True,
        ) from None


def is_empty(raw: bytes) -> bool:
    """Whether a body carries nothing. Blanks are something: not JSON, so a 400, as the
    OpenAPI document says of an optional body that is given."""
    return not raw


def parse_json(raw: bytes, *, required: bool) -> Any:
    """Decode ``raw``; an empty body is ``None`` unless ``required``."""
    if is_empty(raw):
        if required:
            raise ApiError(
                400, "MALFORMED_JSON", "request body is empty; a JSON object is required"
            )
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson's message names the position, never the document, so it is safe to echo.
        raise ApiError(400, "MALFORMED_JSON", "request body is not valid JSON", str(exc)) from None


async def read_json_object(
    request: web.Request, limits: BodyLimits, *, required: bool = True
) -> dict[str, Any]:
    """The body as a JSON object (``{}`` when optional and empty; ``null`` is not empty)."""
    raw = await read_body(request, limits)
    value = parse_json(raw, required=required)
    if value is None and is_empty(raw):
        return {}
    if not isinstance(value, dict):
        raise ApiError(
            400,
            "INVALID_REQUEST",
            "request body must be a JSON object",
            {"got": "null" if value is None else type(value).__name__},
        )
    return value


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type=JSON_CONTENT_TYPE)
