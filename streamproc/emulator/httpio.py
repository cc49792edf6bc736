"""Reading JSON request bodies and writing JSON responses, with the emulator's limits.

A body is accepted as JSON when it carries no Content-Type (curl-style clients) or a JSON
media type; any other type is 415. The size limit is checked against Content-Length before
reading and again while reading (chunked bodies), so an oversized body is always 413.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from streamproc.emulator.problems import JSON_CONTENT_TYPE, ApiError


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


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The raw body, refused with 413 above ``max_bytes`` and 415 for a non-JSON type."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise too_large(max_bytes)
    raw = await request.read()
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


def parse_json(raw: bytes, *, required: bool) -> Any:
    """Decode ``raw``; an empty body is ``None`` unless ``required``."""
    if not raw or raw.isspace():
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
    request: web.Request, max_bytes: int, *, required: bool = True
) -> dict[str, Any]:
    """The body as a JSON object (``{}`` when optional and empty)."""
    value = parse_json(await read_body(request, max_bytes), required=required)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(
            400,
            "INVALID_REQUEST",
            "request body must be a JSON object",
            {"got": type(value).__name__},
        )
    return value


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type=JSON_CONTENT_TYPE)
