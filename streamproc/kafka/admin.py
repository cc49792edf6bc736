"""Topic administration at start (create missing topics, find missing ones, count partitions),
and the consumer group's members as its coordinator sees them.

This is the one boundary between confluent-kafka's AdminClient and the error tree: every
failure leaves here as :class:`~streamproc.errors.KafkaAdminError`, chained with ``from exc``.
Each call opens its own short-lived admin client; these run once at start, not per event.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

if TYPE_CHECKING:
    # Public at run time as confluent_kafka.admin.TopicMetadata, but not re-exported for mypy.
    from confluent_kafka.admin._metadata import TopicMetadata

from streamproc.errors import ConfigError, KafkaAdminError
from streamproc.kafka.clientlogs import client_logger
from streamproc.kafka.records import TopicPartition

_POLL_INTERVAL_S = 0.05

# librdkafka's local errors for "no broker answered": it does not flag them retriable, but a
# broker that is still starting is exactly what a caller may want to wait for.
_UNREACHABLE = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._RESOLVE,
        KafkaError.REQUEST_TIMED_OUT,
    }
)

# Only connection and security settings reach the admin client. Callers pass their consumer or
# producer settings; librdkafka would print a warning per consumer-only key, and with
# enable.idempotence set an admin client even asks the broker for a producer id.
_ADMIN_KEY_PREFIXES = (
    "bootstrap.servers",
    "client.id",
    "client.dns.lookup",
    "security.protocol",
    "sasl.",
    "ssl.",
    "enable.ssl.",
    "socket.",
    "broker.",
    "reconnect.",
    "connections.max.idle.ms",
    "api.version.",
    "metadata.",
    "topic.metadata.",
    "debug",
    "log_level",
    "logger",
    "error_cb",
    "oauth_cb",
    "https.",
)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """How to create a topic. ``replication_factor=None`` takes the broker's default."""

    partitions: int = 1
    replication_factor: int | None = None
    config: Mapping[str, str] = field(default_factory=dict)


def ensure_topics(
    bootstrap: str,
    topics: Mapping[str, TopicSpec | int],
    *,
    timeout_s: float = 30.0,
    client_config: Mapping[str, Any] | None = None,
) -> None:
    """Create each topic that does not exist yet; an int value is a partition count.

    Idempotent: a topic that already exists is left exactly as it is, whatever its partition
    count. Returns once every topic is in the broker's metadata with a leader for each
    partition, so a producer or consumer started next finds it. Raises KafkaAdminError.
    """
    specs = {name: _as_spec(value) for name, value in topics.items()}
    if not specs:
        return
    deadline = time.monotonic() + timeout_s
    admin = _admin(bootstrap, client_config)
    new_topics = [
        NewTopic(
            name,
            num_partitions=spec.partitions,
            replication_factor=-1 if spec.replication_factor is None else spec.replication_factor,
            config=dict(spec.config),
        )
        for name, spec in specs.items()
    ]
    try:
        futures = admin.create_topics(
            new_topics, operation_timeout=timeout_s, request_timeout=timeout_s
        )
    except KafkaException as exc:
        raise _admin_error(exc, "cannot request topic creation") from exc
    except (TypeError, ValueError) as exc:
        raise KafkaAdminError(f"invalid topic request: {exc}") from exc
    for name, future in futures.items():
        try:
            future.result(timeout=max(0.0, deadline - time.monotonic()))
        except KafkaException as exc:
            if _code(exc) == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise _admin_error(exc, "cannot create it", topic=name) from exc
        except TimeoutError as exc:
            raise KafkaAdminError(
                f"no answer from {bootstrap} within {timeout_s:g} s", topic=name, retriable=True
            ) from exc
    _wait_until_visible(admin, bootstrap, list(specs), deadline, timeout_s)


def missing_topics(
    bootstrap: str,
    topics: Iterable[str],
    client_config: Mapping[str, Any] | None = None,
    *,
    timeout_s: float = 10.0,
) -> list[str]:
    """The topics of ``topics`` that the broker does not have, in the order given."""
    wanted = list(topics)
    admin = _admin(bootstrap, client_config)
    try:
        metadata = _metadata(admin, timeout_s)
    except KafkaException as exc:
        raise _admin_error(exc, f"cannot list topics on {bootstrap}") from exc
    present = {name for name, meta in metadata.topics.items() if meta.error is None}
    return [name for name in wanted if name not in present]


def describe_partitions(
    bootstrap: str,
    topic: str,
    *,
    timeout_s: float = 10.0,
    client_config: Mapping[str, Any] | None = None,
) -> int:
    """The number of partitions of ``topic``; KafkaAdminError when it does not exist."""
    admin = _admin(bootstrap, client_config)
    try:
        metadata = _metadata(admin, timeout_s, topic)
    except KafkaException as exc:
        raise _admin_error(exc, f"cannot read metadata from {bootstrap}", topic=topic) from exc
    meta = metadata.topics.get(topic)
    if meta is None:
        raise KafkaAdminError(f"not in the metadata from {bootstrap}", topic=topic)
    if meta.error is not None:
        raise KafkaAdminError(
            f"{meta.error.str()} (on {bootstrap})",
            topic=topic,
            retriable=bool(meta.error.retriable()),
        )
    return len(meta.partitions)


@dataclass(frozen=True, slots=True)
class GroupMember:
    member_id: str
    client_id: str
    host: str  # the member's address as the coordinator sees it
    assignment: frozenset[TopicPartition]


