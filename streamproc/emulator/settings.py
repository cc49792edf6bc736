"""The emulator's configuration: one frozen model, read once at start.

Sources, lowest to highest precedence: the built-in defaults (mirrored, with comments, in
``config/emulator.toml``), a TOML file, ``STREAMPROC_EMULATOR_``-prefixed environment
variables (``__`` separates nested keys: ``STREAMPROC_EMULATOR_BEHAVIOR__LATENCY_MS=5``; one
that names no setting is an error), then explicit overrides (command-line flags, test
fixtures). Any problem raises :class:`~streamproc.errors.ConfigError` naming the dotted key.

The flat behaviour keys (``latency_ms``, ``error_rate``, ...) given as overrides apply to
every task: they set ``behavior`` and clear the same field from each ``task_behavior`` entry.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from streamproc.emulator.behavior import BehaviorPatch, BehaviorSettings
from streamproc.envsettings import EnvironmentSettings, deep_merge, read_environment
from streamproc.errors import ConfigError
from streamproc.tomlfile import read_toml

ENV_PREFIX = "STREAMPROC_EMULATOR_"
ADMIN_ROLE = "AAE_Admin"
DEVELOPER_ROLE = "AAE_Bot Developer"
FRAUD_SCORE_FILE_ID = 201
API_KEY_LENGTH = 40
_URL = re.compile(r"^https?://[^/\s?#]+(/[^\s?#]*)?$")


class UserSettings(BaseModel):
    """A Control Room user who can authenticate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int = Field(ge=1)
    username: str = Field(min_length=1, max_length=200)
    password: SecretStr
    api_key: SecretStr | None = None
    email: str = ""
    first_name: str = ""
    last_name: str = ""
    roles: tuple[str, ...] = ()
    multiple_login_allowed: bool = True
    # Static bearer tokens accepted as if the Control Room's OAuth server had issued them.
    oauth_tokens: tuple[SecretStr, ...] = ()

    @field_validator("api_key")
    @classmethod
    def _api_key_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            key = value.get_secret_value()
            if len(key) != API_KEY_LENGTH or "\\" in key:
                raise ValueError("an API key is 40 characters with no backslash")
        return value


