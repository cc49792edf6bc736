"""RS512 JSON Web Tokens shaped like the Control Room's, signed and verified with ``cryptography``.

Header ``{"alg":"RS512"}`` (byte for byte the Control Room's), payload ``sub`` (user id as a
string), ``tenantUuid``, ``clientType`` ``"WEB"``, ``multipleLogin``, ``iat``, ``exp``,
``iss`` ``"AutomationAnywhere"``, ``nanoTime``; execution tokens add ``botId``.

RSA verification costs tens of microseconds, far too much for every execute, so verified
claims are cached under the full token string until they expire. Only a token that verified
is cached, so a forged token is checked in full every time. Revoking (logout) drops the cache
entry and remembers the token until its own expiry.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from streamproc.errors import ConfigError

ISSUER = "AutomationAnywhere"
CLIENT_TYPE = "WEB"
_HEADER_B64 = "eyJhbGciOiJSUzUxMiJ9"  # base64url of {"alg":"RS512"}
_SEGMENT = re.compile(r"^[A-Za-z0-9_-]*$")
MAX_TOKEN_CHARS = 8192
_MIN_KEY_BITS = 2048


class TokenError(Exception):
    """The token is not acceptable; ``code`` and ``message`` are safe to send to the client."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


@dataclass(frozen=True, slots=True)
class Claims:
    """The verified payload of an emulator token."""

    user_id: int
    multiple_login: bool
    iat: int
    exp: int
    nano_time: int
    bot_id: int | None


def generate_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=_MIN_KEY_BITS)


def load_key(path: Path) -> rsa.RSAPrivateKey:
    """An unencrypted PEM RSA private key of at least 2048 bits, or ConfigError."""
    key_name = "private_key_file"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(key_name, f"cannot read {str(path)!r}: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(key_name, f"{str(path)!r} is not an unencrypted PEM private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(key_name, f"{str(path)!r} holds a non-RSA key; RS512 needs RSA")
    if key.key_size < _MIN_KEY_BITS:
        raise ConfigError(key_name, f"RSA key has {key.key_size} bits; at least 2048 required")
    return key


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(segment: str) -> bytes:
    if not _SEGMENT.match(segment):
        raise TokenError("INVALID_TOKEN", "token is not a well-formed JWT")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("INVALID_TOKEN", "token is not a well-formed JWT") from None


class TokenService:
    """Issues and verifies the emulator's JWTs; one per running emulator."""

    def __init__(
        self,
        private_key: rsa.RSAPrivateKey,
        tenant_uuid: str,
        *,
        clock: Callable[[], float] = time.time,
        cache_limit: int = 100_000,
    ) -> None:
        self._private_key = private_key
        self._public_key = private_key.public_key()
        self._tenant_uuid = tenant_uuid
        self._clock = clock
        self._cache: dict[str, Claims] = {}
        self._cache_limit = cache_limit
        self._revoked: dict[str, int] = {}
        self._last_nano = 0

    def __repr__(self) -> str:
        return f"TokenService(tenant_uuid={self._tenant_uuid!r}, cached={len(self._cache)})"

    @property
    def tenant_uuid(self) -> str:
        return self._tenant_uuid

    def now(self) -> float:
        return self._clock()

    def issue(
        self,
        *,
        user_id: int,
        ttl_seconds: int,
        multiple_login: bool,
        bot_id: int | None = None,
    ) -> tuple[str, Claims]:
        """A signed token and its claims; ``bot_id`` makes it an execution token."""
        iat = int(self._clock())
        self._last_nano = max(self._last_nano + 1, time.monotonic_ns())
        payload: dict[str, Any] = {
            "sub": str(user_id),
            "tenantUuid": self._tenant_uuid,
            "clientType": CLIENT_TYPE,
            "multipleLogin": multiple_login,
        }
        if bot_id is not None:
            payload["botId"] = bot_id
        payload.update(iat=iat, exp=iat + ttl_seconds, iss=ISSUER, nanoTime=self._last_nano)
        signing_input = f"{_HEADER_B64}.{_b64encode(orjson.dumps(payload))}"
        signature = self._private_key.sign(
            signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA512()
        )
        token = f"{signing_input}.{_b64encode(signature)}"
        return token, Claims(
            user_id, multiple_login, iat, iat + ttl_seconds, self._last_nano, bot_id
        )

    def verify(self, token: str) -> Claims:
        """The claims of a genuine, unexpired, unrevoked token; TokenError otherwise."""
        claims = self._cache.get(token)
        if claims is not None:
            if claims.exp <= self._clock():
                del self._cache[token]
                raise TokenError("TOKEN_EXPIRED", "token has expired; authenticate again")
            return claims
        if token in self._revoked:
            raise TokenError("INVALID_TOKEN", "token has been logged out")
        claims = self._verify_signed(token)
        if claims.exp <= self._clock():
            raise TokenError("TOKEN_EXPIRED", "token has expired; authenticate again")
        if len(self._cache) >= self._cache_limit:
            self._cache.clear()
        self._cache[token] = claims
        return claims

    def revoke(self, token: str, claims: Claims) -> None:
        """Reject ``token`` from now on (logout, or a newer single session)."""
        self._cache.pop(token, None)
        now = self._clock()
        if len(self._revoked) >= self._cache_limit:
            self._revoked = {t: exp for t, exp in self._revoked.items() if exp > now}
        self._revoked[token] = claims.exp

    def _verify_signed(self, token: str) -> Claims:
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise TokenError("INVALID_TOKEN", "token is not a well-formed JWT")
        header_b64, payload_b64, signature_b64 = token.split(".")
        header = self._decode_json(header_b64)
        if header.get("alg") != "RS512":
            raise TokenError("INVALID_TOKEN", "token is not signed with RS512")
        signature = _b64decode(signature_b64)
        try:
            self._public_key.verify(
                signature,
                f"{header_b64}.{payload_b64}".encode("ascii"),
                padding.PKCS1v15(),
                hashes.SHA512(),
            )
        except InvalidSignature:
            raise TokenError("INVALID_TOKEN", "token signature does not verify") from None
        return self._claims(self._decode_json(payload_b64))

    @staticmethod
    def _decode_json(segment: str) -> dict[str, Any]:
        try:
            value = orjson.loads(_b64decode(segment))
        except orjson.JSONDecodeError:
            raise TokenError("INVALID_TOKEN", "token is not a well-formed JWT") from None
        if not isinstance(value, dict):
            raise TokenError("INVALID_TOKEN", "token is not a well-formed JWT")
        return value

    def _claims(self, payload: dict[str, Any]) -> Claims:
        sub, bot_id = payload.get("sub"), payload.get("botId")
        iat, exp, nano = (payload.get(k) for k in ("iat", "exp", "nanoTime"))
        if not (
            payload.get("iss") == ISSUER
            and payload.get("tenantUuid") == self._tenant_uuid
            and isinstance(sub, str)
            and sub.isascii()
            and sub.isdigit()
            and isinstance(payload.get("multipleLogin"), bool)
            and _is_int(iat)
            and _is_int(exp)
            and _is_int(nano)
            and (bot_id is None or _is_int(bot_id))
        ):
            # Only a token this emulator signed gets here, so this is a claims-format drift.
            raise TokenError("INVALID_TOKEN", "token claims are not those of this Control Room")
        return Claims(int(sub), payload["multipleLogin"], iat, exp, nano, bot_id)


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
