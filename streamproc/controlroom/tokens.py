"""Token lifetimes: read a JWT's ``exp``, refresh ahead of it, one refresh in flight at a time.

The client never checks a signature: the Control Room does that, and a forged or revoked token
comes back as a 401 that triggers one refresh and one replay. ``exp`` is only a schedule.

:class:`SingleFlight` is the heart of it. However many coroutines find the cached value stale
at once, exactly one fetch runs and all of them await its outcome, success or failure. That
matters twice over: a fleet of 64 in-flight executes must not log in 64 times, and a wrong
password must cost one failed login, not one per waiter (Control Rooms lock accounts after
repeated failures).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson

T = TypeVar("T")
Clock = Callable[[], float]


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The JSON payload of a JWT (no signature check), or None if ``token`` is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    segment = parts[1]
    try:
        payload = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        claims = orjson.loads(payload)
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim in epoch seconds, or None when absent or unreadable."""
    claims = jwt_claims(token)
    exp = claims.get("exp") if claims else None
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
        return None
    return float(exp)


@dataclass(frozen=True, slots=True)
class RefreshPolicy:
    """When to refresh: ``margin_s`` before expiry, but never later than ``fraction`` of the
    lifetime before it, so a 2-second test token is not "always stale" under a 60 s margin.

    ``default_ttl_s`` applies to tokens whose expiry cannot be read (opaque tokens).
    """

    margin_s: float = 60.0
    fraction: float = 0.1
    default_ttl_s: float | None = 1200.0

    def refresh_at(self, obtained_at: float, expires_at: float | None) -> float:
        """The clock time from which a token obtained at ``obtained_at`` counts as stale."""
        if expires_at is None:
            if self.default_ttl_s is None:
                return math.inf
            expires_at = obtained_at + self.default_ttl_s
        lifetime = max(expires_at - obtained_at, 0.0)
        return expires_at - min(self.margin_s, lifetime * self.fraction)


@dataclass(frozen=True, slots=True)
class Lease(Generic[T]):
    """A cached value, when it was obtained and when it turns stale (by the injected clock)."""

    value: T
    obtained_at: float
    stale_at: float


class SingleFlight(Generic[T]):
    """A cached value refreshed by ``fetch``, with at most one fetch running at any moment.

    ``get()`` returns the cached lease while fresh; otherwise it joins the running fetch or
    starts one. ``invalidate(lease)`` marks exactly that lease as bad (after a 401), so a
    caller holding an already-replaced lease does not trigger a second refresh.

    The fetch runs as its own task and waiters ``shield`` it: one waiter being cancelled (its
    deadline passed) neither cancels the fetch for the others nor leaves it half done.
    """

    def __init__(self, fetch: Callable[[], Awaitable[Lease[T]]], clock: Clock) -> None:
        self._fetch = fetch
        self._clock = clock
        self._lease: Lease[T] | None = None
        self._inflight: asyncio.Task[Lease[T]] | None = None

    @property
    def current(self) -> Lease[T] | None:
        """The cached lease, fresh or not, without fetching."""
        return self._lease

    def is_fresh(self, lease: Lease[T] | None = None) -> bool:
        lease = lease if lease is not None else self._lease
        return lease is not None and self._clock() < lease.stale_at

    async def get(self) -> Lease[T]:
        lease = self._lease
        if lease is not None and self._clock() < lease.stale_at:
            return lease
        return await self.refresh()

    async def refresh(self) -> Lease[T]:
        """Join the running fetch, or start one; every waiter sees the same outcome."""
        task = self._inflight
        if task is None:
            task = asyncio.get_running_loop().create_task(self._run())
            self._inflight = task
            # If every waiter is cancelled, nobody awaits the task; retrieve its outcome so
            # the loop does not report "exception was never retrieved".
            task.add_done_callback(_consume_outcome)
        return await asyncio.shield(task)

    async def invalidate(self, lease: Lease[T] | None) -> Lease[T]:
        """``lease`` was rejected: refresh unless someone already replaced it, then return
        the lease to retry with."""
        current = self._lease
        if current is not None and lease is not None and current is not lease:
            if self._inflight is None:
                return current
            return await self.refresh()
        self._lease = None
        return await self.refresh()

    def postpone(self, lease: Lease[T], stale_at: float) -> Lease[T]:
        """Keep using ``lease`` until ``stale_at`` (a refresh failed; the value may still be
        good). Returns the lease to use: the postponed one, or a newer one if it appeared."""
        current = self._lease
        if current is not None and current is not lease:
            return current
        self._lease = Lease(lease.value, lease.obtained_at, stale_at)
        return self._lease

    def clear(self) -> None:
        """Forget the cached value (the next ``get`` fetches)."""
        self._lease = None

    async def aclose(self) -> None:
        """Cancel a running fetch and forget the value."""
        task, self._inflight = self._inflight, None
        self._lease = None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> Lease[T]:
        try:
            lease = await self._fetch()
            self._lease = lease
            return lease
        finally:
            self._inflight = None


def _consume_outcome(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()
