"""HTTP outcomes -> the streamproc error tree, for every Control Room and API Task call.

``error_for_status`` is the single place a non-2xx status becomes an exception; the transport
modules map their library's exceptions (``httptools_error``, ``pyreqwest_error``,
``map_httpx_errors``, ``map_aiohttp_errors``) and nothing else does either. Every error
carries the status, the decoded error body (``{"code", "message", "details"}`` when the server
sent JSON) and the request context: the method and the URL without its query string. Request
headers and bodies never reach an error, because those are where the credentials are.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from streamproc.errors import (
    AuthError,
    BadRequestError,
    ConflictError,
    ControlRoomError,
    NotFoundError,
    OverConcurrencyLimitError,
    PermissionDeniedError,
    ServerError,
)
from streamproc.logs import redact

_MAX_TEXT = 300
_QUERY = re.compile(r"\?[^\s'\"<>]*")
_REASONS = {
    401: "authentication required",
    403: "permission denied",
    404: "not found",
    409: "conflict",
    429: "over the real-time concurrency limit",
}


def public_url(url: str) -> str:
    """The URL as it may appear in errors and logs: no query string, no fragment, no userinfo."""
    url = url.split("#", 1)[0].split("?", 1)[0]
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"


def scrub(text: str) -> str:
    """A library's exception text made safe to show: query strings and JWTs removed."""
    cleaned: str = redact(_QUERY.sub("?…", text))
    return cleaned[:_MAX_TEXT]


def mask_secrets(body: bytes, secrets: Iterable[str]) -> bytes:
    """``body`` with every known secret (plain or JSON-escaped) replaced by ``***``.

    Some servers echo the request in an error; the secrets this client sent are the ones it
    knows, so they are cut out before the body can reach an exception or a log line.
    """
    for secret in secrets:
        if len(secret) < 4:
            continue
        body = body.replace(secret.encode(), b"***")
        escaped = orjson.dumps(secret)[1:-1]
        body = body.replace(escaped, b"***")
    return body


def decode_error_body(body: bytes, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """The error JSON object, or ``{"text": <start of the body>}`` when it is not JSON."""
    if not body:
        return {}
    body = mask_secrets(body, secrets)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {"text": scrub(body.decode("utf-8", "replace").strip())}
    if isinstance(data, dict):
        cleaned: dict[str, Any] = redact(data)
        return cleaned
    return {"text": scrub(str(data))}


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A Retry-After header (delta-seconds or HTTP date) as seconds from now; None if absent."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds):
        return None
    return max(seconds, 0.0)


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A response header by case-insensitive name, whatever Mapping the transport gave."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def error_for_status(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    method: str,
    url: str,
    what: str,
    secrets: Iterable[str] = (),
) -> ControlRoomError:
    """The exception for a non-2xx response to ``what`` (e.g. "execute", "list allocations").

    ``secrets`` are the credentials and tokens the request carried, masked from the body.
    """
    decoded = decode_error_body(body, secrets)
    message = f"{what} failed: {_describe(status, decoded)}"
    context: dict[str, Any] = {
        "status": status,
        "body": decoded,
        "method": method,
        "url": public_url(url),
    }
    if status == 401:
        return AuthError(message, **context)
    if status == 403:
        return PermissionDeniedError(message, **context)
    if status == 404:
        return NotFoundError(message, **context)
    if status == 409:
        return ConflictError(message, **context)
    if status == 429:
        retry_after = retry_after_seconds(header(headers, "Retry-After"))
        return OverConcurrencyLimitError(message, retry_after=retry_after, **context)
    if status >= 500:
        retry_after = retry_after_seconds(header(headers, "Retry-After"))
        return ServerError(message, retry_after=retry_after, **context)
    if 400 <= status < 500:
        return BadRequestError(message, **context)
    # 1xx/3xx: redirects are not followed, because a redirect would resend the credentials.
    return BadRequestError(f"{what} failed: unexpected HTTP status {status}", **context)


def _describe(status: int, body: Mapping[str, Any]) -> str:
    text = body.get("message") or body.get("text")
    reason = str(text) if text else _REASONS.get(status, "server error" if status >= 500 else "")
    code = body.get("code")
    if code:
        reason = f"{reason} ({code})" if reason else str(code)
    return reason or f"HTTP {status}"
