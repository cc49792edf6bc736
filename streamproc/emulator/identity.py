"""Users, sessions and request authentication, as the Control Room applies them.

- A password login without ``multipleLogin: true`` is the user's single session: it replaces
  the previous single session, whose tokens are then refused. API-key logins are always
  multi-session (and ``multipleLogin`` with a password needs the user's
  ``multiple_login_allowed``).
- A request authenticates with ``X-Authorization: <jwt>`` or ``Authorization: Bearer
  <token>``, never both and never one of them twice (400). A bearer token is an emulator
  JWT (as if the Control Room's OAuth server issued it) or one of the user's static
  ``oauth_tokens``.
- Logout ends the caller's own sessions only; refresh renews only the caller's own tokens.
- Execution tokens (they carry ``botId``) only execute, and only their own API Task; the
  Control Room endpoints refuse them.

Error messages describe what is wrong without quoting a password, API key or token.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from multidict import MultiMapping

from streamproc.emulator.problems import ApiError, bad_request, forbidden, unauthorized
from streamproc.emulator.settings import ADMIN_ROLE, DEVELOPER_ROLE, UserSettings
from streamproc.emulator.tokens import Claims, TokenError, TokenService

_ROLE_IDS = {ADMIN_ROLE: 1, "AAE_Basic": 2}


@dataclass(frozen=True, slots=True)
class User:
    settings: UserSettings = field(repr=False)
    id: int
    username: str

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.settings.roles

    @property
    def may_request_access(self) -> bool:
        return self.is_admin or DEVELOPER_ROLE in self.settings.roles

    def public(self, role_ids: Mapping[str, int]) -> dict[str, Any]:
        """The ``user`` object of the login response."""
        s = self.settings
        return {
            "id": s.id,
            "email": s.email,
            "username": s.username,
            "domain": "",
            "firstName": s.first_name,
            "lastName": s.last_name,
            "version": 0,
            "principalId": s.id,
            "deleted": False,
            "roles": [{"name": r, "id": role_ids[r], "version": 0} for r in s.roles],
            "sysAssignedRoles": [],
            "disabled": False,
            "multipleLoginAllowed": s.multiple_login_allowed,
        }


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request; ``claims`` is None for a static OAuth bearer token."""

    user: User
    token: str = field(repr=False)
    claims: Claims | None


def _same(secret: str, given: str) -> bool:
    return hmac.compare_digest(
        secret.encode("utf-8", "surrogatepass"), given.encode("utf-8", "surrogatepass")
    )


def header_token(headers: Mapping[str, str]) -> str | None:
    """The token of X-Authorization or of Authorization: Bearer; 400 when both are sent, or
    either twice (which one would win is exactly what a caller must not have to guess)."""
    if isinstance(headers, MultiMapping):
        for name in ("X-Authorization", "Authorization"):
            if len(headers.getall(name, ())) > 1:
                raise bad_request(
                    f"send the {name} header once",
                    "a request carries one token; several are refused, not chosen between",
                )
    x_auth = headers.get("X-Authorization")
    authorization = headers.get("Authorization")
    if x_auth is not None and authorization is not None:
        raise bad_request(
            "send either X-Authorization or Authorization: Bearer, not both",
            "the Control Room API does not accept both headers together",
        )
    if x_auth is not None:
        return x_auth.strip()
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("INVALID_TOKEN", "the Authorization header must be 'Bearer <token>'")
    return token.strip()


def _body_token(body: Mapping[str, Any]) -> str | None:
    """The optional ``token`` of a refresh or logout body: a string when present."""
    if "token" not in body:
        return None
    given = body["token"]
    if not isinstance(given, str):
        raise bad_request("token must be a string", {"field": "token"})
    return given


