from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from streamproc.controlroom.client import ControlRoomClient
from streamproc.controlroom.credentials import Credentials, PasswordCredentials

ADMIN = ("cr-admin", "cr-admin-password")
DEVELOPER = ("bot-developer", "bot-developer-password")
MY_API_TASK = "Automation Anywhere\\Bots\\My-API-Task"
ZIP_CODE_TASK = "Automation Anywhere\\Bots\\Zip Code API Task"

MakeClient = Callable[..., ControlRoomClient]


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``predicate`` until true; fail after ``timeout_s`` (a bound, not a pause)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.05)


@pytest.fixture
async def cr_client() -> AsyncIterator[MakeClient]:
    """``cr_client(url, credentials=None, **kw)``: clients closed at teardown (default: admin)."""
    made: list[ControlRoomClient] = []

    def make(url: str, credentials: Credentials | None = None, **kw: Any) -> ControlRoomClient:
        client = ControlRoomClient(url, credentials or PasswordCredentials(*ADMIN), **kw)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


def developer() -> PasswordCredentials:
    return PasswordCredentials(*DEVELOPER)
