from __future__ import annotations

import asyncio

import pytest

from streamproc.controlroom.tokens import Lease, RefreshPolicy, SingleFlight, jwt_claims, jwt_expiry
from tests.unit.controlroom.fakes import FakeClock, make_jwt

# The execution token from the Control Room documentation (RS512, 12 h lifetime).
DOC_TOKEN = (
    "eyJhbGciOiJSUzUxMiJ9.eyJzdWIiOiIzODAiLCJ0ZW5hbnRVdWlkIjoiMGE2NjUzNDMtODhlOS0xN2JlLTgxODktOTM2"
    "ZGFkNWQwMTQ0IiwiY2xpZW50VHlwZSI6IldFQiIsIm11bHRpcGxlTG9naW4iOnRydWUsImJvdElkIjoyNjg5LCJpYXQiOj"
    "E3MDgzNTIxOTgsImV4cCI6MTcwODM5NTM5OCwiaXNzIjoiQXV0b21hdGlvbkFueXdoZXJlIiwibmFub1RpbWUiOjI5OTg3"
    "MDkyNzIxNjc5MH0.p8xsnlec7-ZbPJBfDDk1Wq0k8RqAzzsL6bK7BOtLp_jY1NgQvdAO5Yra647-94JV2cY8Vbe5H7zObia3"
)


def test_reads_exp_from_the_documented_token() -> None:
    """The documentation's execution token decodes to its claims, exp included."""
    claims = jwt_claims(DOC_TOKEN)
    assert claims is not None
    assert claims["botId"] == 2689
    assert jwt_expiry(DOC_TOKEN) == 1708395398.0
    assert claims["exp"] - claims["iat"] == 43200


@pytest.mark.parametrize(
    "token",
    ["opaque-token", "a.b", "a.!!!.c", make_jwt(None), "x." + "bm90IGpzb24" + ".y", "x.WzFd.y"],
)
def test_unreadable_tokens_have_no_expiry(token: str) -> None:
    """Opaque, malformed, exp-less or non-object payloads yield no expiry instead of failing."""
    assert jwt_expiry(token) is None


def test_refresh_point_uses_the_smaller_of_margin_and_fraction() -> None:
    """A 20-minute token refreshes 60 s early; a 2-second token 0.2 s early, not at once."""
    policy = RefreshPolicy(margin_s=60.0, fraction=0.1)
    assert policy.refresh_at(0.0, 1200.0) == 1140.0
    assert policy.refresh_at(0.0, 2.0) == pytest.approx(1.8)
    assert RefreshPolicy(default_ttl_s=1200.0).refresh_at(100.0, None) == 1240.0
    assert RefreshPolicy(default_ttl_s=None).refresh_at(100.0, None) == float("inf")


class Counter:
    def __init__(self, clock: FakeClock, gate: asyncio.Event | None = None) -> None:
        self.calls = 0
        self.clock = clock
        self.gate = gate
        self.fail_with: Exception | None = None
        self.started = asyncio.Event()

    async def fetch(self) -> Lease[int]:
        self.calls += 1
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        now = self.clock()
        return Lease(self.calls, now, now + 10)


async def test_single_flight_runs_one_fetch_for_many_waiters(clock: FakeClock) -> None:
    """Fifty concurrent callers on an empty cache cause exactly one fetch and share its value."""
    gate = asyncio.Event()
    counter = Counter(clock, gate)
    flight: SingleFlight[int] = SingleFlight(counter.fetch, clock)
    tasks = [asyncio.create_task(flight.get()) for _ in range(50)]
    await counter.started.wait()
    gate.set()
    leases = await asyncio.gather(*tasks)
    assert counter.calls == 1
    assert {lease.value for lease in leases} == {1}


async def test_single_flight_shares_a_failure_instead_of_retrying_per_waiter(
    clock: FakeClock,
) -> None:
    """When the one fetch fails, every waiter gets that error and no second fetch starts."""
    counter = Counter(clock)
    counter.fail_with = RuntimeError("login refused")
    flight: SingleFlight[int] = SingleFlight(counter.fetch, clock)
    results = await asyncio.gather(*(flight.get() for _ in range(10)), return_exceptions=True)
    assert counter.calls == 1
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_value_is_reused_until_stale_then_refetched(clock: FakeClock) -> None:
    """A fresh lease is served from cache; once its stale time passes the next get fetches."""
    counter = Counter(clock)
    flight: SingleFlight[int] = SingleFlight(counter.fetch, clock)
    assert (await flight.get()).value == 1
    clock.advance(9.9)
    assert (await flight.get()).value == 1
    clock.advance(0.1)
    assert (await flight.get()).value == 2


async def test_invalidating_an_already_replaced_lease_does_not_refetch(clock: FakeClock) -> None:
    """Two callers rejected with the same old lease cause one refresh, not two."""
    counter = Counter(clock)
    flight: SingleFlight[int] = SingleFlight(counter.fetch, clock)
    old = await flight.get()
    first = await flight.invalidate(old)
    second = await flight.invalidate(old)
    assert (first.value, second.value, counter.calls) == (2, 2, 2)


async def test_a_cancelled_waiter_does_not_cancel_the_shared_fetch(clock: FakeClock) -> None:
    """A waiter whose own deadline passes leaves the fetch running for the others."""
    gate = asyncio.Event()
    counter = Counter(clock, gate)
    flight: SingleFlight[int] = SingleFlight(counter.fetch, clock)
    impatient = asyncio.create_task(flight.get())
    patient = asyncio.create_task(flight.get())
    await counter.started.wait()
    impatient.cancel()
    gate.set()
    assert (await patient).value == 1
    with pytest.raises(asyncio.CancelledError):
        await impatient
    assert counter.calls == 1


async def test_postpone_keeps_a_value_past_its_stale_time(clock: FakeClock) -> None:
    """After a failed refresh the old value can be kept for a while, without refetching."""
    counter = Counter(clock)
    flight: SingleFlight[int] = SingleFlight(counter.fetch, clock)
    lease = await flight.get()
    clock.advance(11)
    kept = flight.postpone(lease, clock() + 5)
    assert (await flight.get()).value == 1
    assert kept.value == 1
    clock.advance(5)
    assert (await flight.get()).value == 2