class AllocationSettings(BaseModel):
    """An API Task allocation created at start (when ``preallocate`` is on)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    file_id: int = Field(ge=1, validation_alias=AliasChoices("file_id", "fileId"))
    concurrency_limit: int = Field(
        1, ge=1, le=100_000, validation_alias=AliasChoices("concurrency_limit", "concurrencyLimit")
    )
    run_as_user_id: int | None = Field(
        None, ge=1, validation_alias=AliasChoices("run_as_user_id", "runAsUserOrNone")
    )


def default_users() -> tuple[UserSettings, ...]:
    # Well-known, clearly fake credentials: the emulator guards nothing real.
    return (
        UserSettings(
            id=1,
            username="cr-admin",
            password=SecretStr("cr-admin-password"),
            api_key=SecretStr("EMULATOR-FAKE-API-KEY-FOR-CR-ADMIN-00000"),
            email="cr-admin@emulator.invalid",
            first_name="Control Room",
            last_name="Admin",
            roles=(ADMIN_ROLE,),
        ),
        UserSettings(
            id=380,
            username="bot-developer",
            password=SecretStr("bot-developer-password"),
            api_key=SecretStr("EMULATOR-FAKE-API-KEY-FOR-BOT-DEVELOPER0"),
            email="bot-developer@emulator.invalid",
            first_name="Bot",
            last_name="Developer",
            roles=(DEVELOPER_ROLE,),
        ),
    )


def default_allocations() -> tuple[AllocationSettings, ...]:
    return (
        AllocationSettings(file_id=FRAUD_SCORE_FILE_ID, concurrency_limit=8, run_as_user_id=12),
    )


class EmulatorSettings(BaseSettings):
    """Everything the emulator reads at start; see ``config/emulator.toml`` for each key."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
    )

    host: str = "127.0.0.1"
    port: int = Field(8090, ge=0, le=65535)
    public_url: str | None = None
    # HTTPS: a PEM certificate (chain) and its unencrypted private key; both or neither.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tenant_uuid: str = "5e0c4d7a-1f52-4c6e-9a1b-3e6d0c0ffee0"
    token_ttl_seconds: int = Field(1200, ge=1, le=31 * 24 * 3600)
    execution_token_ttl_seconds: int = Field(43200, ge=1, le=31 * 24 * 3600)
    private_key_file: Path | None = None
    over_limit_status: Literal[429, 503] = 429
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    # Connection limits (see streamproc.emulator.connections).
    max_connections: int = Field(512, ge=1, le=100_000)
    header_timeout_seconds: float = Field(5.0, gt=0, le=3600)
    body_timeout_seconds: float = Field(10.0, gt=0, le=3600)
    keepalive_timeout_seconds: float = Field(10.0, gt=0, le=3600)
    default_run_as_user_id: int = Field(12, ge=1)
    seed: int = 0
    preallocate: bool = True
    allocations: tuple[AllocationSettings, ...] = Field(default_factory=default_allocations)
    users: tuple[UserSettings, ...] = Field(default_factory=default_users)
    behavior: BehaviorSettings = Field(default_factory=BehaviorSettings)
    task_behavior: dict[int, BehaviorPatch] = Field(default_factory=dict)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    access_log: bool = True
    shutdown_grace_seconds: float = Field(2.0, ge=0, le=120)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],  # noqa: ARG003 - pydantic-settings' hook signature
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,  # noqa: ARG003
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings merges file, environment and overrides itself, in that order, so
        # construction reads nothing implicit (tests stay independent of the shell).
        return (init_settings,)

    @field_validator("public_url")
    @classmethod
    def _public_url_shape(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _URL.match(value):
            raise ValueError("must be an http(s) URL such as http://emulator:8090")
        return value.rstrip("/")

    @field_validator("tenant_uuid")
    @classmethod
    def _tenant_uuid_shape(cls, value: str) -> str:
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise ValueError("must be a UUID") from None

    @field_validator("users")
    @classmethod
    def _unique_users(cls, users: tuple[UserSettings, ...]) -> tuple[UserSettings, ...]:
        for attr in ("id", "username"):
            values = [getattr(user, attr) for user in users]
            if len(set(values)) != len(values):
                raise ValueError(f"two users share the same {attr}")
        return users

    @field_validator("allocations")
    @classmethod
    def _unique_allocations(
        cls, allocations: tuple[AllocationSettings, ...]
    ) -> tuple[AllocationSettings, ...]:
        file_ids = [a.file_id for a in allocations]
        if len(set(file_ids)) != len(file_ids):
            raise ValueError("a file id is allocated twice")
        return allocations

    @model_validator(mode="after")
    def _tls_pair(self) -> Self:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together: set both or neither")
        return self

    def behavior_for(self, file_id: int) -> BehaviorSettings:
        """The behaviour a task starts with: ``behavior`` plus its ``task_behavior`` entry."""
        patch = self.task_behavior.get(file_id)
        return self.behavior if patch is None else patch.apply(self.behavior)


FLAT_BEHAVIOR_KEYS = frozenset(BehaviorSettings.model_fields)


def load_settings(
    path: Path | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: bool = True,
) -> EmulatorSettings:
    """Settings from defaults < TOML file < environment < overrides; ConfigError if invalid."""
    data: dict[str, Any] = read_toml(path, key="config") if path is not None else {}
    env = EnvironmentSettings()
    if environ:
        env = read_environment(EmulatorSettings, ENV_PREFIX, os.environ)
        data = deep_merge(data, env.data)
    flat = {k: v for k, v in (overrides or {}).items() if k in FLAT_BEHAVIOR_KEYS}
    rest = {k: v for k, v in (overrides or {}).items() if k not in FLAT_BEHAVIOR_KEYS}
    data = deep_merge(data, rest)
    if flat:
        data["behavior"] = {**dict(data.get("behavior") or {}), **flat}
        tasks = data.get("task_behavior") or {}
        if isinstance(tasks, Mapping):
            data["task_behavior"] = {
                fid: {k: v for k, v in dict(p).items() if k not in flat}
                if isinstance(p, Mapping)
                else p
                for fid, p in tasks.items()
            }
    try:
        settings = EmulatorSettings(**data)
        for file_id in settings.task_behavior:
            settings.behavior_for(file_id)
    except ValidationError as exc:
        error = config_error(exc)
        variable = env.variable_for(exc.errors()[0]["loc"])
        if variable is not None:
            error = ConfigError(error.key, f"{error.problem} (set by {variable})")
        raise error from None
    return settings


def config_error(exc: ValidationError, prefix: str = "") -> ConfigError:
    """The first problem of a ValidationError as a ConfigError naming its dotted key."""
    errors = exc.errors(include_input=False, include_url=False)
    first = errors[0]
    key = prefix + dotted(first["loc"])
    problem = first["msg"].removeprefix("Value error, ")
    if len(errors) > 1:
        problem += f" (and {len(errors) - 1} more problem(s))"
    return ConfigError(key or "<root>", problem)


def dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
