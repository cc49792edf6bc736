"""A circuit breaker per allocation: stop spending executes on an endpoint that is down.

When the API Task answers 5xx, refuses connections or hangs, every execute spent on it costs a
budget slot (a licensed Bot Runner) and, for a hang, the whole attempt timeout, and still ends
as a fallback. The breaker turns that into an immediate ``circuit_open`` fallback:

    closed ──(failure_threshold consecutive failures)──▶ open
    open ──(open_ms passed)──▶ half_open
    half_open: one probe execute per probe_interval_ms; the others fall back at once
    half_open ──(a probe fails)──▶ open          any state ──(a success)──▶ closed

Only unavailability counts as a failure: a 5xx, a connection error, an attempt timeout. A 429
says the endpoint is alive and full; a 4xx or a malformed output is about one event. An
execute's result describes the endpoint as it was when the execute *started*, so a failure of
an execute started before the breaker went half-open (a hang that began during the outage)
does not re-open it; any success closes it, since the endpoint answered.

Time is a monotonic clock in seconds, passed in: the breaker reads no clock of its own.
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

CircuitState: TypeAlias = Literal["closed", "open", "half_open"]
# The value of the state gauge: ordered by how much is being refused.
STATE_CODE: Final[dict[CircuitState, int]] = {"closed": 0, "half_open": 1, "open": 2}


class CircuitPolicy(BaseModel):
    """When the breaker opens, how long it stays open, and how often it probes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    failure_threshold: int = Field(5, ge=1, le=10_000)
    open_ms: float = Field(1_000.0, gt=0, le=600_000, allow_inf_nan=False)
    probe_interval_ms: float = Field(1_000.0, gt=0, le=600_000, allow_inf_nan=False)


class CircuitBreaker:
    """The breaker of one allocation. ``allow`` before an execute, ``succeeded`` or ``failed``
    after it (with the time it started)."""

    __slots__ = (
        "_failures",
        "_half_open_since",
        "_next_probe",
        "_open_s",
        "_opened_at",
        "_policy",
        "_probe_s",
        "_state",
        "_threshold",
        "opened",
    )

    def __init__(self, policy: CircuitPolicy | None = None) -> None:
        self._policy = policy or CircuitPolicy()
        self._threshold = self._policy.failure_threshold
        self._open_s = self._policy.open_ms / 1000
        self._probe_s = self._policy.probe_interval_ms / 1000
        self._state: CircuitState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._half_open_since = 0.0
        self._next_probe = 0.0
        self.opened = 0  # times it opened from closed: a counter for metrics and tests

    @property
    def enabled(self) -> bool:
        return self._policy.enabled

    def state(self, now: float) -> CircuitState:
        """The state at ``now`` (open turns half-open once ``open_ms`` has passed)."""
        if self._state == "open" and now - self._opened_at >= self._open_s:
            self._state = "half_open"
            self._half_open_since = self._opened_at + self._open_s
            self._next_probe = self._half_open_since
        return self._state

    def refusing(self, now: float) -> bool:
        """Whether an execute asked for now would be refused; takes no probe."""
        if not self._policy.enabled:
            return False
        state = self.state(now)
        return state == "open" or (state == "half_open" and now < self._next_probe)

    def allow(self, now: float) -> bool:
        """Whether an execute may start now; in half-open, this takes the probe."""
        if not self._policy.enabled:
            return True
        state = self.state(now)
        if state == "closed":
            return True
        if state == "half_open" and now >= self._next_probe:
            self._next_probe = now + self._probe_s
            return True
        return False

    def succeeded(self) -> bool:
        """An execute answered; True when this closed the breaker."""
        self._failures = 0
        if self._state == "closed":
            return False
        self._state = "closed"
        return True

    def failed(self, started: float, now: float) -> bool:
        """An execute that started at ``started`` found the endpoint unavailable; True when
        this opened the breaker."""
        if not self._policy.enabled:
            return False
        state = self.state(now)
        if state == "closed":
            self._failures += 1
            if self._failures < self._threshold:
                return False
            self.opened += 1
        elif state == "open" or started < self._half_open_since:
            return False  # already open, or news from before the probing began
        self._state = "open"
        self._opened_at = now
        self._failures = 0
        return True

    @property
    def consecutive_failures(self) -> int:
        return self._failures
