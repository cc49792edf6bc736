"""The emulator logs no secrets in the first place (checked with redaction switched off)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import aiohttp
import orjson
import pytest
import structlog

from tests.fixtures.emulator import EmulatorFactory
from tests.integration.emulator.helpers import access, call, fraud_input, wait_until

pytestmark = pytest.mark.integration

PASSWORD = "cr-admin-password"
API_KEY = "EMULATOR-FAKE-API-KEY-FOR-CR-ADMIN-00000"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """structlog writing plain JSON lines to a buffer, without the redaction processor."""
    buffer = io.StringIO()
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(buffer),
        cache_logger_on_first_use=False,
    )
    try:
        yield buffer
    finally:
        structlog.reset_defaults()


async def test_access_log_holds_no_credentials(
    captured: io.StringIO,
    emulator_factory: EmulatorFactory,
    session: aiohttp.ClientSession,
) -> None:
    """Logins, token validation, bearer calls and executes leave no secret in the log."""
    emulator = emulator_factory(access_log=True)
    _, body = await call(
        session, "POST", f"{emulator.url}/v1/authentication",
        {"username": "cr-admin", "password": PASSWORD},
    )  # fmt: skip
    token = body["token"]
    await call(session, "POST", f"{emulator.url}/v2/authentication",
               {"username": "cr-admin", "apiKey": API_KEY})  # fmt: skip
    await call(session, "POST", f"{emulator.url}/v1/authentication",
               {"username": "cr-admin", "password": "wrong-" + PASSWORD})  # fmt: skip
    await call(session, "GET", f"{emulator.url}/v1/authentication/token?token={token}")
    url, execution = await access(session, emulator.url, token)
    await call(
        session, "POST", url, fraud_input(), headers={"Authorization": f"Bearer {execution}"}
    )
    await call(session, "POST", url, data=b"{", headers={"X-Authorization": execution})

    async def all_seven_logged() -> bool:
        lines = [orjson.loads(line) for line in captured.getvalue().splitlines()]
        return len([line for line in lines if line["event"] == "http_request"]) >= 7

    await wait_until(all_seven_logged)
    text = captured.getvalue()
    for secret in (PASSWORD, API_KEY, token, execution, token.split(".")[2]):
        assert secret not in text
    assert "?token" not in text
