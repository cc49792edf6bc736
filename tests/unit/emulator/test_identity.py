"""Logins, sessions and request authentication, by direct calls."""

from __future__ import annotations

from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from pydantic import SecretStr

from streamproc.emulator.identity import Identity, header_token
from streamproc.emulator.problems import ApiError
from streamproc.emulator.settings import UserSettings, default_users
from streamproc.emulator.tokens import TokenService, generate_key

TENANT = "5e0c4d7a-1f52-4c6e-9a1b-3e6d0c0ffee0"
ADMIN = {"username": "cr-admin", "password": "cr-admin-password"}
DEV = {"username": "bot-developer", "password": "bot-developer-password"}
OAUTH = "static-oauth-token-for-tests"


@pytest.fixture(scope="module")
def tokens() -> TokenService:
    return TokenService(generate_key(), TENANT)


@pytest.fixture
def identity(tokens: TokenService) -> Identity:
    users = (
        *default_users(),
        UserSettings(
            id=7,
            username="single",
            password=SecretStr("single-password"),
            roles=("AAE_Basic",),
            multiple_login_allowed=False,
            oauth_tokens=(SecretStr(OAUTH),),
        ),
    )
    return Identity(users, tokens, token_ttl_seconds=60, execution_token_ttl_seconds=600)


def status_of(call: Any, *args: Any) -> tuple[int, str]:
    with pytest.raises(ApiError) as info:
        call(*args)
    return info.value.status, info.value.code


def xauth(token: str) -> dict[str, str]:
    return {"X-Authorization": token}


def test_password_login_returns_token_and_user(identity: Identity) -> None:
    """A password login answers the token and the user with id, names and roles."""
    answer = identity.login(ADMIN)
    user = answer["user"]
    assert (user["id"], user["username"], user["firstName"], user["lastName"]) == (
        1, "cr-admin", "Control Room", "Admin"
    )  # fmt: skip
    assert user["roles"] == [{"name": "AAE_Admin", "id": 1, "version": 0}]
    assert identity.check_token(answer["token"]).user.id == 1


def test_api_key_login_is_always_multi_session(identity: Identity) -> None:
    """apiKey logins stay valid when the user logs in again; multipleLogin does not matter."""
    key = {"username": "cr-admin", "apiKey": "EMULATOR-FAKE-API-KEY-FOR-CR-ADMIN-00000"}
    first = identity.login({**key, "multipleLogin": False})["token"]
    identity.login(ADMIN)
    identity.login(key)
    assert identity.check_token(first).claims.multiple_login  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "body",
    [
        {"username": "cr-admin"},
        {"username": "cr-admin", "password": "x", "apiKey": "y"},
        {"password": "cr-admin-password"},
        {"username": "", "password": "x"},
        {"username": 5, "password": "x"},
        {"username": "cr-admin", "password": 5},
        {"username": "cr-admin", "password": "cr-admin-password", "multipleLogin": "yes"},
    ],
)
def test_malformed_login_bodies_are_400(identity: Identity, body: dict[str, Any]) -> None:
    """Both or neither of password and apiKey, or a wrong type, is a 400."""
    assert status_of(identity.login, body)[0] == 400


@pytest.mark.parametrize(
    "body",
    [
        {"username": "cr-admin", "password": "wrong"},
        {"username": "nobody", "password": "cr-admin-password"},
        {"username": "cr-admin", "apiKey": "EMULATOR-FAKE-API-KEY-FOR-BOT-DEVELOPER0"},
        {"username": "single", "apiKey": "x" * 40},
    ],
)
def test_wrong_credentials_are_401(identity: Identity, body: dict[str, Any]) -> None:
    """Unknown users, wrong passwords and keys, and keyless users are 401."""
    assert status_of(identity.login, body) == (401, "INVALID_CREDENTIALS")


def test_wrong_password_message_does_not_echo_it(identity: Identity) -> None:
    """The 401 message names what was wrong without quoting the secret."""
    with pytest.raises(ApiError) as info:
        identity.login({"username": "cr-admin", "password": "hunter2-secret"})
    assert "hunter2-secret" not in str(info.value.body())


def test_new_single_session_login_ends_the_previous_one(identity: Identity) -> None:
    """A second password login without multipleLogin invalidates the first token."""
    first = identity.login(DEV)["token"]
    multi = identity.login({**DEV, "multipleLogin": True})["token"]
    second = identity.login(DEV)["token"]
    assert status_of(identity.check_token, first) == (401, "SESSION_REPLACED")
    assert identity.check_token(second).user.username == "bot-developer"
    assert identity.check_token(multi).user.username == "bot-developer"


def test_multiple_login_needs_the_user_flag(identity: Identity) -> None:
    """multipleLogin with a password is 403 for a user not allowed multiple sessions."""
    body = {"username": "single", "password": "single-password", "multipleLogin": True}
    assert status_of(identity.login, body) == (403, "MULTIPLE_LOGIN_NOT_ALLOWED")


