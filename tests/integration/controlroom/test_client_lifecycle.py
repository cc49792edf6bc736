"""Tokens and access details expiring mid-use, and every error class, against the emulator."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from streamproc.app import make_execute_transport
from streamproc.controlroom.credentials import PasswordCredentials
from streamproc.controlroom.transport import TransportKind
from streamproc.core.values import StringValue
from streamproc.emulator import EmulatorHandle
from streamproc.errors import (
    AccessDetailsError,
    AuthError,
    ConflictError,
    EndpointConnectionError,
    EndpointTimeoutError,
    OverConcurrencyLimitError,
    PermissionDeniedError,
)
from tests.fixtures.emulator import EmulatorFactory
from tests.integration.controlroom.conftest import (
    ZIP_CODE_TASK,
    MakeClient,
    developer,
    wait_until,
)

pytestmark = pytest.mark.integration

TRANSPORTS: list[TransportKind] = ["aiohttp", "httpx", "httptools", "pyreqwest"]
ZIP = {"iStrZipCode": StringValue("76131")}


async def test_expiring_login_token_is_refreshed_before_use(
    emulator_factory: EmulatorFactory, cr_client: MakeClient
) -> None:
    """With a 2 s token, calls spanning its expiry succeed via one proactive re-login."""
    emulator = emulator_factory(token_ttl_seconds=2)
    admin = cr_client(emulator.url)
    assert len([a async for a in admin.allocations()]) == 1
    assert admin.token is not None
    expires_at = admin.token.expires_at
    assert expires_at is not None
    await wait_until(lambda: time.time() > expires_at)
    assert len([a async for a in admin.allocations()]) == 1
    assert admin.logins == 2


async def test_token_expired_server_side_is_replaced_on_401(
    emulator_factory: EmulatorFactory, cr_client: MakeClient
) -> None:
    """A client whose clock runs late meets a 401, logs in once more and replays, unnoticed."""
    emulator = emulator_factory(token_ttl_seconds=1)
    admin = cr_client(emulator.url, clock=lambda: time.time() - 60)
    await admin.authenticate()
    assert admin.token is not None
    expires_at = admin.token.expires_at
    assert expires_at is not None
    await wait_until(lambda: time.time() > expires_at + 0.1)
    assert len([a async for a in admin.allocations()]) == 1
    assert admin.logins == 2


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_expired_execution_token_is_refreshed_and_replayed(
    emulator_factory: EmulatorFactory, cr_client: MakeClient, kind: TransportKind
) -> None:
    """When the execution token expires, the next execute refreshes it and still succeeds."""
    emulator = emulator_factory(execution_token_ttl_seconds=1)
    await cr_client(emulator.url).create_allocation(149, concurrency_limit=4)
    transport = make_execute_transport(kind)
    try:
        session = cr_client(emulator.url, developer()).execution_session(ZIP_CODE_TASK, transport)
        await session.execute(ZIP, timeout_s=5.0)
        started = time.time()
        await wait_until(lambda: time.time() > started + 1.5)
        result = await session.execute(ZIP, timeout_s=5.0)
    finally:
        await transport.aclose()
    assert result.outputs["State"] == StringValue("California")
    assert session.refreshes == 2


async def test_access_details_refresh_on_schedule(
    emulator: EmulatorHandle, cr_client: MakeClient
) -> None:
    """Past the refresh interval (by the client's clock) new access details are fetched."""
    await cr_client(emulator.url).create_allocation(149, concurrency_limit=4)
    offset = [0.0]
    client = cr_client(emulator.url, developer(), clock=lambda: time.time() + offset[0])
    transport = make_execute_transport()
    try:
        session = client.execution_session(ZIP_CODE_TASK, transport, refresh_interval_s=300.0)
        await session.execute(ZIP, timeout_s=5.0)
        await session.execute(ZIP, timeout_s=5.0)
        assert session.refreshes == 1
        offset[0] = 301.0
        await session.execute(ZIP, timeout_s=5.0)
        assert session.refreshes == 2
    finally:
        await transport.aclose()


async def test_wrong_password_forbidden_create_and_duplicate(
    emulator: EmulatorHandle, cr_client: MakeClient
) -> None:
    """401 on bad credentials, 403 for a developer creating, 409 for a duplicate allocation."""
    with pytest.raises(AuthError) as bad:
        await cr_client(emulator.url, PasswordCredentials("cr-admin", "nope")).authenticate()
    assert bad.value.status == 401
    with pytest.raises(PermissionDeniedError) as forbidden:
        await cr_client(emulator.url, developer()).create_allocation(149)
    assert forbidden.value.status == 403
    admin = cr_client(emulator.url)
    await admin.create_allocation(149, concurrency_limit=1)
    with pytest.raises(ConflictError) as duplicate:
        await admin.create_allocation(149, concurrency_limit=1)
    assert duplicate.value.body.get("message")


async def test_unallocated_path_is_an_access_details_error(
    emulator: EmulatorHandle, cr_client: MakeClient
) -> None:
    """Executing a task that has no allocation fails with that path's AccessDetailsError."""
    transport = make_execute_transport()
    try:
        session = cr_client(emulator.url, developer()).execution_session(ZIP_CODE_TASK, transport)
        with pytest.raises(AccessDetailsError) as caught:
            await session.execute(ZIP, timeout_s=5.0)
    finally:
        await transport.aclose()
    assert caught.value.path == ZIP_CODE_TASK


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_over_the_limit_is_429_with_no_queueing(
    emulator: EmulatorHandle, cr_client: MakeClient, kind: TransportKind
) -> None:
    """With limit 1 and a slow task, a concurrent second execute fails at once with 429."""
    await cr_client(emulator.url).create_allocation(149, concurrency_limit=1)
    emulator.set_behavior(149, latency_ms=500)
    transport = make_execute_transport(kind)
    try:
        session = cr_client(emulator.url, developer()).execution_session(ZIP_CODE_TASK, transport)
        await session.refresh()
        slow = asyncio.create_task(session.execute(ZIP, timeout_s=5.0))
        await wait_until(lambda: emulator.allocation_stats(149)["inFlight"] == 1)
        with pytest.raises(OverConcurrencyLimitError) as caught:
            await session.execute(ZIP, timeout_s=5.0)
        assert (await slow).status == 200
    finally:
        await transport.aclose()
    assert caught.value.status == 429


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_slow_execute_is_an_endpoint_timeout(
    emulator: EmulatorHandle, cr_client: MakeClient, kind: TransportKind
) -> None:
    """An execute that outlasts timeout_s raises EndpointTimeoutError on either transport."""
    await cr_client(emulator.url).create_allocation(149, concurrency_limit=2)
    emulator.set_behavior(149, latency_ms=3000)
    transport = make_execute_transport(kind)
    try:
        session = cr_client(emulator.url, developer()).execution_session(ZIP_CODE_TASK, transport)
        await session.refresh()
        with pytest.raises(EndpointTimeoutError):
            await session.execute(ZIP, timeout_s=0.2)
    finally:
        await transport.aclose()


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_pool_limit_holds_under_concurrency(
    emulator: EmulatorHandle, cr_client: MakeClient, kind: TransportKind
) -> None:
    """Eight concurrent executes through a pool of two never have more than two in flight."""
    await cr_client(emulator.url).create_allocation(149, concurrency_limit=16)
    emulator.set_behavior(149, latency_ms=100)
    transport = make_execute_transport(kind, max_connections=2)
    try:
        session = cr_client(emulator.url, developer()).execution_session(ZIP_CODE_TASK, transport)
        await session.refresh()
        results = await asyncio.gather(*(session.execute(ZIP, timeout_s=10.0) for _ in range(8)))
    finally:
        await transport.aclose()
    assert [r.status for r in results] == [200] * 8
    stats = emulator.allocation_stats(149)
    assert (stats["executed"], stats["maxInFlight"]) == (8, 2)


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_waiting_for_a_pooled_connection_counts_against_the_timeout(
    emulator: EmulatorHandle, cr_client: MakeClient, kind: TransportKind
) -> None:
    """With the only connection busy, an execute times out within its own timeout_s."""
    await cr_client(emulator.url).create_allocation(149, concurrency_limit=4)
    emulator.set_behavior(149, latency_ms=1500)
    transport = make_execute_transport(kind, max_connections=1)
    try:
        session = cr_client(emulator.url, developer()).execution_session(ZIP_CODE_TASK, transport)
        await session.refresh()
        busy = asyncio.create_task(session.execute(ZIP, timeout_s=10.0))
        await wait_until(lambda: emulator.allocation_stats(149)["inFlight"] == 1)
        started = time.perf_counter()
        with pytest.raises(EndpointTimeoutError):
            await session.execute(ZIP, timeout_s=0.3)
        waited = time.perf_counter() - started
        assert (await busy).status == 200
    finally:
        await transport.aclose()
    assert waited < 1.0  # the busy connection is freed only after about 1.5 s
    assert emulator.allocation_stats(149)["executed"] == 1


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_refused_connection_is_an_endpoint_connection_error(kind: TransportKind) -> None:
    """Nothing listening: both execute transports raise EndpointConnectionError."""
    transport = make_execute_transport(kind)
    try:
        with pytest.raises(EndpointConnectionError) as caught:
            await transport.post(f"http://127.0.0.1:{_closed_port()}/execute", {}, b"{}", 2.0)
    finally:
        await transport.aclose()
    assert caught.value.__cause__ is not None


async def test_admin_calls_to_a_closed_port_are_connection_errors(cr_client: MakeClient) -> None:
    """The admin client maps a refused connection the same way."""
    with pytest.raises(EndpointConnectionError):
        await cr_client(f"http://127.0.0.1:{_closed_port()}").authenticate()