@dataclass(frozen=True, slots=True)
class GroupDescription:
    group: str
    state: str  # "stable", "preparing_rebalance", "empty", ...
    members: tuple[GroupMember, ...]


def describe_group(
    bootstrap: str,
    group: str,
    *,
    timeout_s: float = 5.0,
    client_config: Mapping[str, Any] | None = None,
) -> GroupDescription:
    """The members of consumer group ``group`` and their assignments; raises KafkaAdminError."""
    admin = _admin(bootstrap, client_config)
    try:
        description = admin.describe_consumer_groups([group], request_timeout=timeout_s)[
            group
        ].result(timeout=timeout_s + 1)
    except KafkaException as exc:
        raise _admin_error(exc, f"cannot describe consumer group {group!r}") from exc
    except TimeoutError as exc:
        raise KafkaAdminError(
            f"no answer from {bootstrap} within {timeout_s:g} s", retriable=True
        ) from exc
    state = getattr(description.state, "name", str(description.state))
    members = tuple(
        GroupMember(
            member_id=member.member_id,
            client_id=member.client_id,
            host=member.host,
            assignment=frozenset(
                TopicPartition(tp.topic, tp.partition)
                for tp in (member.assignment.topic_partitions if member.assignment else ())
            ),
        )
        for member in description.members
    )
    return GroupDescription(group, state.lower(), members)


def _as_spec(value: TopicSpec | int) -> TopicSpec:
    if isinstance(value, TopicSpec):
        return value
    return TopicSpec(partitions=value)


class _Refusals:
    """The first refusal librdkafka reported: a failed SASL login or TLS handshake.

    librdkafka reports those only to ``error_cb``; the request that needed the connection just
    times out as a "broker transport failure", which reads like a broker still starting.
    """

    def __init__(self, chained: Any = None) -> None:
        self.first: KafkaError | None = None
        self._chained = chained

    def __call__(self, error: KafkaError) -> None:
        if self.first is None and error.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL):
            self.first = error
        if self._chained is not None:
            self._chained(error)


class _Admin(AdminClient):
    """An admin client that keeps what its ``error_cb`` saw."""

    refusals: _Refusals


def _admin(bootstrap: str, client_config: Mapping[str, Any] | None) -> _Admin:
    # librdkafka would log every refused reconnect to stderr, many per second, while the
    # KafkaAdminError raised here already says what failed; a caller may set log_level back.
    config: dict[str, Any] = {"log_level": 0}
    config |= {
        key: value
        for key, value in (client_config or {}).items()
        if key.startswith(_ADMIN_KEY_PREFIXES)
    }
    config["bootstrap.servers"] = bootstrap
    refusals = _Refusals(config.get("error_cb"))
    config["error_cb"] = refusals
    admin = _Admin(config, logger=client_logger())
    admin.refusals = refusals
    return admin


def _metadata(admin: _Admin, timeout_s: float, topic: str | None = None) -> Any:
    """``list_topics``, in short waits, so that refused credentials end it at once as a
    ConfigError naming the key instead of a timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return admin.list_topics(
                topic=topic, timeout=max(0.1, min(0.5, deadline - time.monotonic()))
            )
        except KafkaException as exc:
            admin.poll(0)  # serves error_cb
            if admin.refusals.first is not None:
                raise _refused(admin.refusals.first) from exc
            if time.monotonic() >= deadline:
                raise


def _refused(error: KafkaError) -> ConfigError:
    detail = error.str()
    if error.code() == KafkaError._AUTHENTICATION:
        return ConfigError("kafka.sasl_password", f"the broker refused the SASL login: {detail}")
    if "certificate verify failed" in detail:
        return ConfigError(
            "kafka.ssl_ca_location", f"the broker's TLS certificate is not trusted: {detail}"
        )
    return ConfigError("kafka.security_protocol", f"TLS with the broker failed: {detail}")


def _code(exc: KafkaException) -> int | None:
    error = exc.args[0] if exc.args else None
    return error.code() if isinstance(error, KafkaError) else None


def _admin_error(exc: KafkaException, doing: str, *, topic: str | None = None) -> KafkaAdminError:
    error = exc.args[0] if exc.args else None
    if isinstance(error, KafkaError):
        retriable = error.retriable() or error.code() in _UNREACHABLE
        return KafkaAdminError(f"{doing}: {error.str()}", topic=topic, retriable=retriable)
    return KafkaAdminError(f"{doing}: {exc}", topic=topic)


def _wait_until_visible(
    admin: AdminClient, bootstrap: str, names: list[str], deadline: float, timeout_s: float
) -> None:
    # A created topic reaches the broker's metadata cache a moment after CreateTopics answers;
    # a consumer subscribing in that window would wait a full metadata refresh to see it.
    pending = set(names)
    while True:
        try:
            metadata = admin.list_topics(timeout=max(0.1, min(1.0, deadline - time.monotonic())))
        except KafkaException:
            metadata = None
        if metadata is not None:
            pending = {name for name in pending if not _ready(metadata.topics.get(name))}
            if not pending:
                return
        if time.monotonic() >= deadline:
            waiting = sorted(pending)
            raise KafkaAdminError(
                f"created, but {len(waiting)} topic(s) ({', '.join(waiting)}) not visible with "
                f"leaders on {bootstrap} within {timeout_s:g} s",
                topic=waiting[0],
                retriable=True,
            )
        time.sleep(_POLL_INTERVAL_S)


def _ready(meta: TopicMetadata | None) -> bool:
    if meta is None or meta.error is not None or not meta.partitions:
        return False
    return all(partition.leader >= 0 for partition in meta.partitions.values())
