"""Real-time concurrency: over the limit fails at once, never queues, never over-admits."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.fixtures.emulator import EmulatorFactory
from tests.integration.emulator.helpers import (
    access,
    assert_error,
    call,
    fraud_input,
    login,
    wait_until,
)

pytestmark = pytest.mark.integration


async def execute_url(session: aiohttp.ClientSession, base: str) -> tuple[str, dict[str, str]]:
    url, token = await access(session, base, await login(session, base))
    return url, {"X-Authorization": token}


async def test_burst_never_exceeds_the_limit(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    """50 concurrent executes against limit 3 with 50 ms latency: maxInFlight is exactly 3."""
    emulator = emulator_factory(allocations=[{"fileId": 201, "concurrencyLimit": 3}], latency_ms=50)
    url, headers = await execute_url(session, emulator.url)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as burst:
        results = await asyncio.gather(
            *(call(burst, "POST", url, fraud_input(), headers=headers) for _ in range(50))
        )
    statuses = [status for status, _ in results]
    assert set(statuses) <= {200, 429}
    for status, body in results:
        if status == 429:
            assert_error(status, body, 429, "CONCURRENCY_LIMIT_EXCEEDED")
            assert body["details"] == {"fileId": "201", "concurrencyLimit": 3}
    stats = emulator.allocation_stats(201)
    assert stats["maxInFlight"] == 3
    assert stats["executed"] + stats["rejected"] == 50
    assert stats["executed"] == statuses.count(200)
    assert stats["inFlight"] == 0


async def test_over_limit_fails_at_once_and_disconnects_free_slots(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    """With 3 requests held open, 20 more get 429 immediately; dropped clients free the slots."""
    emulator = emulator_factory(allocations=[{"fileId": 201, "concurrencyLimit": 3}], hang_rate=1.0)
    url, headers = await execute_url(session, emulator.url)
    held = [
        asyncio.create_task(call(session, "POST", url, fraud_input(), headers=headers))
        for _ in range(3)
    ]

    async def three_in_flight() -> bool:
        return emulator.allocation_stats(201)["inFlight"] == 3

    await wait_until(three_in_flight)
    started = time.monotonic()
    rejected = await asyncio.gather(
        *(call(session, "POST", url, fraud_input(), headers=headers) for _ in range(20))
    )
    # The held requests would answer after 60 s; these came back without waiting for them.
    assert time.monotonic() - started < 10
    assert {status for status, _ in rejected} == {429}
    for task in held:
        task.cancel()
    await asyncio.gather(*held, return_exceptions=True)

    async def none_in_flight() -> bool:
        return emulator.allocation_stats(201)["inFlight"] == 0

    await wait_until(none_in_flight)
    stats = emulator.allocation_stats(201)
    assert (stats["maxInFlight"], stats["rejected"], stats["failed"]) == (3, 20, 3)


async def test_over_limit_status_is_configurable(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    """over_limit_status=503 answers 503 with the same JSON error."""
    emulator = emulator_factory(
        allocations=[{"fileId": 201, "concurrencyLimit": 1}], hang_rate=1.0, over_limit_status=503
    )
    url, headers = await execute_url(session, emulator.url)
    held = asyncio.create_task(call(session, "POST", url, fraud_input(), headers=headers))

    async def one_in_flight() -> bool:
        return emulator.allocation_stats(201)["inFlight"] == 1

    await wait_until(one_in_flight)
    status, body = await call(session, "POST", url, fraud_input(), headers=headers)
    assert_error(status, body, 503, "CONCURRENCY_LIMIT_EXCEEDED")
    held.cancel()
    await asyncio.gather(held, return_exceptions=True)


async def test_allocations_have_separate_budgets(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    """A full Fraud Score allocation does not block the Zip Code task."""
    emulator = emulator_factory(
        allocations=[{"fileId": 201, "concurrencyLimit": 1}, {"fileId": 149}]
    )
    emulator.set_behavior(201, hang_rate=1.0)
    url, headers = await execute_url(session, emulator.url)
    held = asyncio.create_task(call(session, "POST", url, fraud_input(), headers=headers))

    async def fraud_full() -> bool:
        return emulator.allocation_stats(201)["inFlight"] == 1

    await wait_until(fraud_full)
    zip_url, zip_token = await access(
        session, emulator.url, await login(session, emulator.url),
        "Automation Anywhere\\Bots\\Zip Code API Task",
    )  # fmt: skip
    status, body = await call(
        session, "POST", zip_url,
        {"botInput": {"iStrZipCode": {"type": "STRING", "string": "10001"}}},
        headers={"X-Authorization": zip_token},
    )  # fmt: skip
    assert status == 200
    assert body["hotBotResult"]["botOutput"]["Place"]["string"] == "New York"
    held.cancel()
    await asyncio.gather(held, return_exceptions=True)
