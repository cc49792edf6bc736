"""Where and as whom to connect, for people at the command line.

Sources, later ones winning: the ``[controlroom]`` section of a TOML file (``--config``), the
environment (``STREAMPROC_CONTROLROOM__URL``, ``__USERNAME``, ``__PASSWORD``, ``__API_KEY``,
``__BEARER_TOKEN``, ``__AUTH_VERSION``, ``__VERIFY_TLS``, ``__CA_FILE`` and the ``__ADMIN_*``
twins), then flags. These are the same keys the processor reads, so one file serves both.
Other sections and keys of the file are ignored here: they belong to the processor.

Exactly one of password, API key or bearer token must be given; anything else is a
:class:`~streamproc.errors.ConfigError` naming the key, never echoing a secret.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from pydantic import SecretStr

from streamproc.controlroom.auth import AuthVersion
from streamproc.controlroom.credentials import (
    ApiKeyCredentials,
    BearerCredentials,
    Credentials,
    PasswordCredentials,
)
from streamproc.errors import ConfigError
from streamproc.tomlfile import read_toml

ENV_PREFIX = "STREAMPROC_CONTROLROOM__"
_KEYS = (
    "url",
    "username",
    "password",
    "api_key",
    "bearer_token",
    "auth_version",
    "verify_tls",
    "ca_file",
    "admin_username",
    "admin_password",
    "admin_api_key",
)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True, slots=True)
class Connection:
    """A resolved Control Room URL and identity."""

    url: str
    credentials: Credentials
    auth_version: AuthVersion
    verify_tls: bool
    ca_file: str | None = None


def read_sources(
    config: str | Path | None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The ``[controlroom]`` keys from the file, overridden by the environment."""
    values: dict[str, Any] = {}
    if config is not None:
        document = read_toml(config)
        section = document.get("controlroom", {})
        if not isinstance(section, dict):
            raise ConfigError("controlroom", "must be a table")
        values.update({k: section[k] for k in _KEYS if k in section})
    env = os.environ if environ is None else environ
    for key in _KEYS:
        value = env.get(ENV_PREFIX + key.upper())
        if value:
            values[key] = value
    return values


def resolve(values: Mapping[str, Any], *, admin: bool = False) -> Connection:
    """Validate the merged values into a :class:`Connection` (the admin identity if asked)."""
    url = _text(values, "url")
    if not url:
        raise ConfigError(
            "controlroom.url", "not set: pass --url, set STREAMPROC_CONTROLROOM__URL or --config"
        )
    version = _text(values, "auth_version") or "v2"
    if version not in ("v1", "v2"):
        raise ConfigError("controlroom.auth_version", "must be 'v1' or 'v2'")
    return Connection(
        url=url,
        credentials=_credentials(values, "admin_" if admin else ""),
        auth_version=cast(AuthVersion, version),
        verify_tls=_flag(values, "verify_tls", default=True),
        ca_file=_text(values, "ca_file"),
    )


def _credentials(values: Mapping[str, Any], prefix: str) -> Credentials:
    username = _text(values, f"{prefix}username")
    password = _text(values, f"{prefix}password")
    api_key = _text(values, f"{prefix}api_key")
    bearer = None if prefix else _text(values, "bearer_token")
    given = [
        name
        for name, value in (("password", password), ("api_key", api_key), ("bearer_token", bearer))
        if value
    ]
    where = f"controlroom.{prefix or ''}"
    if len(given) != 1:
        found = ", ".join(given) or "none"
        hint = "" if prefix else " or bearer_token"
        raise ConfigError(
            f"{where}password",
            f"set exactly one of {prefix}password, {prefix}api_key{hint} (found: {found})",
        )
    if bearer:
        return BearerCredentials(SecretStr(bearer))
    if not username:
        raise ConfigError(f"{where}username", "required with a password or an API key")
    if password:
        return PasswordCredentials(username, SecretStr(password))
    assert api_key
    return ApiKeyCredentials(username, SecretStr(api_key))


def _text(values: Mapping[str, Any], key: str) -> str | None:
    value = values.get(key)
    if value is None:
        return None
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not isinstance(value, str):
        raise ConfigError(f"controlroom.{key}", "must be a string")
    return value.strip() or None


def _flag(values: Mapping[str, Any], key: str, *, default: bool) -> bool:
    value = values.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise ConfigError(f"controlroom.{key}", "must be true or false")
