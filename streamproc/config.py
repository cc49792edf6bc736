"""Processor configuration: one frozen settings model, read once at start.

Sources, later ones winning: the TOML file given to ``streamproc run --config``, then
environment variables ``STREAMPROC_<SECTION>__<KEY>`` (e.g. ``STREAMPROC_KAFKA__GROUP_ID``,
``STREAMPROC_CONTROLROOM__PASSWORD``; see :mod:`streamproc.envsettings`). Unknown keys, and
``STREAMPROC_*`` variables that name no setting, are errors, not silently ignored, because a
misspelt key in production is a setting that silently did not apply (``STREAMPROC_EMULATOR_*``
belong to ``streamproc emulator`` and are left to it). File values must have the key's type
(``"1000"`` is not an integer there); a variable's text is converted by the key's type. Any
problem becomes a :class:`~streamproc.errors.ConfigError` naming the key's dotted path (or
the variable), never quoting a value. Credentials are ``SecretStr``, and a Control Room URL
with a user name or password in it is refused: printing the settings never shows a secret.

The librdkafka and HTTP client settings are *exported* from these fields, so one value (e.g. a
concurrency budget) drives every layer that depends on it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self
from urllib.parse import urlsplit

import pydantic_core
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from streamproc.controlroom.transport import DEFAULT_TRANSPORT, TransportKind
from streamproc.core.admission import AdmissionPolicy
from streamproc.core.circuit import CircuitPolicy
from streamproc.core.decisions import FallbackPolicy
from streamproc.core.mapping import DEFAULT_FRAUD_MAPPING, TaskMappingSpec
from streamproc.core.ordering import OrderingMode
from streamproc.core.retry import RetryPolicy
from streamproc.core.routing import RoutingSpec, check_routing
from streamproc.envsettings import EnvironmentSettings, deep_merge, read_environment
from streamproc.errors import ConfigError
from streamproc.redaction import is_secret_kafka_property, redact_text
from streamproc.tomlfile import read_toml

ENV_PREFIX = "STREAMPROC_"
# Read by `streamproc emulator`, not by the processor.
OTHER_COMMANDS_PREFIXES = ("STREAMPROC_EMULATOR_",)
_MASKED = "**********"  # what pydantic shows for a SecretStr


def _not_empty(secret: SecretStr) -> SecretStr:
    if not secret.get_secret_value():
        raise ValueError("must not be empty")
    return secret


# A credential, when given, is never empty.
Secret = Annotated[SecretStr, AfterValidator(_not_empty)]
# What at-least-once rests on (commit acknowledged work only; durable, ordered outputs), with
# librdkafka's aliases: an override table must not undo it.
_MANAGED_PROPERTIES = {
    "consumer_overrides": frozenset(
        {"enable.auto.commit", "auto.commit.enable", "enable.auto.offset.store"}
    ),
    "producer_overrides": frozenset(
        {"enable.idempotence", "acks", "request.required.acks", "transactional.id"}
    ),
}
FRAUD_SCORE_PATH = "Automation Anywhere\\Bots\\Fraud Score API Task"


# The longest the broker holds an empty fetch: see consumer_config.
FETCH_WAIT_MAX_MS: Final = 100


class _Section(BaseModel):
    # No infinity or NaN: "inf" seconds is not a timeout.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "streamproc"
    client_id: str = "streamproc"
    # Exactly-once only. Stable across restarts of one replica, so that a restart fences the
    # transaction its crashed predecessor left open instead of waiting for it to time out;
    # distinct per replica. Default: streamproc-<group_id>-<hostname>-<client_id>.
    transactional_id: str | None = Field(None, min_length=1, max_length=255)
    # Exactly-once only: how long the broker keeps an open transaction of a dead producer.
    transaction_timeout_ms: int = Field(30_000, ge=1_000, le=900_000)
    input_topic: str = "transactions"
    decisions_topic: str = "decisions"
    dead_letter_topic: str = "transactions.dlq"
    # Optional: a verdict that arrives after its event was decided by fallback is published
    # here, with that fallback, so that analysts can reconcile them.
    corrections_topic: str | None = Field(None, min_length=1)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    session_timeout_ms: int = Field(45_000, ge=6_000)
    max_poll_interval_ms: int = Field(300_000, ge=10_000)
    consume_batch_size: int = Field(500, ge=1, le=10_000)
    commit_interval_ms: int = Field(1_000, ge=50)
    # The broker's offset.metadata.max.bytes: commit metadata (the offsets done beyond the
    # committed position) longer than this is left out rather than have the commit refused.
    offset_metadata_max_bytes: int = Field(4_096, ge=0, le=1_048_576)
    linger_ms: int = Field(5, ge=0, le=1_000)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = Field(None, min_length=1)
    sasl_password: Secret | None = None
    # PEM file of the CA(s) that signed the broker's certificate, for SSL and SASL_SSL; without
    # it, the system's CAs.
    ssl_ca_location: FilePath | None = None
    # Passed to librdkafka unchanged, for settings this model does not name.
    consumer_overrides: dict[str, str] = Field(default_factory=dict)
    producer_overrides: dict[str, str] = Field(default_factory=dict)

    @field_validator("consumer_overrides", "producer_overrides")
    @classmethod
    def _not_managed(cls, overrides: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        managed = sorted(set(overrides) & _MANAGED_PROPERTIES[str(info.field_name)])
        if managed:
            raise ValueError(
                f"{', '.join(managed)} cannot be overridden: streamproc commits only "
                "acknowledged work, produced by an idempotent producer with acks=all"
            )
        return overrides

    @model_validator(mode="after")
    def _sasl_complete(self) -> Self:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                "security_protocol SASL_* needs sasl_mechanism, sasl_username and sasl_password"
            )
        return self

    def common_config(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
        }
        if self.ssl_ca_location is not None:
            conf["ssl.ca.location"] = str(self.ssl_ca_location)
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username
            conf["sasl.password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else ""
            )
        return conf

    def consumer_config(self) -> dict[str, Any]:
        """librdkafka consumer settings: manual commits of acknowledged work only."""
        conf = self.common_config() | {
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": self.auto_offset_reset,
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": self.session_timeout_ms,
            "max.poll.interval.ms": self.max_poll_interval_ms,
            "enable.partition.eof": False,
            # librdkafka's default, stated because exactly once rests on it: committed offsets
            # are fetched "stable" only when read_committed, so a partition's next owner waits
            # for its previous owner's transaction to end instead of starting before it.
            "isolation.level": "read_committed",
            # librdkafka prefetches up to 100,000 records per partition and 64 MB by default:
            # more memory than the events in flight themselves, for no gain in throughput
            # when each event waits for an execute anyway.
            # How long the broker may hold a fetch that finds no record. librdkafka's 500 ms is
            # a whole default SLA: on a fresh assignment the first fetch was seen held that long
            # although records were arriving (2 runs in 3), and every event of that half second
            # then came late at once. An empty fetch every 100 ms per broker costs nothing here.
            "fetch.wait.max.ms": FETCH_WAIT_MAX_MS,
            "queued.min.messages": 2_000,
            "queued.max.messages.kbytes": 8_192,
        }
        return conf | dict(self.consumer_overrides)

    def producer_config(self, *, transactional: bool = False) -> dict[str, Any]:
        """Idempotent producer, acks from all in-sync replicas: an ack means durable. With
        ``transactional``, outputs and input offsets are committed together (exactly once)."""
        conf = self.common_config() | {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": self.linger_ms,
            "compression.type": "lz4",
        }
        if transactional:
            conf["transactional.id"] = self.transactional_id or (
                f"streamproc-{self.group_id}-{socket.gethostname()}-{self.client_id}"
            )
            conf["transaction.timeout.ms"] = self.transaction_timeout_ms
        return conf | dict(self.producer_overrides)


class ControlRoomSettings(_Section):
    url: str = "http://127.0.0.1:8090"
    auth_version: Literal["v1", "v2"] = "v2"
    # Bot developer identity: generates execution URLs and tokens.
    username: str | None = Field("bot-developer", min_length=1)
    password: Secret | None = None
    api_key: Secret | None = None
    bearer_token: Secret | None = None
    # Optional admin identity: only used to read allocation budgets (the list is admin-only).
    admin_username: str | None = Field(None, min_length=1)
    admin_password: Secret | None = None
    admin_api_key: Secret | None = None
    verify_tls: bool = True
    # PEM file of CA certificates trusted besides the system's, for an https url (a private CA).
    ca_file: FilePath | None = None
    request_timeout_ms: int = Field(10_000, ge=100)
    token_refresh_margin_s: float = Field(60.0, ge=0)
    access_refresh_interval_s: float = Field(300.0, ge=5)
    execute_transport: TransportKind = DEFAULT_TRANSPORT

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_controlroom_url(value)

    @model_validator(mode="after")
    def _one_credential(self) -> Self:
        given = [n for n in ("password", "api_key", "bearer_token") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "set exactly one of password, api_key or bearer_token "
                f"(found {len(given)}: {', '.join(given) or 'none'})"
            )
        if self.bearer_token is None and not self.username:
            raise ValueError("username is required with password or api_key")
        if (self.admin_password or self.admin_api_key) and not self.admin_username:
            raise ValueError("admin_username is required with admin_password or admin_api_key")
        if self.admin_password and self.admin_api_key:
            raise ValueError("set admin_password or admin_api_key, not both")
        return self

    @property
    def has_admin(self) -> bool:
        return bool(self.admin_username and (self.admin_password or self.admin_api_key))

    @property
    def identity_key(self) -> str:
        """The key to name when the Control Room refuses the bot developer identity."""
        return "controlroom.bearer_token" if self.bearer_token else "controlroom.username"


def check_controlroom_url(url: str) -> str:
    """The Control Room's ``url``, checked by :func:`check_http_url`."""
    return check_http_url(
        url, "give credentials as controlroom.username with password, api_key or bearer_token"
    )


