"""Token and permission error paths over HTTP: each fails if its check is removed."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import aiohttp
import orjson
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from multidict import CIMultiDict

from streamproc.emulator import EmulatorHandle
from streamproc.emulator.tokens import generate_key
from tests.fixtures.emulator import EmulatorFactory
from tests.integration.emulator.helpers import (
    ADMIN,
    DEVELOPER,
    FRAUD_PATH,
    access,
    assert_error,
    call,
    claims,
    fraud_input,
    login,
    wait_until,
)

pytestmark = pytest.mark.integration

LIST = "/orchestrator/v1/hotbot/config"
CREATE = "/orchestrator/v1/hotbot/config/create"
ACCESS = "/orchestrator/v1/hotbot/config/accessdetails"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def list_status(session: aiohttp.ClientSession, base: str, token: str) -> tuple[int, dict]:
    return await call(session, "POST", base + LIST, {}, headers={"X-Authorization": token})


async def test_expired_token_is_401(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A genuinely signed token past its exp is refused with TOKEN_EXPIRED."""
    key = generate_key()
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    emulator = emulator_factory(private_key_file=str(pem))
    live = claims(await login(session, emulator.url, {**ADMIN, "multipleLogin": True}))
    now = int(time.time())
    expired_claims = {**live, "iat": now - 1300, "exp": now - 100}
    signing_input = f"eyJhbGciOiJSUzUxMiJ9.{b64(orjson.dumps(expired_claims))}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA512())
    expired = f"{signing_input}.{b64(signature)}"
    assert_error(*await list_status(session, emulator.url, expired), 401, "TOKEN_EXPIRED")


