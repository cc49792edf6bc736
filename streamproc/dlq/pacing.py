"""A rate limit for replays: a token bucket, with the clock as an argument.

A replay writes old records back into a live input topic; the processor, its API Tasks'
budgets and everything downstream see them on top of the live traffic. The bucket holds at
most ``burst`` tokens and refills at ``rate`` per second; each record spends one.
"""

from __future__ import annotations


class Pacer:
    """At most ``rate`` records per second on average, at most ``burst`` at once."""

    def __init__(self, rate: float, now: float, *, burst: int = 1) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = now

    def _refill(self, now: float) -> None:
        # A clock that goes backwards must not mint tokens.
        elapsed = max(0.0, now - self._at)
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
        self._at = max(self._at, now)

    def delay(self, now: float) -> float:
        """Seconds to wait before the next record may go; 0.0 when it may go now."""
        self._refill(now)
        # The tolerance keeps float rounding (0.9999999999 tokens) from asking for a wait.
        return 0.0 if self._tokens >= 1.0 - 1e-9 else (1.0 - self._tokens) / self.rate

    def take(self, now: float) -> None:
        """Spend one token (the caller waited :meth:`delay` first)."""
        self._refill(now)
        self._tokens -= 1.0