def check_http_url(url: str, credentials_hint: str) -> str:
    """``url`` without a trailing slash; ValueError unless an http(s) URL with a host and no
    user name or password (those would be printed with the URL and sent as Basic auth);
    ``credentials_hint`` says where credentials belong instead."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("must start with http:// or https://")
    if "@" in parts.netloc:
        raise ValueError(f"must not contain a user name or password; {credentials_hint}")
    if not parts.hostname:
        raise ValueError("has no host")
    return url.rstrip("/")


class ApiTaskSettings(_Section):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    repository_path: str = Field(min_length=1)
    # The budget from config; the allocation's concurrencyLimit wins when it is lower.
    concurrency_limit: int | None = Field(None, ge=1, le=10_000)
    attempt_timeout_ms: int = Field(2_000, ge=10)
    mapping: TaskMappingSpec = DEFAULT_FRAUD_MAPPING


class ProcessingSettings(_Section):
    ordering: OrderingMode = "key"
    max_in_flight: int = Field(1_000, ge=1, le=100_000)
    max_event_bytes: int = Field(65_536, ge=256)
    decision_sla_ms: int = Field(500, ge=10)
    # Below this much time left, an execute cannot help: decide by fallback without one.
    min_useful_ms: int = Field(20, ge=0)
    clock_skew_tolerance_ms: int = Field(5_000, ge=0)
    drain_timeout_s: float = Field(10.0, gt=0)
    # At start, how long to keep retrying a broker or Control Room that does not answer yet
    # (containers start in any order) before giving up with exit status 1.
    startup_timeout_s: float = Field(60.0, ge=0)
    # "by_assignment": replicas of one group split each allocation budget by the share of
    # input partitions they own, so together they stay within it. "none": every replica
    # uses the whole budget (only right when each replica has an allocation of its own).
    budget_split: Literal["by_assignment", "none"] = "by_assignment"
    # "at_least_once": outputs are acknowledged, then offsets committed; a crash may repeat
    # an output. "exactly_once": outputs and offsets are committed in one Kafka transaction
    # every transaction_interval_ms; read_committed consumers see each decision once.
    delivery: Literal["at_least_once", "exactly_once"] = "at_least_once"
    transaction_interval_ms: int = Field(100, ge=10, le=60_000)

    @field_validator("transaction_interval_ms")
    @classmethod
    def _interval_within_sla(cls, interval: int, info: ValidationInfo) -> int:
        sla = info.data.get("decision_sla_ms")
        if info.data.get("delivery") == "exactly_once" and sla is not None and interval >= sla:
            raise ValueError(
                f"must be below decision_sla_ms ({sla}): with exactly_once a decision is "
                "seen only when its transaction commits"
            )
        return interval

    retry: RetryPolicy = RetryPolicy()
    fallback: FallbackPolicy = FallbackPolicy()
    circuit_breaker: CircuitPolicy = CircuitPolicy()
    admission: AdmissionPolicy = AdmissionPolicy()


class TracingSettings(_Section):
    """OpenTelemetry traces of each event, exported over OTLP/HTTP (protobuf); off by default."""

    enabled: bool = False
    # The collector's OTLP/HTTP traces endpoint (an OpenTelemetry Collector, Jaeger, Tempo...).
    endpoint: str = "http://127.0.0.1:4318/v1/traces"
    service_name: str = Field("streamproc", min_length=1, max_length=256)
    # The share of new traces recorded; an input's traceparent decides for its own trace.
    sample_ratio: float = Field(1.0, ge=0, le=1)

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_http_url(value, "a collector's credentials go in OTEL_EXPORTER_OTLP_HEADERS")


class ObservabilitySettings(_Section):
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    http_enabled: bool = True
    http_host: str = "127.0.0.1"
    http_port: int = Field(9108, ge=0, le=65_535)
    # The live status page at / on the same port: event ids, verdicts and dead-letter reasons
    # of the last outputs, no secrets; false serves only /metrics, /healthz and /readyz.
    status_page: bool = True
    # A "progress" log line with totals and rates this often; 0 turns it off.
    progress_interval_s: float = Field(30.0, ge=0)
    tracing: TracingSettings = TracingSettings()


def _default_tasks() -> tuple[ApiTaskSettings, ...]:
    return (ApiTaskSettings(name="fraud", repository_path=FRAUD_SCORE_PATH),)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kafka: KafkaSettings = KafkaSettings()
    controlroom: ControlRoomSettings = ControlRoomSettings(
        password=SecretStr("bot-developer-password")
    )
    api_tasks: tuple[ApiTaskSettings, ...] = Field(default_factory=_default_tasks, min_length=1)
    routing: RoutingSpec = RoutingSpec(default_tasks=("fraud",))
    processing: ProcessingSettings = ProcessingSettings()
    observability: ObservabilitySettings = ObservabilitySettings()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [t.name for t in self.api_tasks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"api_tasks: duplicate name(s) {', '.join(duplicates)}")
        problems = check_routing(self.routing, set(names))
        if problems:
            raise ValueError("routing: " + "; ".join(problems))
        kafka = self.kafka
        named = [kafka.input_topic, kafka.decisions_topic, kafka.dead_letter_topic]
        if kafka.corrections_topic is not None:
            named.append(kafka.corrections_topic)
        if len(set(named)) != len(named):
            raise ValueError(
                "kafka: input_topic, decisions_topic, dead_letter_topic and corrections_topic "
                "must differ"
            )
        return self

    def task(self, name: str) -> ApiTaskSettings:
        for task in self.api_tasks:
            if task.name == name:
                return task
        raise KeyError(name)


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read and validate the TOML file (optional) and the environment; raise ConfigError."""
    data = read_toml(path) if path is not None else {}
    env = read_environment(
        Settings,
        ENV_PREFIX,
        os.environ if environ is None else environ,
        ignore=OTHER_COMMANDS_PREFIXES,
    )
    merged = deep_merge(data, env.data)
    try:
        # As JSON, strictly: a value must have its key's type, as TOML and JSON can say it
        # ("1000" is not an integer; a table is not a list). Infinity stays infinity so that
        # it is refused as such.
        document = pydantic_core.to_json(merged, inf_nan_mode="constants")
        return Settings.model_validate_json(document, strict=True)
    except ValidationError as exc:
        raise _config_error(exc, env) from None


def _config_error(exc: ValidationError, env: EnvironmentSettings) -> ConfigError:
    """The first problem, by key path, in words a person can act on; never the input value."""
    first = exc.errors(include_url=False, include_input=False)[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key (check the spelling against config/local.toml)"
    elif not first["loc"]:
        # The cross-section checks of Settings name their section first ("routing: ...").
        section, sep, rest = message.partition(": ")
        if sep and section in Settings.model_fields:
            key, message = section, rest
    variable = env.variable_for(first["loc"])
    if variable is not None:
        message += f" (set by {variable})"
    more = len(exc.errors()) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(key, message)


def describe(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, secrets masked: safe to log at start."""
    data = settings.model_dump(mode="json", exclude_none=True)
    kafka = data["kafka"]
    for table in ("consumer_overrides", "producer_overrides"):
        # Plain strings passed to librdkafka: mask the properties that carry secrets, and
        # secrets inside any other value (a URL's password, ``password=...``).
        kafka[table] = {
            name: _MASKED if is_secret_kafka_property(name) else redact_text(value)
            for name, value in kafka[table].items()
        }
    return data
