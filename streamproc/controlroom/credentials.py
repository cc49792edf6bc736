"""How the client proves who it is: a password, an API key, or an OAuth bearer token.

Password and API-key credentials are exchanged for a Control Room JWT at
``POST /v{1,2}/authentication`` and sent as ``X-Authorization``; a bearer token is sent as
``Authorization: Bearer`` as is. The Control Room refuses a request that carries both, so the
credential kind alone decides the one header a request gets.

Secrets are held as :class:`pydantic.SecretStr`, so ``repr``, ``str`` and tracebacks show
``**********``; only the request builder calls ``get_secret_value()``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

from pydantic import SecretStr

# A provider may be a plain function or a coroutine function, and may return a str or a
# SecretStr; it is called whenever a fresh token is needed (at start, near expiry, after 401).
TokenProvider: TypeAlias = Callable[[], "str | SecretStr | Awaitable[str | SecretStr]"]


def _secret(value: str | SecretStr, name: str) -> SecretStr:
    secret = value if isinstance(value, SecretStr) else SecretStr(value)
    if not secret.get_secret_value():
        raise ValueError(f"{name} must not be empty")
    return secret


class PasswordCredentials:
    """Username and password; ``multiple_login`` lets a person and the processor share a user."""

    __slots__ = ("multiple_login", "password", "username")

    def __init__(
        self, username: str, password: str | SecretStr, *, multiple_login: bool = True
    ) -> None:
        if not username:
            raise ValueError("username must not be empty")
        self.username = username
        self.password = _secret(password, "password")
        self.multiple_login = multiple_login

    def login_body(self) -> dict[str, Any]:
        """The JSON body of ``POST /v2/authentication``."""
        return {
            "username": self.username,
            "password": self.password.get_secret_value(),
            "multipleLogin": self.multiple_login,
        }

    def secrets(self) -> tuple[str, ...]:
        return (self.password.get_secret_value(),)

    def __repr__(self) -> str:
        return (
            f"PasswordCredentials(username={self.username!r}, password={self.password!r}, "
            f"multiple_login={self.multiple_login!r})"
        )


class ApiKeyCredentials:
    """Username and API key; an API-key token is always multi-session, so no flag is sent."""

    __slots__ = ("api_key", "username")

    def __init__(self, username: str, api_key: str | SecretStr) -> None:
        if not username:
            raise ValueError("username must not be empty")
        self.username = username
        self.api_key = _secret(api_key, "api_key")

    def login_body(self) -> dict[str, Any]:
        """The JSON body of ``POST /v2/authentication``."""
        return {"username": self.username, "apiKey": self.api_key.get_secret_value()}

    def secrets(self) -> tuple[str, ...]:
        return (self.api_key.get_secret_value(),)

    def __repr__(self) -> str:
        return f"ApiKeyCredentials(username={self.username!r}, api_key={self.api_key!r})"


class BearerCredentials:
    """An OAuth access token: a fixed ``token``, or a ``provider`` called for each new one.

    The client reuses a token until its JWT ``exp`` (minus the refresh margin) when it can read
    one, and otherwise until the server answers 401; then it asks the provider again.
    """

    __slots__ = ("_provider", "_token")

    def __init__(
        self, token: str | SecretStr | None = None, *, provider: TokenProvider | None = None
    ) -> None:
        if (token is None) == (provider is None):
            raise ValueError("give exactly one of token= or provider=")
        self._token = _secret(token, "token") if token is not None else None
        self._provider = provider

    async def fetch(self) -> SecretStr:
        """The current token, from the fixed value or from the provider."""
        if self._token is not None:
            return self._token
        assert self._provider is not None
        result = self._provider()
        if inspect.isawaitable(result):
            result = await result
        return _secret(result, "token from provider")

    def secrets(self) -> tuple[str, ...]:
        return (self._token.get_secret_value(),) if self._token is not None else ()

    def __repr__(self) -> str:
        source = "token=SecretStr('**********')" if self._token is not None else "provider=..."
        return f"BearerCredentials({source})"


Credentials: TypeAlias = PasswordCredentials | ApiKeyCredentials | BearerCredentials
