"""Start-up waits for a broker or Control Room that does not answer yet, within a bound."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from streamproc.app import when_reachable
from streamproc.errors import (
    AuthError,
    EndpointConnectionError,
    KafkaAdminError,
    StartupError,
)


def flaky(
    failures: list[BaseException], result: str = "ok"
) -> tuple[Callable[[], Awaitable[str]], list[int]]:
    calls: list[int] = []

    async def attempt() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return result

    return attempt, calls


async def test_a_dependency_that_answers_later_is_waited_for() -> None:
    """Connection failures and an unreachable broker are retried until the service answers."""
    attempt, calls = flaky(
        [EndpointConnectionError("refused"), KafkaAdminError("no broker", retriable=True)]
    )
    assert await when_reachable("x", attempt, timeout_s=10, first_delay_s=0.001) == "ok"
    assert len(calls) == 3


async def test_a_dependency_that_never_answers_fails_start_up_with_a_clear_error() -> None:
    """Past the start-up timeout the last failure is reported as a StartupError naming what."""
    attempt, _ = flaky([EndpointConnectionError("refused")] * 100)
    with pytest.raises(StartupError, match=r"the Control Room: no answer within 0\.05 s"):
        await when_reachable("the Control Room", attempt, timeout_s=0.05, first_delay_s=0.001)


@pytest.mark.parametrize(
    "error",
    [AuthError("bad password", status=401), KafkaAdminError("topic refused", retriable=False)],
    ids=["refused-credentials", "refused-request"],
)
async def test_errors_that_waiting_cannot_fix_are_raised_at_once(error: Exception) -> None:
    """Refused credentials or a refused request are not retried: waiting would not help."""
    attempt, calls = flaky([error])
    with pytest.raises(type(error)):
        await when_reachable("x", attempt, timeout_s=10, first_delay_s=0.001)
    assert len(calls) == 1
