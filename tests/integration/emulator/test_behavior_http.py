"""Latency and failure injection, set at start or live, and the stats that count them."""

from __future__ import annotations

import time

import aiohttp
import pytest

from streamproc.emulator import EmulatorHandle
from tests.fixtures.emulator import EmulatorFactory
from tests.integration.emulator.helpers import access, assert_error, call, fraud_input, login

pytestmark = pytest.mark.integration


async def execute_once(
    session: aiohttp.ClientSession, emulator: EmulatorHandle, **strings: str
) -> tuple[int, dict]:
    url, token = await access(session, emulator.url, await login(session, emulator.url))
    return await call(
        session, "POST", url, fraud_input(**strings), headers={"X-Authorization": token}
    )


async def test_default_emulator_scores_with_the_fraud_task(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """The default emulator has the Fraud Score API Task allocated (limit 8) and scoring."""
    assert emulator.allocation_stats(201)["concurrencyLimit"] == 8
    status, body = await execute_once(session, emulator, iStrCountry="US", iStrCardCountry="US")
    assert status == 200
    assert body["hotBotResult"]["botOutput"]["oStrDecision"] == {
        "type": "STRING", "string": "APPROVE"
    }  # fmt: skip
    assert emulator.allocation_stats(201)["executed"] == 1


async def test_injected_errors_live(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """error_rate 1 answers 500 INJECTED_FAILURE; error_status 503 answers 503; both counted."""
    emulator.set_behavior(201, error_rate=1.0)
    status, body = await execute_once(session, emulator)
    assert_error(status, body, 500, "INJECTED_FAILURE")
    assert emulator.set_behavior(201, error_status=503)["error_status"] == 503
    status, body = await execute_once(session, emulator)
    assert_error(status, body, 503, "INJECTED_FAILURE")
    stats = emulator.allocation_stats(201)
    assert (stats["failed"], stats["executed"]) == (2, 0)
    emulator.set_behavior(201, error_rate=0.0)
    assert (await execute_once(session, emulator))[0] == 200


async def test_error_rate_flag_applies_to_every_task(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    """error_rate given at start is every task's behaviour."""
    emulator = emulator_factory(error_rate=1.0, latency_ms=3)
    for file_id in (5, 149, 180, 184, 201):
        behavior = emulator.behavior(file_id)
        assert (behavior["error_rate"], behavior["latency_ms"]) == (1.0, 3.0)
    assert (await execute_once(session, emulator))[0] == 500


async def test_hang_ends_with_504_at_hang_max_seconds(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """A held request answers 504 TIMEOUT after hang_max_seconds, counted as failed."""
    emulator.set_behavior(201, hang_rate=1.0, hang_max_seconds=0.2)
    started = time.monotonic()
    status, body = await execute_once(session, emulator)
    assert time.monotonic() - started >= 0.2
    assert_error(status, body, 504, "TIMEOUT")
    assert emulator.allocation_stats(201)["failed"] == 1


async def test_latency_delays_the_answer(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """latency_ms set live delays each execute by at least that long."""
    url, token = await access(session, emulator.url, await login(session, emulator.url))
    emulator.set_behavior(201, latency_ms=150, latency_distribution="fixed")
    started = time.monotonic()
    status, _ = await call(session, "POST", url, fraud_input(), headers={"X-Authorization": token})
    assert status == 200
    assert time.monotonic() - started >= 0.15


async def test_behavior_get_and_list(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """GET answers the current behaviour, one task or all."""
    emulator.set_behavior(184, latency_ms=7)
    assert emulator.behavior(184)["latency_ms"] == 7
    status, body = await call(session, "GET", f"{emulator.url}/emulator/v1/behavior")
    assert status == 200
    assert set(body) == {"5", "149", "180", "184", "201"}
    assert body["184"]["latency_ms"] == 7


async def test_stats_reset(emulator: EmulatorHandle, session: aiohttp.ClientSession) -> None:
    """Reset zeroes the counters and forgets the last correlation headers."""
    await execute_once(session, emulator)
    assert emulator.allocation_stats(201)["executed"] == 1
    after = emulator.reset_stats()
    assert after["allocations"][0] == {
        "fileId": "201",
        "filePath": "Automation Anywhere\\Bots\\Fraud Score API Task",
        "concurrencyLimit": 8,
        "inFlight": 0,
        "maxInFlight": 0,
        "executed": 0,
        "rejected": 0,
        "failed": 0,
        "invalid": 0,
        "lastRequestId": None,
        "lastAttempt": None,
        "lastTraceparent": None,
    }


async def test_control_endpoints_need_no_auth(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """health, repository and openapi.json answer without credentials."""
    status, body = await call(session, "GET", f"{emulator.url}/emulator/v1/health")
    assert (status, body) == (200, {"status": "ok"})
    status, body = await call(session, "GET", f"{emulator.url}/emulator/v1/repository")
    assert [t["fileId"] for t in body["tasks"]] == ["5", "149", "180", "184", "201"]
    status, body = await call(session, "GET", f"{emulator.url}/emulator/v1/openapi.json")
    assert status == 200
    assert body["openapi"] == "3.1.0"
    assert "/hotbot/{botId}/execute" in body["paths"]


async def test_fraud_decisions_over_http(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """The three documented examples reach APPROVE, REVIEW and DECLINE end to end."""
    url, token = await access(session, emulator.url, await login(session, emulator.url))
    cases = [
        (fraud_input("45", iStrCountry="US", iStrCardCountry="US", iStrChannel="pos"), "APPROVE"),
        (fraud_input("1500", iStrCountry="FR", iStrCardCountry="US", iStrChannel="ecommerce"),
         "REVIEW"),
        (fraud_input("3500", iStrCountry="MT", iStrCardCountry="GB",
                     iStrMerchantCategory="7995"), "DECLINE"),
    ]  # fmt: skip
    for body, decision in cases:
        status, answer = await call(session, "POST", url, body, headers={"X-Authorization": token})
        assert status == 200
        assert answer["hotBotResult"]["botOutput"]["oStrDecision"]["string"] == decision
