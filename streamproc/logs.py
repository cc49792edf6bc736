"""Structured logging: structlog configured once, JSON lines through orjson, secrets redacted.

Event names are stable snake_case (``event_decided``), fields are keyword arguments, and
per-event context is bound with ``structlog.contextvars.bound_contextvars``. The redaction
processor is the last line of defence: code must not log secrets in the first place, but a
field whose *name* says it holds one (password, api key, token, authorization) is masked
wherever it appears, and secrets inside text (JWTs, bearer tokens, ``password=...`` pairs,
URL passwords, tracebacks included) are masked by :func:`streamproc.redaction.redact_text`.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import orjson
import structlog

from streamproc.redaction import REDACTED, redact_text

_SECRET_KEY = re.compile(r"pass(word)?|api_?key|token|secret|authori[sz]ation|credential", re.I)


def redact(value: Any, key: str | None = None) -> Any:
    """Mask secret-named fields and JWT-looking strings, recursively."""
    # Only text can carry a secret: a numeric field named like one (token_refresh_margin_s)
    # stays readable.
    if key is not None and isinstance(value, str | bytes) and value and _SECRET_KEY.search(key):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor form of :func:`redact`."""
    for key in list(event_dict):
        event_dict[key] = redact(event_dict[key], key if key != "event" else None)
    return event_dict


def _dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


def configure(level: str = "INFO", *, json: bool = True, stream: TextIO | None = None) -> None:
    """Configure structlog for the whole process; call once at start."""
    out = stream or sys.stderr
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,  # before redaction: tracebacks are text too
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """A logger bound with the component name."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(component=name)
    return logger
