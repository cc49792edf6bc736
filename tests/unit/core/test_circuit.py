"""The circuit breaker: opens on consecutive unavailability, probes at a bounded rate, closes
on a success, and ignores news from before it started probing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streamproc.core.circuit import CircuitBreaker, CircuitPolicy

POLICY = CircuitPolicy(failure_threshold=3, open_ms=1_000, probe_interval_ms=500)


def opened_at(now: float) -> CircuitBreaker:
    breaker = CircuitBreaker(POLICY)
    for _ in range(3):
        breaker.failed(now, now)
    return breaker


def test_a_new_breaker_is_closed_and_allows_executes() -> None:
    """Closed is the starting state: every execute may start."""
    breaker = CircuitBreaker(POLICY)
    assert breaker.state(0.0) == "closed"
    assert all(breaker.allow(t) for t in (0.0, 0.0, 0.1))
    assert not breaker.refusing(0.0)


def test_it_opens_on_the_threshold_of_consecutive_failures() -> None:
    """Two failures leave it closed; the third in a row opens it and refuses executes."""
    breaker = CircuitBreaker(POLICY)
    assert not breaker.failed(0.0, 0.1)
    assert not breaker.failed(0.0, 0.2)
    assert breaker.state(0.2) == "closed"
    assert breaker.failed(0.0, 0.3)
    assert breaker.state(0.3) == "open"
    assert breaker.refusing(0.3)
    assert not breaker.allow(0.3)
    assert breaker.opened == 1


def test_a_success_between_failures_resets_the_count() -> None:
    """Failures must be consecutive: a success in between starts the count again."""
    breaker = CircuitBreaker(POLICY)
    breaker.failed(0.0, 0.1)
    breaker.failed(0.0, 0.2)
    breaker.succeeded()
    breaker.failed(0.0, 0.3)
    breaker.failed(0.0, 0.4)
    assert breaker.state(0.4) == "closed"


def test_after_open_ms_one_probe_per_interval_is_allowed() -> None:
    """Half-open lets one execute through, then refuses until probe_interval_ms passed."""
    breaker = opened_at(10.0)
    assert not breaker.allow(10.99)
    assert breaker.state(11.0) == "half_open"
    assert not breaker.refusing(11.0)
    assert breaker.allow(11.0)  # the probe
    assert breaker.refusing(11.1)
    assert not breaker.allow(11.1)
    assert not breaker.allow(11.49)
    assert breaker.allow(11.5)  # the next probe


def test_a_probe_success_closes_it() -> None:
    """The endpoint answered: closed, and every execute may start again."""
    breaker = opened_at(10.0)
    assert breaker.allow(11.0)
    assert breaker.succeeded()
    assert breaker.state(11.1) == "closed"
    assert breaker.allow(11.1)
    assert breaker.allow(11.1)


def test_a_probe_failure_opens_it_again_for_open_ms() -> None:
    """A probe that fails re-opens the breaker; the next probe waits a full open_ms."""
    breaker = opened_at(10.0)
    assert breaker.allow(11.0)
    assert breaker.failed(11.0, 11.2)
    assert breaker.state(11.2) == "open"
    assert not breaker.allow(12.1)
    assert breaker.allow(12.2)
    assert breaker.opened == 1  # re-opening from half-open is not a new outage


def test_failures_of_executes_started_before_probing_do_not_reopen_it() -> None:
    """A hang that began during the outage and times out while probing says nothing new."""
    breaker = opened_at(10.0)
    assert breaker.state(11.0) == "half_open"
    assert not breaker.failed(9.5, 11.2)
    assert breaker.state(11.2) == "half_open"


def test_a_late_success_closes_it_even_while_open() -> None:
    """Any answer proves the endpoint answers again."""
    breaker = opened_at(10.0)
    assert breaker.succeeded()
    assert breaker.state(10.1) == "closed"


def test_a_disabled_breaker_never_refuses() -> None:
    """enabled = false: failures are not counted and every execute is allowed."""
    breaker = CircuitBreaker(CircuitPolicy(enabled=False, failure_threshold=1))
    for t in range(10):
        assert not breaker.failed(float(t), float(t))
        assert breaker.allow(float(t))
    assert breaker.state(10.0) == "closed"


@given(
    st.lists(st.tuples(st.sampled_from(["allow", "ok", "fail"]), st.floats(0, 0.4)), max_size=200)
)
def test_while_not_closed_executes_are_at_most_one_per_probe_interval(
    steps: list[tuple[str, float]],
) -> None:
    """Whatever happens, an open or half-open breaker grants executes no more often than
    one per probe interval, and a closed one grants every one."""
    breaker = CircuitBreaker(POLICY)
    now = 0.0
    last_grant_not_closed: float | None = None
    for action, gap in steps:
        now += gap
        if action == "allow":
            state = breaker.state(now)
            granted = breaker.allow(now)
            if state == "closed":
                assert granted
                last_grant_not_closed = None
            elif granted:
                assert state == "half_open"
                if last_grant_not_closed is not None:
                    assert now - last_grant_not_closed >= 0.5 - 1e-9
                last_grant_not_closed = now
        elif action == "ok":
            breaker.succeeded()
            last_grant_not_closed = None
        else:
            breaker.failed(now, now)
