from __future__ import annotations

import asyncio

import orjson
import pytest
from pydantic import SecretStr

from streamproc.controlroom.client import ControlRoomClient
from streamproc.controlroom.credentials import (
    ApiKeyCredentials,
    BearerCredentials,
    PasswordCredentials,
)
from streamproc.errors import AuthError, ConfigError
from tests.unit.controlroom.conftest import MakeClient
from tests.unit.controlroom.fakes import (
    API_KEY,
    BEARER,
    PASSWORD,
    FakeClock,
    FakeControlRoom,
    alloc,
    make_jwt,
)


async def list_all(client: object) -> list[object]:
    return [a async for a in client.allocations()]  # type: ignore[attr-defined]


async def test_password_login_posts_v2_with_multiple_login(
    make_client: MakeClient, fake_cr: FakeControlRoom
) -> None:
    """By default the client logs in at /v2/authentication with multipleLogin true."""
    client = make_client()
    await client.authenticate()
    (login,) = fake_cr.requests_to("/authentication")
    assert login.url.path == "/v2/authentication"
    assert orjson.loads(login.content) == {
        "username": "bot-developer",
        "password": PASSWORD,
        "multipleLogin": True,
    }
    assert "X-Authorization" not in login.headers
    assert client.token is not None
    assert client.token.user == {"id": 7, "username": "bot-developer"}


async def test_v1_and_api_key_login(make_client: MakeClient, fake_cr: FakeControlRoom) -> None:
    """auth_version v1 uses /v1/authentication; an API key is sent as apiKey, no multipleLogin."""
    client = make_client(ApiKeyCredentials("bot-developer", API_KEY), auth_version="v1")
    await client.authenticate()
    (login,) = fake_cr.requests_to("/authentication")
    assert login.url.path == "/v1/authentication"
    assert orjson.loads(login.content) == {"username": "bot-developer", "apiKey": API_KEY}


async def test_calls_carry_the_login_token_as_x_authorization_only(
    make_client: MakeClient, fake_cr: FakeControlRoom
) -> None:
    """Admin calls log in lazily and send X-Authorization, never Authorization as well."""
    fake_cr.allocations = [alloc(1)]
    client = make_client()
    assert len(await list_all(client)) == 1
    call = fake_cr.requests_to("/hotbot/config")[0]
    assert call.headers["X-Authorization"] == client.token.token.get_secret_value()  # type: ignore[union-attr]
    assert "Authorization" not in call.headers


async def test_bearer_token_is_sent_as_authorization_only(
    make_client: MakeClient, fake_cr: FakeControlRoom
) -> None:
    """A bearer token goes out as Authorization: Bearer, with no login and no X-Authorization."""
    client = make_client(BearerCredentials(BEARER))
    await list_all(client)
    assert fake_cr.requests_to("/authentication") == []
    call = fake_cr.requests_to("/hotbot/config")[0]
    assert call.headers["Authorization"] == f"Bearer {BEARER}"
    assert "X-Authorization" not in call.headers


@pytest.mark.parametrize("is_async", [False, True])
async def test_bearer_provider_is_asked_again_after_a_401(
    make_client: MakeClient, fake_cr: FakeControlRoom, is_async: bool
) -> None:
    """A sync or async provider supplies the token; a 401 makes the client ask it once more."""
    handed_out: list[str] = []

    def next_token() -> SecretStr:
        token = ["stale-token", BEARER][len(handed_out)]
        handed_out.append(token)
        return SecretStr(token)

    async def next_token_async() -> SecretStr:
        return next_token()

    client = make_client(BearerCredentials(provider=next_token_async if is_async else next_token))
    await list_all(client)
    assert handed_out == ["stale-token", BEARER]
    assert fake_cr.requests_to("/hotbot/config")[-1].headers["Authorization"] == f"Bearer {BEARER}"


async def test_token_is_refreshed_ahead_of_expiry(
    make_client: MakeClient, fake_cr: FakeControlRoom, clock: FakeClock
) -> None:
    """A 20-minute token is reused for 19 minutes, then replaced before it expires."""
    client = make_client(refresh_margin_s=60.0)
    await list_all(client)
    first = client.token
    clock.advance(1139)
    await list_all(client)
    assert client.token is first
    assert fake_cr.logins == 1
    clock.advance(1)
    await list_all(client)
    assert fake_cr.logins == 2
    assert client.token is not first
    # No call was ever answered 401: the refresh happened before expiry.
    assert fake_cr.requests_to("/hotbot/config")[-1].headers["X-Authorization"] != (
        first.token.get_secret_value()  # type: ignore[union-attr]
    )


