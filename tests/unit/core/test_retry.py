"""Retry classification and deadline-aware backoff."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from streamproc.core.retry import RetryPolicy, backoff_s, classify, next_delay
from streamproc.errors import (
    AccessDetailsError,
    AuthError,
    BadOutputError,
    BadRequestError,
    DecodeError,
    EndpointConnectionError,
    EndpointTimeoutError,
    KafkaDeliveryError,
    MappingError,
    NotFoundError,
    OverConcurrencyLimitError,
    PermissionDeniedError,
    ServerError,
)


@pytest.mark.parametrize(
    ("error", "action"),
    [
        (OverConcurrencyLimitError("busy", status=429, retry_after=1.0), "retry"),
        (ServerError("boom", status=503), "retry"),
        (EndpointConnectionError("reset"), "retry"),
        (EndpointTimeoutError("slow"), "retry"),
        (AuthError("expired", status=401), "refresh"),
        (PermissionDeniedError("role", status=403), "refresh"),
        (BadRequestError("bad", status=400), "permanent"),
        (NotFoundError("gone", status=404), "permanent"),
        (AccessDetailsError("path", "no access"), "permanent"),
        (BadOutputError("score 140", variable="oNumScore"), "permanent"),
        (MappingError("no amount"), "permanent"),
        (DecodeError("not JSON"), "permanent"),
        (KafkaDeliveryError("full", topic="t", retriable=True), "retry"),
        (KafkaDeliveryError("too large", topic="t"), "permanent"),
        (RuntimeError("bug"), "permanent"),
    ],
)
def test_classify(error: Exception, action: str) -> None:
    """Retryable errors retry, auth errors refresh, everything else is permanent."""
    assert classify(error) == action


def test_repeated_auth_failure_is_permanent() -> None:
    """After one refresh an auth error is permanent, so credentials are not hammered."""
    assert classify(AuthError("expired", status=401), refreshed=True) == "permanent"
    assert classify(PermissionDeniedError("role", status=403), refreshed=True) == "permanent"
    assert classify(ServerError("boom"), refreshed=True) == "retry"


NONE = RetryPolicy(max_attempts=5, base_delay_ms=20, max_delay_ms=100, jitter="none")


@pytest.mark.parametrize(("attempt", "seconds"), [(1, 0.02), (2, 0.04), (3, 0.08), (4, 0.1)])
def test_backoff_doubles_up_to_the_cap(attempt: int, seconds: float) -> None:
    """Without jitter the delay is base * 2**(attempt-1), capped at max_delay_ms."""
    assert backoff_s(NONE, attempt, 0.5) == pytest.approx(seconds)


def test_full_and_equal_jitter() -> None:
    """Full jitter scales the delay by rand; equal jitter keeps at least half of it."""
    full = RetryPolicy(base_delay_ms=100, max_delay_ms=100, jitter="full")
    equal = RetryPolicy(base_delay_ms=100, max_delay_ms=100, jitter="equal")
    assert backoff_s(full, 1, 0.0) == 0.0
    assert backoff_s(full, 1, 0.25) == pytest.approx(0.025)
    assert backoff_s(equal, 1, 0.0) == pytest.approx(0.05)
    assert backoff_s(equal, 1, 0.5) == pytest.approx(0.075)


def test_huge_attempt_numbers_stay_finite() -> None:
    """The exponent is capped, so a large attempt number cannot overflow."""
    assert backoff_s(NONE, 10_000, 0.5) == pytest.approx(0.1)


def test_gives_up_when_attempts_are_used() -> None:
    """No delay is offered once max_attempts attempts have been made."""
    policy = RetryPolicy(max_attempts=3, jitter="none")
    kw = {"retry_after_s": None, "remaining_s": None, "expected_latency_s": 0.0, "rand": 0.5}
    assert next_delay(policy, 1, **kw) == pytest.approx(0.02)
    assert next_delay(policy, 2, **kw) == pytest.approx(0.04)
    assert next_delay(policy, 3, **kw) is None
    assert next_delay(RetryPolicy(max_attempts=1), 1, **kw) is None


def test_retry_after_is_a_floor() -> None:
    """A server's Retry-After longer than the backoff is honoured; a shorter one is not."""
    kw = {"remaining_s": None, "expected_latency_s": 0.0, "rand": 0.5}
    assert next_delay(NONE, 1, retry_after_s=1.5, **kw) == pytest.approx(1.5)
    assert next_delay(NONE, 1, retry_after_s=0.001, **kw) == pytest.approx(0.02)


