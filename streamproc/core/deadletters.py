"""The dead-letter envelope: headers that say why a record could not be decided.

A dead letter is the original record (key and value untouched) with the original headers,
unchanged and first, followed by ``streamproc.error.*`` headers::

    streamproc.error.stage             decode | validate | map | execute
    streamproc.error.class             fully qualified exception class
    streamproc.error.message           the exception message, truncated and redacted
    streamproc.error.field             the event field at fault, when known
    streamproc.error.http_status       the endpoint's HTTP status, when there was one
    streamproc.error.attempts          execute attempts made (0 before execute)
    streamproc.error.source.topic      where the record was read
    streamproc.error.source.partition
    streamproc.error.source.offset
    streamproc.error.failed_at         RFC 3339 UTC with milliseconds

All values are UTF-8 text (numbers in decimal), which is what Kafka tooling displays. By
default the Kafka Connect dead-letter context headers (KIP-298) are added too,
``__connect.errors.topic|partition|offset|exception.class.name|exception.message``, so tools
built for Connect DLQs can read streamproc's; Connect's ``stage`` and ``connector.name`` are
left out because their values name Connect concepts streamproc does not have.

A record that is dead-lettered twice (re-driven, then failing again) carries both sets;
readers take the last value of a header name, as Kafka clients do.

Messages come from streamproc's own exceptions, which never hold secrets; they are still
redacted of bearer tokens and JWT-shaped strings, as a last line of defence (the JWT pattern is
the one in :mod:`streamproc.logs`, repeated here because the core must not import the logging
stack), and of ``password=...``-style pairs and URL user info, since a defect caught by the
processor dead-letters with whatever message a library wrote.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from streamproc.core.decisions import rfc3339_utc
from streamproc.errors import BadInputError, ControlRoomError, Stage
from streamproc.redaction import redact_text

PREFIX: Final = "streamproc.error."
CONNECT_PREFIX: Final = "__connect.errors."
MAX_MESSAGE_CHARS: Final = 500

Header = tuple[str, bytes | None]


def error_class_name(error: BaseException) -> str:
    """``module.QualifiedName`` of the exception's class."""
    cls = type(error)
    return f"{cls.__module__}.{cls.__qualname__}"


def safe_message(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``message`` with tokens and passwords redacted, cut to ``limit`` characters (marked
    with "...")."""
    redacted = redact_text(message)
    return redacted if len(redacted) <= limit else redacted[: limit - 3] + "..."


def dead_letter_headers(
    original_headers: Iterable[Header] | None,
    *,
    stage: Stage,
    error_class: str,
    message: str,
    http_status: int | None,
    attempts: int,
    source_topic: str,
    partition: int,
    offset: int,
    now_epoch: float,
    field: str | None = None,
    connect_headers: bool = True,
) -> list[Header]:
    """The headers of a dead letter: the original ones unchanged, then the error envelope."""
    text = safe_message(message)
    headers: list[Header] = list(original_headers or ())
    ours: list[tuple[str, str]] = [
        (PREFIX + "stage", stage),
        (PREFIX + "class", error_class),
        (PREFIX + "message", text),
    ]
    if field is not None:
        ours.append((PREFIX + "field", field))
    if http_status is not None:
        ours.append((PREFIX + "http_status", str(http_status)))
    ours += [
        (PREFIX + "attempts", str(attempts)),
        (PREFIX + "source.topic", source_topic),
        (PREFIX + "source.partition", str(partition)),
        (PREFIX + "source.offset", str(offset)),
        (PREFIX + "failed_at", rfc3339_utc(now_epoch)),
    ]
    if connect_headers:
        ours += [
            (CONNECT_PREFIX + "topic", source_topic),
            (CONNECT_PREFIX + "partition", str(partition)),
            (CONNECT_PREFIX + "offset", str(offset)),
            (CONNECT_PREFIX + "exception.class.name", error_class),
            (CONNECT_PREFIX + "exception.message", text),
        ]
    # backslashreplace: a header must never fail to encode, whatever a message holds.
    headers.extend((name, value.encode("utf-8", "backslashreplace")) for name, value in ours)
    return headers


def dead_letter_headers_for(
    original_headers: Iterable[Header] | None,
    error: BaseException,
    *,
    attempts: int,
    source_topic: str,
    partition: int,
    offset: int,
    now_epoch: float,
    stage: Stage | None = None,
    connect_headers: bool = True,
) -> list[Header]:
    """:func:`dead_letter_headers` with stage, class, message, field and status from ``error``.

    The stage is the error's own for bad input and "execute" for endpoint errors, unless
    given.
    """
    if stage is None:
        stage = error.stage if isinstance(error, BadInputError) else "execute"
    return dead_letter_headers(
        original_headers,
        stage=stage,
        error_class=error_class_name(error),
        message=str(error),
        http_status=error.status if isinstance(error, ControlRoomError) else None,
        attempts=attempts,
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        now_epoch=now_epoch,
        field=error.field if isinstance(error, BadInputError) else None,
        connect_headers=connect_headers,
    )
