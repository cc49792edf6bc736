"""Retry policy: what to do after a failed execute call, and how long to wait first.

:func:`classify` sorts an error into

- ``retry``: a :class:`~streamproc.errors.RetryableError` (429, 5xx, connection, timeout);
  worth another attempt after a backoff, if the deadline allows.
- ``refresh``: :class:`~streamproc.errors.AuthError` (401) or
  :class:`~streamproc.errors.PermissionDeniedError` (403). The Control Room client already
  refreshes the token once and replays a 401 on its own; if the error still reaches the
  processor, one more token refresh and replay is worth it (e.g. the token was revoked
  concurrently). A second one for the same event (``refreshed=True``) is ``permanent``:
  credentials or role are wrong, and retrying would only hammer the authentication
  endpoint. A refresh does not use up a retry attempt.
- ``permanent``: everything else (other endpoint errors, bad output, bad input, bugs);
  another attempt would give the same answer.

:func:`next_delay` is exponential backoff with jitter that honours the server's Retry-After
and gives up early when the wait plus the expected latency of the next attempt would
overrun the event's deadline: an answer after the deadline is worth no more than none.
"""

from __future__ import annotations

import math
from typing import Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, model_validator

from streamproc.errors import (
    AuthError,
    KafkaDeliveryError,
    PermissionDeniedError,
    RetryableError,
)

Action: TypeAlias = Literal["retry", "refresh", "permanent"]
Jitter: TypeAlias = Literal["full", "equal", "none"]

# 2**62 ms is far beyond any max_delay_ms; capping the exponent keeps the float finite.
_MAX_EXPONENT = 62


class RetryPolicy(BaseModel):
    """Attempts per task call and the backoff between them.

    ``max_attempts`` counts the first attempt: 3 means up to 2 retries. Delays are in
    milliseconds, growing as ``base * 2**(attempt - 1)`` up to ``max_delay_ms``, then
    jittered: ``full`` draws uniformly from [0, delay), ``equal`` from [delay/2, delay),
    ``none`` uses the delay as is.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(3, ge=1, le=100)
    base_delay_ms: float = Field(20.0, ge=0, allow_inf_nan=False)
    max_delay_ms: float = Field(500.0, ge=0, allow_inf_nan=False)
    jitter: Jitter = "full"

    @model_validator(mode="after")
    def _max_not_below_base(self) -> RetryPolicy:
        if self.max_delay_ms < self.base_delay_ms:
            raise ValueError("max_delay_ms cannot be below base_delay_ms")
        return self


def classify(error: BaseException, *, refreshed: bool = False) -> Action:
    """What to do after ``error``; ``refreshed`` says a refresh was already tried for it."""
    if isinstance(error, RetryableError):
        return "retry"
    if isinstance(error, AuthError | PermissionDeniedError):
        return "permanent" if refreshed else "refresh"
    if isinstance(error, KafkaDeliveryError) and error.retriable:
        return "retry"
    return "permanent"


def backoff_s(policy: RetryPolicy, attempt: int, rand: float) -> float:
    """The jittered backoff in seconds after failed attempt number ``attempt`` (1-based)."""
    _check(attempt, rand)
    exponent = min(attempt - 1, _MAX_EXPONENT)
    delay_ms = min(policy.max_delay_ms, policy.base_delay_ms * 2.0**exponent)
    if policy.jitter == "full":
        delay_ms *= rand
    elif policy.jitter == "equal":
        delay_ms = delay_ms / 2 + delay_ms / 2 * rand
    return delay_ms / 1000.0


def next_delay(
    policy: RetryPolicy,
    attempt: int,
    *,
    retry_after_s: float | None,
    remaining_s: float | None,
    expected_latency_s: float,
    rand: float,
) -> float | None:
    """Seconds to wait before the next attempt, or None to give up.

    ``attempt`` is the number of attempts made so far (1 after the first failure).
    Gives up when ``max_attempts`` are used, or when ``delay + expected_latency_s`` would
    not fit in ``remaining_s`` (None: no deadline). The server's ``retry_after_s`` is a
    floor for the delay: retrying sooner than it asked is answered with another 429.
    """
    _check(attempt, rand)
    if attempt >= policy.max_attempts:
        return None
    delay = backoff_s(policy, attempt, rand)
    if retry_after_s is not None and math.isfinite(retry_after_s) and retry_after_s > delay:
        delay = retry_after_s
    if remaining_s is not None and delay + max(expected_latency_s, 0.0) > remaining_s:
        return None
    return delay


def _check(attempt: int, rand: float) -> None:
    if attempt < 1:
        raise ValueError(f"attempt is 1-based, got {attempt}")
    if not 0.0 <= rand < 1.0:
        raise ValueError(f"rand must be in [0, 1), got {rand}")
