"""Raw-HTTP helpers for the emulator's integration tests (aiohttp client, no project client)."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import orjson

ADMIN = {"username": "cr-admin", "password": "cr-admin-password"}
DEVELOPER = {"username": "bot-developer", "password": "bot-developer-password"}
FRAUD_PATH = "Automation Anywhere\\Bots\\Fraud Score API Task"
ZIP_PATH = "Automation Anywhere\\Bots\\Zip Code API Task"


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Any = None,
    *,
    headers: Mapping[str, str] | None = None,
    data: bytes | None = None,
) -> tuple[int, Any]:
    """Status and decoded JSON body (None when empty)."""
    raw = data if data is not None else (None if body is None else orjson.dumps(body))
    send = dict(headers or {})
    if raw is not None:
        send.setdefault("Content-Type", "application/json")
    # aiohttp warns about large raw bytes bodies; a stream of known size is sent the same way.
    payload = io.BytesIO(raw) if raw is not None and len(raw) > 1024 * 1024 else raw
    async with session.request(method, url, data=payload, headers=send) as response:
        raw = await response.read()
        return response.status, (orjson.loads(raw) if raw else None)


async def login(
    session: aiohttp.ClientSession, base: str, user: Mapping[str, Any] = ADMIN, version: str = "v1"
) -> str:
    status, body = await call(session, "POST", f"{base}/{version}/authentication", dict(user))
    assert status == 200, body
    token: str = body["token"]
    return token


async def allocate(
    session: aiohttp.ClientSession, base: str, token: str, file_id: int, limit: int = 1
) -> None:
    status, body = await call(
        session,
        "PUT",
        f"{base}/orchestrator/v1/hotbot/config/create",
        {"fileId": file_id, "concurrencyLimit": limit},
        headers={"X-Authorization": token},
    )
    assert status == 200, body


async def access(
    session: aiohttp.ClientSession, base: str, token: str, path: str = FRAUD_PATH
) -> tuple[str, str]:
    """The execute URL and execution token for ``path``."""
    status, body = await call(
        session,
        "POST",
        f"{base}/orchestrator/v1/hotbot/config/accessdetails",
        {"botRepositoryPath": [path]},
        headers={"X-Authorization": token},
    )
    assert status == 200, body
    detail = body["accessDetails"][path]
    return detail["url"], detail["headers"]["X-Authorization"]


def fraud_input(amount: str = "20", **strings: str) -> dict[str, Any]:
    bot_input: dict[str, Any] = {"iNumAmount": {"type": "NUMBER", "number": amount}}
    for name, value in strings.items():
        bot_input[name] = {"type": "STRING", "string": value}
    return {"botInput": bot_input}


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = orjson.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return decoded


def assert_error(status: int, body: Any, expected_status: int, code: str | None = None) -> None:
    """An error answer of the one shape: {code, message, details}."""
    assert status == expected_status, (status, body)
    assert isinstance(body, dict)
    assert set(body) == {"code", "message", "details"}, body
    assert isinstance(body["message"], str)
    assert isinstance(body["details"], str | dict)
    if code is not None:
        assert body["code"] == code, body


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], within: float = 5.0, interval: float = 0.01
) -> None:
    """Poll ``predicate`` until true; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(interval)
