from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamproc.controlroom.client import ControlRoomClient
from streamproc.controlroom.execute import parse_outputs
from streamproc.controlroom.transport import RawResponse
from streamproc.core.values import NumberValue, StringValue, parse_bot_values
from streamproc.errors import (
    AccessDetailsError,
    AuthError,
    BadOutputError,
    BotValueError,
    ConfigError,
    EndpointTimeoutError,
    OverConcurrencyLimitError,
    PermissionDeniedError,
    ServerError,
)
from tests.unit.controlroom.fakes import (
    EXEC_URL,
    PATH,
    FakeClock,
    FakeControlRoom,
    FakeExecuteTransport,
    Sent,
    output_response,
    status_response,
)

ZIP = {"iStrZipCode": StringValue("76131")}


def reject_tokens(*stale: str, status: int = 401) -> object:
    """A responder that answers ``status`` to the given execution tokens, 200 otherwise."""

    def respond(sent: Sent) -> RawResponse:
        if sent.headers["X-Authorization"] in stale:
            return status_response(status)
        return output_response()

    return respond


async def test_execute_sends_typed_input_and_returns_typed_output(
    client: ControlRoomClient,
) -> None:
    """botInput goes out in wire form with the execution token; botOutput comes back typed."""
    transport = FakeExecuteTransport(
        lambda _s: output_response(
            {
                "State": {"type": "STRING", "string": "California"},
                "Score": {"type": "NUMBER", "number": "0.25", "string": "", "boolean": ""},
            }
        )
    )
    session = client.execution_session(PATH, transport)
    result = await session.execute(
        {**ZIP, "iNumAmount": NumberValue(Decimal("12.50"))}, timeout_s=5.0
    )
    assert result.status == 200
    assert result.outputs == {
        "State": StringValue("California"),
        "Score": NumberValue(Decimal("0.25")),
    }
    assert result.elapsed_s >= 0
    (sent,) = transport.sent
    assert sent.url == EXEC_URL
    assert sent.body == {
        "botInput": {
            "iStrZipCode": {"type": "STRING", "string": "76131"},
            "iNumAmount": {"type": "NUMBER", "number": "12.50"},
        }
    }
    assert sent.headers == {"X-Authorization": "exec-token-1", "Content-Type": "application/json"}
    assert sent.timeout_s == 5.0


async def test_extra_headers_are_added_but_cannot_replace_auth(client: ControlRoomClient) -> None:
    """Idempotency headers are sent; an attempt to set an auth header is refused."""
    transport = FakeExecuteTransport()
    session = client.execution_session(PATH, transport)
    await session.execute(ZIP, timeout_s=5.0, headers={"X-Request-Id": "evt-1", "X-Attempt": "2"})
    assert transport.sent[0].headers["X-Request-Id"] == "evt-1"
    assert transport.sent[0].headers["X-Attempt"] == "2"
    with pytest.raises(ValueError, match="Authorization"):
        await session.execute(ZIP, timeout_s=5.0, headers={"Authorization": "Bearer x"})
    assert len(transport.sent) == 1


@pytest.mark.parametrize("status", [401, 403])
async def test_rejected_execution_token_is_refreshed_once_and_replayed(
    client: ControlRoomClient, fake_cr: FakeControlRoom, status: int
) -> None:
    """A 401 or 403 from /execute fetches new access details and replays with the new token."""
    transport = FakeExecuteTransport(reject_tokens("exec-token-1", status=status))
    session = client.execution_session(PATH, transport)
    result = await session.execute(ZIP, timeout_s=5.0)
    assert result.status == 200
    assert [s.headers["X-Authorization"] for s in transport.sent] == [
        "exec-token-1",
        "exec-token-2",
    ]
    assert fake_cr.accessdetails_calls == 2


@pytest.mark.parametrize(("status", "error"), [(401, AuthError), (403, PermissionDeniedError)])
async def test_rejection_after_refresh_is_raised(
    client: ControlRoomClient, fake_cr: FakeControlRoom, status: int, error: type[Exception]
) -> None:
    """If the refreshed token is rejected as well, the error surfaces after one replay."""
    transport = FakeExecuteTransport(lambda _s: status_response(status))
    session = client.execution_session(PATH, transport)
    with pytest.raises(error):
        await session.execute(ZIP, timeout_s=5.0)
    assert len(transport.sent) == 2
    assert fake_cr.accessdetails_calls == 2


