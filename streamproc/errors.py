"""The one exception tree of streamproc, split by what the caller does next.

    StreamprocError
    ├── ConfigError                     fail at start: names the key and what is wrong
    ├── StartupError                    a dependency (broker, Control Room) never answered
    ├── BadInputError                   dead-letter the event, then commit past it
    │   ├── DecodeError                   stage "decode": not JSON, not an object, too large
    │   ├── EventValidationError          stage "validate": missing or mistyped field
    │   └── MappingError                  stage "map": the event cannot become a botInput
    ├── BotValueError                   a typed bot value is malformed (names the variable path)
    ├── ControlRoomError                an HTTP exchange with the Control Room or an API Task failed
    │   ├── AuthError                     401: refresh the token once and replay
    │   ├── PermissionDeniedError         403: the user's role does not allow it
    │   ├── NotFoundError                 404
    │   ├── ConflictError                 409: e.g. a duplicate allocation
    │   ├── BadRequestError               400 and other 4xx: permanent, never retried
    │   ├── AccessDetailsError            accessdetails listed a repository path under "errors"
    │   ├── BadOutputError                200, but the botOutput breaks the output contract
    │   └── RetryableError                worth another attempt within the deadline
    │       ├── OverConcurrencyLimitError   429: the allocation's real-time budget is full
    │       ├── ServerError                 5xx
    │       ├── EndpointConnectionError     connect, reset, protocol errors
    │       └── EndpointTimeoutError        no answer in time
    ├── KafkaDeliveryError              the broker refused or lost an output record
    ├── KafkaTransactionError           a transaction call failed: retry, abort, or renew
    ├── KafkaConsumerError              the consumer cannot go on (fatal librdkafka error)
    └── KafkaAdminError                 creating or inspecting a topic failed: fail at start

Library exceptions (httpx, aiohttp, confluent-kafka, pydantic) are mapped into this tree at
one boundary per library and chained with ``from exc``. No message, ``repr`` or context field
ever holds a password, API key or token: request context carries the method and the URL
without its query string, never headers or bodies that were sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

Stage = Literal["decode", "validate", "map", "execute"]


class StreamprocError(Exception):
    """Root of every error streamproc raises on purpose."""


class ConfigError(StreamprocError):
    """Configuration is invalid; the process must not start.

    ``key`` is the dotted path of the offending key (``kafka.bootstrap_servers``).
    """

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"config key {key!r}: {problem}")


class StartupError(StreamprocError):
    """A service the processor needs did not answer within the start-up timeout."""


class BadInputError(StreamprocError):
    """An input event can never be processed; it goes to the dead-letter topic."""

    stage: Stage = "validate"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class DecodeError(BadInputError):
    """The record is not a JSON object of acceptable size."""

    stage: Stage = "decode"


class EventValidationError(BadInputError):
    """The JSON object is not a valid card transaction event."""

    stage: Stage = "validate"


class MappingError(BadInputError):
    """The event is valid but cannot be turned into the API Task's botInput."""

    stage: Stage = "map"


class BotValueError(StreamprocError):
    """A typed bot value (botInput or botOutput entry) is malformed.

    ``path`` names where, e.g. ``botInput.iNumAmount.number``.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class ControlRoomError(StreamprocError):
    """An HTTP exchange with the Control Room or an API Task runtime failed.

    Carries the HTTP ``status`` (None when no response came), the decoded error ``body``
    (``{"code", "message", "details"}`` when the server sent one) and the request context
    (method and URL path, never credentials).
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: Mapping[str, Any] | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        self.status = status
        self.body: Mapping[str, Any] = body or {}
        self.method = method
        self.url = url
        super().__init__(message)

    def __str__(self) -> str:
        parts = [super().__str__()]
        if self.method and self.url:
            parts.append(f"({self.method} {self.url})")
        if self.status is not None:
            parts.append(f"[HTTP {self.status}]")
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class AuthError(ControlRoomError):
    """401: the token is missing, expired, forged or logged out."""


class PermissionDeniedError(ControlRoomError):
    """403: authenticated, but the role does not allow the operation."""


class NotFoundError(ControlRoomError):
    """404."""


class ConflictError(ControlRoomError):
    """409, e.g. an allocation for that file already exists."""


class BadRequestError(ControlRoomError):
    """400 or another 4xx: the request itself is wrong; retrying cannot help."""


class AccessDetailsError(ControlRoomError):
    """accessdetails answered, but listed this repository path under ``errors``."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"no execution URL for {path!r}: {reason}")


class BadOutputError(ControlRoomError):
    """The API Task answered 200, but its botOutput breaks the task's output contract.

    Permanent: the same input gives the same answer. ``variable`` names the output variable.
    """

    def __init__(self, message: str, *, variable: str | None = None, **kw: Any) -> None:
        self.variable = variable
        super().__init__(message, **kw)


class RetryableError(ControlRoomError):
    """Worth another attempt after a backoff, if the deadline allows.

    ``retry_after`` is the server's hint in seconds, when it gave one.
    """

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)


class OverConcurrencyLimitError(RetryableError):
    """The allocation's real-time concurrency limit was exceeded (real-time mode never queues)."""


class ServerError(RetryableError):
    """5xx from the Control Room or the API Task runtime."""


class EndpointConnectionError(RetryableError):
    """The connection failed or broke before a response arrived."""


class EndpointTimeoutError(RetryableError):
    """No response within the attempt's timeout."""


class KafkaDeliveryError(StreamprocError):
    """The broker did not acknowledge an output record."""

    def __init__(self, message: str, *, topic: str, retriable: bool = False) -> None:
        self.topic = topic
        self.retriable = retriable
        super().__init__(f"delivery to {topic!r} failed: {message}")


class KafkaTransactionError(StreamprocError):
    """A Kafka transaction call failed (exactly-once delivery).

    ``retriable``: call it again; ``abortable``: abort the transaction and redo its work;
    ``fatal``: the producer is unusable (e.g. fenced by a newer one): replace it, then redo.
    """

    def __init__(
        self,
        message: str,
        *,
        operation: str,
        retriable: bool = False,
        abortable: bool = False,
        fatal: bool = False,
    ) -> None:
        self.operation = operation
        self.retriable = retriable
        self.abortable = abortable
        self.fatal = fatal
        super().__init__(f"{operation} failed: {message}")


class KafkaConsumerError(StreamprocError):
    """The consumer hit an error it cannot recover from; the processor stops."""


class KafkaAdminError(StreamprocError):
    """Creating or inspecting a topic failed; the caller cannot start.

    ``retriable`` is librdkafka's verdict: true when the broker was unreachable or busy (worth
    waiting for, e.g. while a container starts), false when the request itself was refused.
    """

    def __init__(self, message: str, *, topic: str | None = None, retriable: bool = False) -> None:
        self.topic = topic
        self.retriable = retriable
        super().__init__(f"topic {topic!r}: {message}" if topic else message)