def test_header_token_rules() -> None:
    """X-Authorization or Bearer; both together is 400; a non-Bearer scheme is 401."""
    assert header_token({"X-Authorization": " t "}) == "t"
    assert header_token({"Authorization": "bearer  t"}) == "t"
    assert header_token({}) is None
    assert status_of(header_token, {"X-Authorization": "a", "Authorization": "Bearer b"})[0] == 400
    assert status_of(header_token, {"Authorization": "Basic abc"})[0] == 401
    assert status_of(header_token, {"Authorization": "Bearer "})[0] == 401


@pytest.mark.parametrize("name", ["X-Authorization", "Authorization"])
def test_an_auth_header_sent_twice_is_400(name: str) -> None:
    """Two X-Authorization (or Authorization) headers are refused, not chosen between."""
    twice = CIMultiDict([(name, "Bearer a"), (name, "Bearer a")])
    assert status_of(header_token, CIMultiDictProxy(twice)) == (400, "INVALID_REQUEST")


def test_authenticate_accepts_bearer_jwt_and_static_oauth_token(identity: Identity) -> None:
    """An emulator JWT or a configured OAuth token works as a bearer token."""
    token = identity.login(ADMIN)["token"]
    assert identity.authenticate({"Authorization": f"Bearer {token}"}).user.id == 1
    principal = identity.authenticate({"Authorization": f"Bearer {OAUTH}"})
    assert principal.user.username == "single"
    assert principal.claims is None
    assert status_of(identity.authenticate, {})[0] == 401


def test_execution_token_is_refused_by_control_room_endpoints(identity: Identity) -> None:
    """A token with botId cannot authenticate admin or accessdetails calls."""
    principal = identity.check_token(identity.login(ADMIN)["token"])
    execution = identity.execution_token(principal, 201)
    assert status_of(identity.check_token, execution) == (401, "INVALID_TOKEN")


def test_verify_execution_checks_the_bot(identity: Identity) -> None:
    """An execution token executes only its own API Task; a login token executes nothing."""
    login = identity.login(ADMIN)["token"]
    execution = identity.execution_token(identity.check_token(login), 201)
    assert identity.verify_execution(execution, "201").bot_id == 201
    assert status_of(identity.verify_execution, execution, "149")[0] == 401
    assert status_of(identity.verify_execution, login, "201")[0] == 401


def test_refresh_issues_a_new_token_of_the_same_kind(identity: Identity) -> None:
    """Refreshing a single session moves the session to the new token."""
    old = identity.login(DEV)["token"]
    new = identity.refresh(identity.check_token(old), {"token": old})
    assert new != old
    assert identity.check_token(new).claims.multiple_login is False  # type: ignore[union-attr]
    assert status_of(identity.check_token, old)[1] == "SESSION_REPLACED"


def test_refresh_of_another_users_token_is_403(identity: Identity) -> None:
    """The header's user may refresh only their own token."""
    admin = identity.check_token(identity.login({**ADMIN, "multipleLogin": True})["token"])
    dev = identity.login({**DEV, "multipleLogin": True})["token"]
    assert status_of(identity.refresh, admin, {"token": dev})[0] == 403
    assert status_of(identity.refresh, admin, {"token": 5})[0] == 400


def test_logout_revokes_header_and_body_tokens(identity: Identity) -> None:
    """Logout ends the header token, and the body's token when given."""
    a = identity.login({**ADMIN, "multipleLogin": True})["token"]
    b = identity.login({**ADMIN, "multipleLogin": True})["token"]
    identity.logout(xauth(a), {"token": b})
    assert status_of(identity.check_token, a)[0] == 401
    assert status_of(identity.check_token, b)[0] == 401
    assert status_of(identity.logout, {}, {})[0] == 401


def test_logout_of_another_users_token_is_403_and_ends_nothing(identity: Identity) -> None:
    """A body token of another user than the header's is refused; both sessions go on."""
    admin = identity.login({**ADMIN, "multipleLogin": True})["token"]
    dev = identity.login({**DEV, "multipleLogin": True})["token"]
    assert status_of(identity.logout, xauth(dev), {"token": admin})[0] == 403
    assert identity.check_token(admin).user.username == "cr-admin"
    assert identity.check_token(dev).user.username == "bot-developer"


def test_logout_of_a_static_oauth_token(identity: Identity) -> None:
    """A logged-out static OAuth token is refused afterwards."""
    identity.logout({"Authorization": f"Bearer {OAUTH}"}, {})
    assert status_of(identity.check_token, OAUTH)[0] == 401


def test_is_valid(identity: Identity) -> None:
    """Live login and execution tokens are valid; garbage and logged-out tokens are not."""
    login = identity.login({**ADMIN, "multipleLogin": True})["token"]
    execution = identity.execution_token(identity.check_token(login), 201)
    assert identity.is_valid(login)
    assert identity.is_valid(execution)
    assert not identity.is_valid("garbage")
    identity.logout(xauth(login), {})
    assert not identity.is_valid(login)


def test_repr_names_users_only(identity: Identity) -> None:
    """No password, key or token shows in the repr."""
    text = repr(identity)
    assert "cr-admin" in text
    assert "password" not in text
    assert OAUTH not in text