async def test_concurrent_rejections_share_one_access_details_refresh(
    client: ControlRoomClient, fake_cr: FakeControlRoom
) -> None:
    """Thirty in-flight executes all rejected with the old token cause one refresh."""
    release = asyncio.Event()
    waiting = 0

    async def respond(sent: Sent) -> RawResponse:
        nonlocal waiting
        if sent.headers["X-Authorization"] == "exec-token-1":
            waiting += 1
            if waiting == 30:
                release.set()
            await release.wait()
            return status_response(401)
        return output_response()

    session = client.execution_session(PATH, FakeExecuteTransport(respond))
    await session.refresh()
    results = await asyncio.gather(*(session.execute(ZIP, timeout_s=5.0) for _ in range(30)))
    assert all(r.status == 200 for r in results)
    assert fake_cr.accessdetails_calls == 2


async def test_access_details_are_refreshed_every_interval(
    client: ControlRoomClient, fake_cr: FakeControlRoom, clock: FakeClock
) -> None:
    """With a 300 s interval the token in use changes after 300 s, not before."""
    transport = FakeExecuteTransport()
    session = client.execution_session(PATH, transport, refresh_interval_s=300.0)
    await session.execute(ZIP, timeout_s=5.0)
    clock.advance(299)
    await session.execute(ZIP, timeout_s=5.0)
    clock.advance(1)
    await session.execute(ZIP, timeout_s=5.0)
    tokens = [s.headers["X-Authorization"] for s in transport.sent]
    assert tokens == ["exec-token-1", "exec-token-1", "exec-token-2"]
    assert session.refreshes == 2


async def test_failed_routine_refresh_keeps_the_old_details(
    client: ControlRoomClient, fake_cr: FakeControlRoom, clock: FakeClock
) -> None:
    """A 503 during the 5-minute refresh does not stop executes; the old token is kept."""
    transport = FakeExecuteTransport()
    session = client.execution_session(PATH, transport)
    await session.execute(ZIP, timeout_s=5.0)
    fake_cr.overrides["/orchestrator/v1/hotbot/config/accessdetails"] = httpx.Response(503)
    clock.advance(300)
    result = await session.execute(ZIP, timeout_s=5.0)
    assert result.status == 200
    assert transport.sent[-1].headers["X-Authorization"] == "exec-token-1"
    await session.execute(ZIP, timeout_s=5.0)  # within the retry pause: no new attempt
    assert len(fake_cr.requests_to("/accessdetails")) == 2


async def test_first_access_details_failure_is_raised(
    client: ControlRoomClient, fake_cr: FakeControlRoom
) -> None:
    """An unallocated path fails the execute with its AccessDetailsError."""
    fake_cr.exec_paths = set()
    session = client.execution_session(PATH, FakeExecuteTransport())
    with pytest.raises(AccessDetailsError) as caught:
        await session.execute(ZIP, timeout_s=5.0)
    assert caught.value.path == PATH


async def test_429_carries_retry_after_and_is_not_retried(client: ControlRoomClient) -> None:
    """Over the concurrency limit: one attempt only, and the server's Retry-After is kept."""
    transport = FakeExecuteTransport(lambda _s: status_response(429, **{"Retry-After": "2"}))
    session = client.execution_session(PATH, transport)
    with pytest.raises(OverConcurrencyLimitError) as caught:
        await session.execute(ZIP, timeout_s=5.0)
    assert caught.value.retry_after == 2.0
    assert caught.value.retryable
    assert len(transport.sent) == 1


async def test_malformed_success_body_is_a_server_error(client: ControlRoomClient) -> None:
    """A 200 without hotBotResult is reported as a (retryable) server fault."""
    transport = FakeExecuteTransport(lambda _s: RawResponse(200, {}, b"<html>oops</html>"))
    session = client.execution_session(PATH, transport)
    with pytest.raises(ServerError, match="malformed"):
        await session.execute(ZIP, timeout_s=5.0)