async def test_short_token_ttl_expires_tokens(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    """token_ttl_seconds=1 makes a login token invalid about a second later."""
    emulator = emulator_factory(token_ttl_seconds=1)
    token = await login(session, emulator.url)
    assert claims(token)["exp"] - claims(token)["iat"] == 1

    async def invalid() -> bool:
        _, body = await call(
            session, "GET", f"{emulator.url}/v1/authentication/token?token={token}"
        )
        return body == {"valid": False}

    await wait_until(invalid, within=5)
    assert_error(*await list_status(session, emulator.url, token), 401, "TOKEN_EXPIRED")


async def test_token_of_another_emulator_is_forged(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    """A token signed by another key (another emulator) is refused."""
    one, other = emulator_factory(), emulator_factory()
    token = await login(session, other.url)
    assert_error(*await list_status(session, one.url, token), 401, "INVALID_TOKEN")


async def test_alg_none_token_is_refused(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """An unsigned token (alg none) carrying valid claims is refused."""
    genuine = await login(session, emulator.url)
    _, payload, _ = genuine.split(".")
    none_header = b64(b'{"alg":"none"}')
    unsigned = f"{none_header}.{payload}."
    assert_error(*await list_status(session, emulator.url, unsigned), 401, "INVALID_TOKEN")
    assert (await list_status(session, emulator.url, genuine))[0] == 200


async def test_execution_token_of_another_bot_is_401(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    """The Fraud Score task's execution token cannot execute the Zip Code task."""
    emulator = emulator_factory(
        allocations=[{"fileId": 201, "concurrencyLimit": 2}, {"fileId": 149}]
    )
    token = await login(session, emulator.url, DEVELOPER)
    _, fraud_token = await access(session, emulator.url, token, FRAUD_PATH)
    status, body = await call(
        session,
        "POST",
        f"{emulator.url}/hotbot/149/execute",
        {"botInput": {"iStrZipCode": {"type": "STRING", "string": "76131"}}},
        headers={"X-Authorization": fraud_token},
    )
    assert_error(status, body, 401, "INVALID_TOKEN")
    assert "another API Task" in body["message"]


async def test_login_token_cannot_execute(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """execute needs the execution token; a login token is 401."""
    token = await login(session, emulator.url)
    status, body = await call(
        session,
        "POST",
        f"{emulator.url}/hotbot/201/execute",
        fraud_input(),
        headers={"X-Authorization": token},
    )
    assert_error(status, body, 401, "INVALID_TOKEN")
    status, body = await call(session, "POST", f"{emulator.url}/hotbot/201/execute", fraud_input())
    assert_error(status, body, 401, "AUTHENTICATION_REQUIRED")


async def test_logged_out_token_is_401(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """After logout (204) the token is refused and reported invalid."""
    token = await login(session, emulator.url)
    async with session.post(
        f"{emulator.url}/v1/authentication/logout", headers={"X-Authorization": token}
    ) as response:
        assert response.status == 204
    assert_error(*await list_status(session, emulator.url, token), 401, "INVALID_TOKEN")
    _, body = await call(session, "GET", f"{emulator.url}/v1/authentication/token?token={token}")
    assert body == {"valid": False}


async def test_logout_with_the_token_in_the_body(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """The body form {"token"} also logs out."""
    token = await login(session, emulator.url, {**ADMIN, "multipleLogin": True})
    status, _ = await call(
        session, "POST", f"{emulator.url}/v1/authentication/logout", {"token": token}
    )
    assert status == 204
    assert (await list_status(session, emulator.url, token))[0] == 401


async def test_second_single_session_login_invalidates_the_first(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """Only one non-multi session per user: the older token gets 401 SESSION_REPLACED."""
    first = await login(session, emulator.url)
    multi = await login(session, emulator.url, {**ADMIN, "multipleLogin": True})
    second = await login(session, emulator.url, ADMIN, version="v2")
    assert_error(*await list_status(session, emulator.url, first), 401, "SESSION_REPLACED")
    assert (await list_status(session, emulator.url, second))[0] == 200
    assert (await list_status(session, emulator.url, multi))[0] == 200


async def test_api_key_login_is_multi_session(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """API-key tokens survive later logins."""
    key = {"username": "cr-admin", "apiKey": "EMULATOR-FAKE-API-KEY-FOR-CR-ADMIN-00000"}
    keyed = await login(session, emulator.url, key)
    await login(session, emulator.url)
    await login(session, emulator.url, key)
    assert claims(keyed)["multipleLogin"] is True
    assert (await list_status(session, emulator.url, keyed))[0] == 200


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"username": "cr-admin", "password": "cr-admin-password", "apiKey": "x" * 40}, 400),
        ({"username": "cr-admin"}, 400),
        ({"username": "cr-admin", "password": "wrong"}, 401),
        ({"username": "ghost", "password": "cr-admin-password"}, 401),
    ],
)
async def test_bad_logins(
    emulator: EmulatorHandle, session: aiohttp.ClientSession, body: dict[str, str], status: int
) -> None:
    """Both or neither credential is 400; wrong credentials are 401; no secret is echoed."""
    for version in ("v1", "v2"):
        got, answer = await call(session, "POST", f"{emulator.url}/{version}/authentication", body)
        assert_error(got, answer, status)
        assert "wrong" not in orjson.dumps(answer).decode()
        assert "cr-admin-password" not in orjson.dumps(answer).decode()


async def test_both_auth_headers_at_once_is_400(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """X-Authorization and Authorization: Bearer together are refused, on every endpoint kind."""
    token = await login(session, emulator.url)
    both = {"X-Authorization": token, "Authorization": f"Bearer {token}"}
    status, body = await call(session, "POST", emulator.url + LIST, {}, headers=both)
    assert_error(status, body, 400, "INVALID_REQUEST")
    url, execution = await access(session, emulator.url, token)
    status, body = await call(
        session,
        "POST",
        url,
        fraud_input(),
        headers={"X-Authorization": execution, "Authorization": f"Bearer {execution}"},
    )
    assert_error(status, body, 400)


async def test_an_auth_header_sent_twice_is_400(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """Two X-Authorization headers, even the admin's and a developer's, are refused with 400."""
    admin = await login(session, emulator.url, {**ADMIN, "multipleLogin": True})
    developer = await login(session, emulator.url, {**DEVELOPER, "multipleLogin": True})
    for first, second in ((developer, admin), (admin, admin)):
        headers = CIMultiDict([("X-Authorization", first), ("X-Authorization", second)])
        async with session.post(emulator.url + LIST, json={}, headers=headers) as response:
            assert_error(response.status, await response.json(), 400, "INVALID_REQUEST")


async def test_logout_cannot_end_another_users_session(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """A developer's logout naming the admin's token in its body is 403; the admin goes on."""
    admin = await login(session, emulator.url, {**ADMIN, "multipleLogin": True})
    developer = await login(session, emulator.url, {**DEVELOPER, "multipleLogin": True})
    status, body = await call(
        session,
        "POST",
        f"{emulator.url}/v1/authentication/logout",
        {"token": admin},
        headers={"X-Authorization": developer},
    )
    assert_error(status, body, 403, "FORBIDDEN")
    assert (await list_status(session, emulator.url, admin))[0] == 200


async def test_bearer_tokens(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    """An emulator JWT and a configured static OAuth token both work as Bearer tokens."""
    users = [
        {"id": 1, "username": "cr-admin", "password": "p", "roles": ["AAE_Admin"],
         "oauth_tokens": ["oauth-admin-token"]},
    ]  # fmt: skip
    emulator = emulator_factory(users=users)
    token = await login(session, emulator.url, {"username": "cr-admin", "password": "p"})
    for bearer in (token, "oauth-admin-token"):
        status, _ = await call(
            session, "POST", emulator.url + LIST, {}, headers={"Authorization": f"Bearer {bearer}"}
        )
        assert status == 200
    status, body = await call(
        session, "POST", emulator.url + LIST, {}, headers={"Authorization": "Bearer nope"}
    )
    assert_error(status, body, 401)


async def test_admin_endpoints_refuse_non_admins(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """The bot developer gets 403 on create and list, but may request access details."""
    token = await login(session, emulator.url, DEVELOPER)
    headers = {"X-Authorization": token}
    status, body = await call(session, "PUT", emulator.url + CREATE, {"fileId": 5}, headers=headers)
    assert_error(status, body, 403, "FORBIDDEN")
    status, body = await call(session, "POST", emulator.url + LIST, {}, headers=headers)
    assert_error(status, body, 403, "FORBIDDEN")
    await access(session, emulator.url, token)


async def test_accessdetails_needs_a_developer_or_admin_role(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    """A user with neither role gets 403 from accessdetails."""
    emulator = emulator_factory(
        users=[{"id": 9, "username": "viewer", "password": "pw", "roles": ["AAE_Basic"]}]
    )
    token = await login(session, emulator.url, {"username": "viewer", "password": "pw"})
    status, body = await call(
        session,
        "POST",
        emulator.url + ACCESS,
        {"botRepositoryPath": [FRAUD_PATH]},
        headers={"X-Authorization": token},
    )
    assert_error(status, body, 403)


async def test_missing_or_garbage_tokens_are_401(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """No header, an empty header, garbage and a non-Bearer scheme are all 401."""
    for headers in ({}, {"X-Authorization": ""}, {"X-Authorization": "x.y.z"},
                    {"Authorization": "Basic Y3I6cHc="}):  # fmt: skip
        status, body = await call(session, "POST", emulator.url + LIST, {}, headers=headers)
        assert_error(status, body, 401)


async def test_refresh_on_v1_and_v2(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """Refresh answers a new working token; a logged-out token cannot be refreshed."""
    token = await login(session, emulator.url, {**ADMIN, "multipleLogin": True})
    for version in ("v1", "v2"):
        status, body = await call(
            session,
            "POST",
            f"{emulator.url}/{version}/authentication/token",
            {"token": token},
            headers={"X-Authorization": token},
        )
        assert status == 200
        assert body["token"] != token
        assert (await list_status(session, emulator.url, body["token"]))[0] == 200
    await call(
        session,
        "POST",
        f"{emulator.url}/v1/authentication/logout",
        headers={"X-Authorization": token},
    )
    status, body = await call(
        session,
        "POST",
        f"{emulator.url}/v1/authentication/token",
        {"token": token},
        headers={"X-Authorization": token},
    )
    assert_error(status, body, 401)


async def test_validate_needs_the_token_parameter(
    emulator: EmulatorHandle, session: aiohttp.ClientSession
) -> None:
    """validate answers {"valid": true} for a live token and 400 without one."""
    token = await login(session, emulator.url)
    _, body = await call(session, "GET", f"{emulator.url}/v1/authentication/token?token={token}")
    assert body == {"valid": True}
    status, body = await call(session, "GET", f"{emulator.url}/v1/authentication/token")
    assert_error(status, body, 400)
