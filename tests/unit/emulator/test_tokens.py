"""RS512 tokens: their shape, verification, caching, expiry and revocation."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from streamproc.emulator.tokens import TokenError, TokenService, generate_key, load_key
from streamproc.errors import ConfigError

TENANT = "5e0c4d7a-1f52-4c6e-9a1b-3e6d0c0ffee0"


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return generate_key()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(key: rsa.RSAPrivateKey, clock: Clock) -> TokenService:
    return TokenService(key, TENANT, clock=clock)


def b64(obj: object) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode(segment: str) -> dict[str, object]:
    decoded: dict[str, object] = orjson.loads(base64.urlsafe_b64decode(segment + "=="))
    return decoded


def test_auth_token_has_the_control_room_shape(service: TokenService, clock: Clock) -> None:
    """Header {"alg":"RS512"} byte for byte; payload claims as the Control Room's samples."""
    token, claims = service.issue(user_id=380, ttl_seconds=1200, multiple_login=False)
    header, payload, _ = token.split(".")
    assert header == "eyJhbGciOiJSUzUxMiJ9"
    body = decode(payload)
    assert list(body) == [
        "sub", "tenantUuid", "clientType", "multipleLogin", "iat", "exp", "iss", "nanoTime"
    ]  # fmt: skip
    assert body["sub"] == "380"
    assert body["tenantUuid"] == TENANT
    assert body["clientType"] == "WEB"
    assert body["iss"] == "AutomationAnywhere"
    assert body["iat"] == int(clock.now)
    assert body["exp"] == int(clock.now) + 1200
    assert claims.user_id == 380
    assert claims.bot_id is None


def test_execution_token_carries_bot_id(service: TokenService) -> None:
    """Execution tokens add botId (a number) as the documented sample does."""
    token, _ = service.issue(user_id=1, ttl_seconds=43200, multiple_login=True, bot_id=201)
    body = decode(token.split(".")[1])
    assert body["botId"] == 201
    assert body["multipleLogin"] is True
    assert service.verify(token).bot_id == 201


def test_verify_round_trip_and_unique_nano_time(service: TokenService) -> None:
    """Issued tokens verify; two tokens issued in a row differ by nanoTime."""
    first, c1 = service.issue(user_id=1, ttl_seconds=60, multiple_login=True)
    second, c2 = service.issue(user_id=1, ttl_seconds=60, multiple_login=True)
    assert first != second
    assert c1.nano_time < c2.nano_time
    assert service.verify(first) == c1


def test_expired_token_is_refused_even_when_cached(service: TokenService, clock: Clock) -> None:
    """Expiry is checked on every use, cached or not."""
    token, _ = service.issue(user_id=1, ttl_seconds=60, multiple_login=True)
    service.verify(token)  # cached now
    clock.now += 60
    with pytest.raises(TokenError) as info:
        service.verify(token)
    assert info.value.code == "TOKEN_EXPIRED"
    with pytest.raises(TokenError):
        service.verify(token)  # not cached any more, still expired


def test_token_signed_by_another_key_is_forged(service: TokenService, clock: Clock) -> None:
    """A token with the right shape but another key's signature is refused."""
    other = TokenService(generate_key(), TENANT, clock=clock)
    token, _ = other.issue(user_id=1, ttl_seconds=60, multiple_login=True)
    with pytest.raises(TokenError, match="signature"):
        service.verify(token)


def test_tampered_payload_is_refused(service: TokenService) -> None:
    """Changing a claim breaks the signature."""
    token, _ = service.issue(user_id=380, ttl_seconds=60, multiple_login=True)
    header, payload, signature = token.split(".")
    body = decode(payload)
    body["sub"] = "1"
    with pytest.raises(TokenError, match="signature"):
        service.verify(f"{header}.{b64(body)}.{signature}")


@pytest.mark.parametrize("alg", ["none", "HS512", "RS256", None])
def test_other_algorithms_are_refused(service: TokenService, alg: str | None) -> None:
    """alg none (unsigned), HMAC and other algorithms never verify."""
    token, _ = service.issue(user_id=1, ttl_seconds=60, multiple_login=True)
    _, payload, signature = token.split(".")
    header = b64({"alg": alg} if alg else {})
    for forged in (f"{header}.{payload}.", f"{header}.{payload}.{signature}"):
        with pytest.raises(TokenError, match="RS512"):
            service.verify(forged)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "eyJhbGciOiJSUzUxMiJ9.%%%.abc",
        "eyJhbGciOiJSUzUxMiJ9.e30.@@@",
        "bm90IGpzb24.e30.abc",
        b64([1, 2]) + ".e30.abc",
        "eyJhbGciOiJSUzUxMiJ9.e30." + "A" * 9000,
        "eyJhbGciOiJSUzUxMiJ9.e30.A",
        "ё.ж.з",
    ],
)
def test_malformed_tokens_are_refused(service: TokenService, token: str) -> None:
    """Anything that is not three base64url JSON segments is INVALID_TOKEN, never a crash."""
    with pytest.raises(TokenError) as info:
        service.verify(token)
    assert info.value.code == "INVALID_TOKEN"


def test_token_of_another_tenant_is_refused(key: rsa.RSAPrivateKey, clock: Clock) -> None:
    """A genuine signature over another tenant's claims is not this Control Room's token."""
    other = TokenService(key, "00000000-0000-4000-8000-000000000000", clock=clock)
    token, _ = other.issue(user_id=1, ttl_seconds=60, multiple_login=True)
    with pytest.raises(TokenError, match="claims"):
        TokenService(key, TENANT, clock=clock).verify(token)


def test_revoked_token_is_refused(service: TokenService) -> None:
    """After revoke the token fails, even though it was cached before."""
    token, claims = service.issue(user_id=1, ttl_seconds=60, multiple_login=True)
    service.verify(token)
    service.revoke(token, claims)
    with pytest.raises(TokenError, match="logged out"):
        service.verify(token)


def test_repr_holds_no_key_material(service: TokenService) -> None:
    """The service's repr names the tenant only."""
    assert "PRIVATE" not in repr(service)
    assert TENANT in repr(service)


def test_load_key_reads_an_rsa_pem(tmp_path: Path, key: rsa.RSAPrivateKey) -> None:
    """A PEM RSA key loads and signs tokens that verify with it."""
    path = tmp_path / "key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    loaded = load_key(path)
    token, _ = TokenService(loaded, TENANT).issue(user_id=1, ttl_seconds=60, multiple_login=True)
    assert TokenService(key, TENANT).verify(token).user_id == 1


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read"),
        (b"not a pem", "not an unencrypted PEM"),
        (_pem(ec.generate_private_key(ec.SECP256R1())), "non-RSA"),
        (_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)), "2048"),
    ],
)
def test_bad_key_files_fail_at_start(tmp_path: Path, content: bytes | None, problem: str) -> None:
    """Missing, non-PEM, non-RSA and short keys raise ConfigError naming private_key_file."""
    path = tmp_path / "key.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=problem) as info:
        load_key(path)
    assert info.value.key == "private_key_file"