async def test_missing_bot_output_means_no_outputs(client: ControlRoomClient) -> None:
    """A task with no output variables answers an empty result, not an error."""
    transport = FakeExecuteTransport(
        lambda _s: RawResponse(200, {}, orjson.dumps({"hotBotResult": {}}))
    )
    session = client.execution_session(PATH, transport)
    assert (await session.execute(ZIP, timeout_s=5.0)).outputs == {}


async def test_timeout_budget_covers_the_replay(client: ControlRoomClient) -> None:
    """The replay after a 401 gets only what is left of timeout_s, never a fresh budget."""
    transport = FakeExecuteTransport(reject_tokens("exec-token-1"))
    session = client.execution_session(PATH, transport)
    await session.execute(ZIP, timeout_s=5.0)
    first, replay = transport.sent
    assert first.timeout_s == 5.0
    assert 0 < replay.timeout_s < 5.0


async def test_an_exhausted_budget_is_a_timeout(client: ControlRoomClient) -> None:
    """With no time left for the first attempt, execute fails with EndpointTimeoutError."""
    session = client.execution_session(PATH, FakeExecuteTransport())
    with pytest.raises(EndpointTimeoutError):
        await session.execute(ZIP, timeout_s=0.0)


async def test_pool_smaller_than_concurrency_is_refused(client: ControlRoomClient) -> None:
    """Asking for more concurrency than the pool has connections is a configuration error."""
    with pytest.raises(ConfigError, match="only moves the queue"):
        client.execution_session(PATH, FakeExecuteTransport(max_connections=8), concurrency=16)
    client.execution_session(PATH, FakeExecuteTransport(max_connections=16), concurrency=16)


async def test_closed_session_refuses_work(client: ControlRoomClient) -> None:
    """After aclose an execute raises instead of silently reopening."""
    async with client.execution_session(PATH, FakeExecuteTransport()) as session:
        await session.execute(ZIP, timeout_s=5.0)
    with pytest.raises(RuntimeError, match="closed"):
        await session.execute(ZIP, timeout_s=5.0)


wire_payloads = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["1", " 2.50 ", "1e3", "NaN", "-Infinity", "sNaN", "1_000", "true", "TRUE"]),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)
scalar_values = st.one_of(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["STRING", "NUMBER", "BOOLEAN", "LIST", "FILE", "BOGUS"])},
        optional={"string": wire_payloads, "number": wire_payloads, "boolean": wire_payloads},
    ),
    st.fixed_dictionaries({}, optional={"string": wire_payloads}),
    wire_payloads,
)
# Reason codes: a LIST of STRINGs, well formed or not, and lists nesting other values.
wire_values = st.one_of(
    scalar_values,
    st.fixed_dictionaries(
        {"type": st.just("LIST")},
        optional={"list": st.one_of(st.lists(scalar_values, max_size=3), wire_payloads)},
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("LIST"),
            "list": st.lists(
                st.fixed_dictionaries(
                    {"string": st.text(max_size=4)},
                    optional={"type": st.sampled_from(["STRING", "STRING", "NUMBER", "LIST"])},
                ),
                max_size=3,
            ),
        }
    ),
)


@given(st.dictionaries(st.text(max_size=5), wire_values, max_size=4))
def test_fast_output_parser_agrees_with_the_general_one(bot_output: dict[str, Any]) -> None:
    """Property: the hot path's output parser gives the same values, or the same error."""
    try:
        expected: Any = parse_bot_values(bot_output, "botOutput")
    except BotValueError as exc:
        expected = ("error", exc.path, exc.problem)
    try:
        got: Any = parse_outputs(bot_output)
    except BotValueError as exc:
        got = ("error", exc.path, exc.problem)
    assert got == expected


async def test_malformed_bot_output_is_a_permanent_bad_output_error(
    client: ControlRoomClient,
) -> None:
    """A 200 whose botOutput holds a malformed value raises BadOutputError naming the variable."""
    transport = FakeExecuteTransport(
        lambda _s: output_response({"oNumScore": {"type": "NUMBER", "number": "high"}})
    )
    session = client.execution_session(PATH, transport)
    with pytest.raises(BadOutputError) as caught:
        await session.execute(ZIP, timeout_s=5.0)
    assert caught.value.variable == "oNumScore"
    assert not caught.value.retryable
    assert isinstance(caught.value.__cause__, BotValueError)