async def test_many_concurrent_callers_cause_one_login(
    make_client: MakeClient, fake_cr: FakeControlRoom
) -> None:
    """Forty concurrent calls on a fresh client share exactly one authentication request."""
    fake_cr.login_gate = asyncio.Event()
    client = make_client()
    tasks = [asyncio.create_task(list_all(client)) for _ in range(40)]
    await fake_cr.login_started.wait()
    fake_cr.login_gate.set()
    await asyncio.gather(*tasks)
    assert len(fake_cr.requests_to("/authentication")) == 1


async def test_a_401_re_authenticates_once_and_replays(
    make_client: MakeClient, fake_cr: FakeControlRoom
) -> None:
    """A token revoked server-side is replaced by one login, and the call succeeds on replay."""
    fake_cr.allocations = [alloc(1)]
    client = make_client()
    await client.authenticate()
    fake_cr.revoke_all()
    assert len(await list_all(client)) == 1
    assert fake_cr.logins == 2
    assert len(fake_cr.requests_to("/hotbot/config")) == 2


async def test_concurrent_401s_share_one_re_authentication(
    make_client: MakeClient, fake_cr: FakeControlRoom
) -> None:
    """Twenty calls rejected with the same revoked token cause a single new login."""
    client = make_client()
    await client.authenticate()
    fake_cr.revoke_all()
    await asyncio.gather(*(list_all(client) for _ in range(20)))
    assert fake_cr.logins == 2


async def test_a_second_401_is_an_auth_error(
    make_client: MakeClient, fake_cr: FakeControlRoom
) -> None:
    """If the replay after re-authenticating is rejected too, the call fails with AuthError."""
    client = make_client()
    await client.authenticate()
    fake_cr.reject_next = 2
    with pytest.raises(AuthError) as caught:
        await list_all(client)
    assert caught.value.status == 401
    assert caught.value.body["code"] == "auth.expired"
    assert fake_cr.logins == 2


async def test_wrong_password_is_an_auth_error_after_one_attempt(
    make_client: MakeClient, fake_cr: FakeControlRoom
) -> None:
    """Bad credentials fail with AuthError carrying the server's message, after one login try."""
    client = make_client(PasswordCredentials("bot-developer", "wrong-password"))
    results = await asyncio.gather(*(list_all(client) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, AuthError) for r in results)
    assert len(fake_cr.requests_to("/authentication")) == 1
    assert "Invalid credentials" in str(results[0])


async def test_opaque_login_token_uses_the_default_lifetime(
    make_client: MakeClient, fake_cr: FakeControlRoom, clock: FakeClock
) -> None:
    """A token without a readable exp is kept for the documented 20 minutes, minus the margin."""
    client = make_client(BearerCredentials(provider=lambda: BEARER))
    await client.authenticate()
    assert client.token is not None
    assert client.token.expires_at is None
    clock.advance(1139)
    await list_all(client)
    assert client.logins == 1
    clock.advance(1)
    await list_all(client)
    assert client.logins == 2


async def test_bearer_jwt_expiry_is_honoured(
    make_client: MakeClient, fake_cr: FakeControlRoom, clock: FakeClock
) -> None:
    """A bearer JWT is reused until shortly before its own exp, then the provider is asked."""
    tokens = [make_jwt(clock() + 100, sub="42"), make_jwt(clock() + 300, sub="42")]
    fake_cr.bearer_tokens.update(tokens)
    calls: list[int] = []

    def provider() -> str:
        calls.append(1)
        return tokens[len(calls) - 1]

    client = make_client(BearerCredentials(provider=provider))
    await list_all(client)
    assert client.token is not None
    assert client.token.user == {"id": "42"}
    clock.advance(89)
    await list_all(client)
    assert len(calls) == 1
    clock.advance(1)
    await list_all(client)
    assert len(calls) == 2


async def test_url_must_be_http() -> None:
    """A Control Room URL without a scheme is a configuration error, not a runtime surprise."""
    with pytest.raises(ConfigError):
        ControlRoomClient("cr.example.test", BearerCredentials(BEARER))
