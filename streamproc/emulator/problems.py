"""The emulator's error responses: one exception type, one JSON body shape.

Every error the emulator answers is ``{"code": <UPPER_SNAKE>, "message": <text>,
"details": <string or object>}``, the triple the Control Room's own error bodies carry.
Handlers raise :class:`ApiError`; the error middleware renders it. Messages and details
never quote a password, API key or token: callers pass descriptions, not the values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

JSON_CONTENT_TYPE = "application/json"

# The code used when an aiohttp HTTPException (router, body size limit) becomes a JSON body.
STATUS_CODES: Mapping[int, str] = {
    400: "BAD_REQUEST",
    401: "AUTHENTICATION_REQUIRED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "CONCURRENCY_LIMIT_EXCEEDED",
    431: "HEADERS_TOO_LARGE",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
    504: "TIMEOUT",
}


class ApiError(Exception):
    """An HTTP error answer: status, stable code, human message, details."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: str | Mapping[str, Any] = "",
        *,
        headers: Mapping[str, str] | None = None,
        close: bool = False,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = dict(headers or {})
        # Close the connection once answered, without reading what is left of the request.
        self.close = close
        super().__init__(f"{status} {code}: {message}")

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}

    def response(self) -> web.Response:
        return error_response(self.status, self.code, self.message, self.details, self.headers)


def error_response(
    status: int,
    code: str,
    message: str,
    details: str | Mapping[str, Any] = "",
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A JSON error response of the one shape."""
    body = orjson.dumps({"code": code, "message": message, "details": details})
    return web.Response(status=status, body=body, content_type=JSON_CONTENT_TYPE, headers=headers)


def bad_request(message: str, details: str | Mapping[str, Any] = "") -> ApiError:
    return ApiError(400, "INVALID_REQUEST", message, details)


def unauthorized(code: str, message: str, details: str = "") -> ApiError:
    return ApiError(401, code, message, details)


def forbidden(message: str) -> ApiError:
    return ApiError(403, "FORBIDDEN", message, "")


def not_found(code: str, message: str, details: str | Mapping[str, Any] = "") -> ApiError:
    return ApiError(404, code, message, details)