class Identity:
    """Logins, tokens and sessions of the configured users."""

    def __init__(
        self,
        users: Sequence[UserSettings],
        tokens: TokenService,
        *,
        token_ttl_seconds: int,
        execution_token_ttl_seconds: int,
    ) -> None:
        self._tokens = tokens
        self._ttl = token_ttl_seconds
        self._execution_ttl = execution_token_ttl_seconds
        self._users = {u.id: User(u, u.id, u.username) for u in users}
        self._by_name = {u.username: u for u in self._users.values()}
        self._oauth = {
            t.get_secret_value(): u for u in self._users.values() for t in u.settings.oauth_tokens
        }
        self._revoked_oauth: set[str] = set()
        self._single_session: dict[int, int] = {}  # user id -> nanoTime of the live session
        others = sorted({r for u in users for r in u.roles} - set(_ROLE_IDS))
        self._role_ids = {**_ROLE_IDS, **{r: 1000 + i for i, r in enumerate(others)}}

    def __repr__(self) -> str:
        return f"Identity(users={sorted(u.username for u in self._users.values())!r})"

    # -- logins ------------------------------------------------------------------------

    def login(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``{"token", "user"}`` for a username with a password or an API key."""
        username = body.get("username")
        if not isinstance(username, str) or not username:
            raise bad_request("username is required", {"field": "username"})
        password, api_key = body.get("password"), body.get("apiKey")
        if (password is None) == (api_key is None):
            raise bad_request(
                "give exactly one of password and apiKey",
                {"field": "password" if password is None else "apiKey"},
            )
        secret_field = "password" if password is not None else "apiKey"
        secret = password if password is not None else api_key
        if not isinstance(secret, str):
            raise bad_request(f"{secret_field} must be a string", {"field": secret_field})
        multiple = body.get("multipleLogin", False)
        if not isinstance(multiple, bool):
            raise bad_request("multipleLogin must be a boolean", {"field": "multipleLogin"})
        user = self._by_name.get(username)
        stored = None
        if user is not None:
            stored = user.settings.password if password is not None else user.settings.api_key
        if user is None or stored is None or not _same(stored.get_secret_value(), secret):
            what = "password" if password is not None else "API key"
            raise unauthorized("INVALID_CREDENTIALS", f"invalid username or {what}")
        if api_key is not None:
            multiple = True
        elif multiple and not user.settings.multiple_login_allowed:
            raise ApiError(
                403,
                "MULTIPLE_LOGIN_NOT_ALLOWED",
                "this user may not hold multiple sessions",
                {"field": "multipleLogin"},
            )
        token = self._issue(user, multiple)
        return {"token": token, "user": user.public(self._role_ids)}

    def _issue(self, user: User, multiple: bool) -> str:
        token, claims = self._tokens.issue(
            user_id=user.id, ttl_seconds=self._ttl, multiple_login=multiple
        )
        if not multiple:
            self._single_session[user.id] = claims.nano_time
        return token

    # -- authenticating requests -------------------------------------------------------

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The principal of a Control Room API request; 400 or 401 when there is none."""
        token = header_token(headers)
        if token is None:
            raise unauthorized(
                "AUTHENTICATION_REQUIRED",
                "send X-Authorization: <token> or Authorization: Bearer <token>",
            )
        return self.check_token(token)

    def check_token(self, token: str) -> Principal:
        """A Control Room token's principal: genuine, live, not an execution token."""
        user = self._oauth.get(token)
        if user is not None:
            if token in self._revoked_oauth:
                raise unauthorized("INVALID_TOKEN", "token has been logged out")
            return Principal(user, token, None)
        try:
            claims = self._tokens.verify(token)
        except TokenError as exc:
            raise unauthorized(exc.code, exc.message) from None
        if claims.bot_id is not None:
            raise unauthorized("INVALID_TOKEN", "an execution token only executes its API Task")
        user = self._users.get(claims.user_id)
        if user is None:
            raise unauthorized("INVALID_TOKEN", "token names no user of this Control Room")
        if not claims.multiple_login and self._single_session.get(user.id) != claims.nano_time:
            raise unauthorized("SESSION_REPLACED", "a newer login of this user ended this session")
        return Principal(user, token, claims)

    def is_valid(self, token: str) -> bool:
        """Whether a Control Room or execution token would be accepted now."""
        try:
            self.check_token(token)
        except ApiError:
            try:
                return self._tokens.verify(token).bot_id is not None
            except TokenError:
                return False
        return True

    def refresh(self, principal: Principal, body: Mapping[str, Any]) -> str:
        """A fresh token for the body's token (default: the header's), same session kind."""
        given = _body_token(body)
        target = principal if given is None or given == principal.token else self.check_token(given)
        if target.user.id != principal.user.id:
            raise forbidden("a user can refresh only their own tokens")
        if target.claims is None:
            raise bad_request("only Control Room JWTs can be refreshed", {"field": "token"})
        return self._issue(target.user, target.claims.multiple_login)

    def logout(self, headers: Mapping[str, str], body: Mapping[str, Any]) -> None:
        """End the session of the header's token and of the body's ``token``, if given.

        Only the caller's own sessions: a body token of another user than the header's is
        403 and ends nothing. A body token alone is its own proof of possession.
        """
        given = _body_token(body)
        candidates = [t for t in (header_token(headers), given) if t is not None]
        if not candidates:
            raise unauthorized("AUTHENTICATION_REQUIRED", "send the token to log out")
        principals = [self.check_token(t) for t in dict.fromkeys(candidates)]
        if len({p.user.id for p in principals}) > 1:
            raise forbidden("a user can log out only their own sessions")
        for p in principals:
            if p.claims is None:
                self._revoked_oauth.add(p.token)
            else:
                self._tokens.revoke(p.token, p.claims)

    # -- execution tokens --------------------------------------------------------------

    def execution_token(self, principal: Principal, bot_id: int) -> str:
        token, _ = self._tokens.issue(
            user_id=principal.user.id,
            ttl_seconds=self._execution_ttl,
            multiple_login=True,
            bot_id=bot_id,
        )
        return token

    def verify_execution(self, token: str, bot_id: str) -> Claims:
        """Claims of an execution token for the API Task ``bot_id`` (the URL's); else 401."""
        try:
            claims = self._tokens.verify(token)
        except TokenError as exc:
            raise unauthorized(exc.code, exc.message) from None
        if claims.bot_id is None:
            raise unauthorized(
                "INVALID_TOKEN",
                "execute needs the execution token from accessdetails, not a login token",
            )
        if str(claims.bot_id) != bot_id:
            raise unauthorized("INVALID_TOKEN", "the execution token is for another API Task")
        return claims