def test_gives_up_when_the_deadline_cannot_be_met() -> None:
    """A retry whose wait plus expected latency overruns the deadline is not attempted."""
    kw = {"retry_after_s": None, "rand": 0.5}
    assert next_delay(NONE, 1, remaining_s=0.125, expected_latency_s=0.1, **kw) == pytest.approx(
        0.02
    )
    assert next_delay(NONE, 1, remaining_s=0.11, expected_latency_s=0.1, **kw) is None
    assert next_delay(NONE, 1, remaining_s=-1.0, expected_latency_s=0.0, **kw) is None
    assert (
        next_delay(NONE, 1, retry_after_s=1.0, remaining_s=0.5, expected_latency_s=0.0, rand=0.5)
        is None
    )


@pytest.mark.parametrize(("attempt", "rand"), [(0, 0.5), (1, 1.0), (1, -0.1)])
def test_invalid_attempt_or_rand_is_rejected(attempt: int, rand: float) -> None:
    """attempt is 1-based and rand is in [0, 1)."""
    with pytest.raises(ValueError, match=r"attempt|rand"):
        next_delay(
            NONE, attempt, retry_after_s=None, remaining_s=None, expected_latency_s=0, rand=rand
        )


@given(
    st.integers(min_value=1, max_value=30),
    st.floats(min_value=0, max_value=1, exclude_max=True),
    st.one_of(st.none(), st.floats(min_value=0, max_value=5)),
    st.one_of(st.none(), st.floats(min_value=-1, max_value=5)),
    st.floats(min_value=0, max_value=1),
)
def test_a_granted_delay_always_fits_the_deadline(
    attempt: int,
    rand: float,
    retry_after: float | None,
    remaining: float | None,
    latency: float,
) -> None:
    """Whatever the inputs, a returned delay respects Retry-After and leaves room for the call."""
    policy = RetryPolicy(max_attempts=10)
    delay = next_delay(
        policy,
        attempt,
        retry_after_s=retry_after,
        remaining_s=remaining,
        expected_latency_s=latency,
        rand=rand,
    )
    if delay is None:
        return
    assert attempt < policy.max_attempts
    assert delay >= 0
    assert delay <= max(policy.max_delay_ms / 1000, retry_after or 0)
    if retry_after is not None:
        assert delay >= retry_after
    if remaining is not None:
        assert delay + latency <= remaining


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({"max_attempts": 0}, "greater than or equal to 1"),
        ({"base_delay_ms": -1}, "greater than or equal to 0"),
        ({"base_delay_ms": 100, "max_delay_ms": 50}, "below base_delay_ms"),
        ({"jitter": "decorrelated"}, "jitter"),
        ({"retries": 3}, "retries"),
    ],
)
def test_invalid_policies_fail_validation(data: dict[str, object], why: str) -> None:
    """Out-of-range or unknown policy settings are rejected at start."""
    with pytest.raises(ValidationError, match=why):
        RetryPolicy.model_validate(data)


def test_default_policy() -> None:
    """Defaults: 3 attempts, 20 ms base, 500 ms cap, full jitter."""
    assert RetryPolicy() == RetryPolicy(
        max_attempts=3, base_delay_ms=20, max_delay_ms=500, jitter="full"
    )
