"""The Control Room session: obtain a token, keep it fresh, and put it in exactly one header.

Password and API-key credentials log in at ``POST {cr}/v2/authentication`` (or ``/v1``) and
the JWT goes out as ``X-Authorization``; bearer credentials go out as
``Authorization: Bearer`` and are never exchanged. The token is refreshed through a
:class:`~streamproc.controlroom.tokens.SingleFlight`, so concurrent callers share one login.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import orjson
from pydantic import SecretStr
from structlog.typing import FilteringBoundLogger

from streamproc.controlroom.credentials import BearerCredentials, Credentials
from streamproc.controlroom.http_errors import error_for_status, public_url
from streamproc.controlroom.tokens import Clock, Lease, RefreshPolicy, SingleFlight, jwt_claims
from streamproc.controlroom.tokens import jwt_expiry as read_expiry
from streamproc.controlroom.transport_httpx import map_httpx_errors
from streamproc.errors import ControlRoomError
from streamproc.logs import get_logger

AuthVersion = Literal["v1", "v2"]


def log() -> FilteringBoundLogger:
    # Looked up per event (these are rare: logins, refreshes, rejections) so the current
    # logging configuration applies, not whichever one was active at first use.
    return get_logger("controlroom.auth")


@dataclass(frozen=True, slots=True)
class AuthToken:
    """A token, whose it is, and when it expires (epoch seconds; None when unreadable)."""

    token: SecretStr = field(repr=False)
    expires_at: float | None
    user: Mapping[str, Any] = field(default_factory=dict)

    def header(self, bearer: bool) -> tuple[str, str]:
        """The single auth header for this token: never both kinds on one request."""
        secret = self.token.get_secret_value()
        return ("Authorization", f"Bearer {secret}") if bearer else ("X-Authorization", secret)


class Authenticator:
    """Logs in lazily and ahead of expiry; one login in flight however many callers wait."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        credentials: Credentials,
        *,
        auth_version: AuthVersion,
        policy: RefreshPolicy,
        clock: Clock,
    ) -> None:
        if auth_version not in ("v1", "v2"):
            raise ValueError(f"auth_version must be 'v1' or 'v2', not {auth_version!r}")
        self._http = http
        self._credentials = credentials
        self._login_url = f"{base_url}/{auth_version}/authentication"
        self._policy = policy
        self._clock = clock
        self._bearer = isinstance(credentials, BearerCredentials)
        self._cache: SingleFlight[AuthToken] = SingleFlight(self._obtain, clock)
        self.logins = 0  # how many tokens were obtained: observability and tests

    @property
    def bearer(self) -> bool:
        return self._bearer

    @property
    def current(self) -> AuthToken | None:
        lease = self._cache.current
        return lease.value if lease is not None else None

    async def lease(self) -> Lease[AuthToken]:
        """A fresh token lease: cached, or obtained now (joining a login already running)."""
        return await self._cache.get()

    async def refresh(self) -> Lease[AuthToken]:
        """Obtain a new token now, whatever the cached one's age."""
        return await self._cache.refresh()

    async def rejected(self, lease: Lease[AuthToken]) -> Lease[AuthToken]:
        """The server answered 401 to ``lease``: the lease to replay with (refreshed once)."""
        return await self._cache.invalidate(lease)

    def secrets(self) -> tuple[str, ...]:
        """Every secret this session may have sent, to be masked from error bodies."""
        token = self.current
        current = (token.token.get_secret_value(),) if token is not None else ()
        return self._credentials.secrets() + current

    def headers(self, lease: Lease[AuthToken]) -> dict[str, str]:
        name, value = lease.value.header(self._bearer)
        return {name: value}

    async def aclose(self) -> None:
        await self._cache.aclose()

    async def _obtain(self) -> Lease[AuthToken]:
        if isinstance(self._credentials, BearerCredentials):
            token = await self._credentials.fetch()
            claims = jwt_claims(token.get_secret_value()) or {}
            user: dict[str, Any] = {"id": claims["sub"]} if "sub" in claims else {}
        else:
            token, user = await self._login()
        obtained_at = self._clock()
        expires_at = read_expiry(token.get_secret_value())
        self.logins += 1
        log().info(
            "controlroom_token_obtained",
            kind="bearer" if self._bearer else "login",
            user_id=user.get("id"),
            expires_in_s=None if expires_at is None else round(expires_at - obtained_at, 1),
        )
        return Lease(
            AuthToken(token, expires_at, user),
            obtained_at=obtained_at,
            stale_at=self._policy.refresh_at(obtained_at, expires_at),
        )

    async def _login(self) -> tuple[SecretStr, dict[str, Any]]:
        assert not isinstance(self._credentials, BearerCredentials)
        body = orjson.dumps(self._credentials.login_body())
        url = self._login_url
        with map_httpx_errors("POST", url):
            response = await self._http.post(
                url, content=body, headers={"Content-Type": "application/json"}
            )
        if response.status_code >= 300:
            raise error_for_status(
                response.status_code,
                response.content,
                response.headers,
                method="POST",
                url=url,
                what="authenticate",
                secrets=self._credentials.secrets(),
            )
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            data = None
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise ControlRoomError(
                "malformed response: the authentication response has no token",
                status=response.status_code,
                method="POST",
                url=public_url(url),
            )
        raw_user = data.get("user") if isinstance(data, dict) else None
        user = _public_user(raw_user if isinstance(raw_user, Mapping) else {})
        return SecretStr(token), user


def _public_user(user: Mapping[str, Any]) -> dict[str, Any]:
    """The identity fields worth showing; the rest (roles, licenses) stays with the server."""
    keys = ("id", "username", "email", "domain")
    return {k: user[k] for k in keys if user.get(k) not in (None, "")}
