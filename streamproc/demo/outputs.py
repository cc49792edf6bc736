"""Reading the processor's outputs: decision and dead-letter records as :class:`Output` values,
and as one compact line each for people (``streamproc tail``) or as JSON lines for tools.

Pure: takes record values and headers, never a Kafka client. A dead letter is the original
record, so its value may be anything; its event id comes from the sample generator's
``x-sample-event-id`` header when present, else from the value when it is a JSON object.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import orjson

from streamproc.core.deadletters import PREFIX as ERROR_PREFIX
from streamproc.core.decisions import (
    HEADER_DECISION,
    HEADER_EVENT_ID,
    HEADER_FALLBACK_REASON,
    HEADER_LATENCY_MS,
)
from streamproc.demo.generator import HEADER_EVENT_ID as SAMPLE_EVENT_ID
from streamproc.demo.generator import HEADER_KIND as SAMPLE_KIND
from streamproc.demo.ledger import Output

HeaderList = Sequence[tuple[str, bytes | None]]
MAX_MESSAGE_CHARS: Final = 160
MAX_VALUE_CHARS: Final = 500


def header(headers: HeaderList | None, name: str) -> str | None:
    """The last value of header ``name`` as text (Kafka clients let the last one win)."""
    found: str | None = None
    for key, value in headers or ():
        if key == name and value is not None:
            found = value.decode("utf-8", "replace")
    return found


def _float(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


def _json_object(value: bytes | None) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def parse_decision(value: bytes | None, headers: HeaderList | None) -> Output:
    """A decision record: the value's JSON when readable, else what the headers say."""
    body = _json_object(value) or {}
    score = body.get("score")
    reasons = body.get("reasons")
    latency = body.get("latency_ms")
    return Output(
        kind="decision",
        event_id=_text(body.get("event_id")) or header(headers, HEADER_EVENT_ID),
        decision=_text(body.get("decision")) or header(headers, HEADER_DECISION),
        score=None if score is None else str(score),
        fallback_reason=_text(body.get("fallback_reason"))
        or header(headers, HEADER_FALLBACK_REASON),
        latency_ms=float(latency)
        if isinstance(latency, int | float)
        else _float(header(headers, HEADER_LATENCY_MS)),
        reasons=tuple(str(r) for r in reasons) if isinstance(reasons, list) else (),
    )


def parse_dead_letter(value: bytes | None, headers: HeaderList | None) -> Output:
    """A dead letter: the error envelope from its headers, the event id however it can."""
    event_id = header(headers, SAMPLE_EVENT_ID)
    if event_id is None:
        event_id = _text((_json_object(value) or {}).get("event_id"))
    return Output(
        kind="dead_letter",
        event_id=event_id,
        stage=header(headers, ERROR_PREFIX + "stage"),
        error_class=header(headers, ERROR_PREFIX + "class"),
        error_message=header(headers, ERROR_PREFIX + "message"),
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def format_line(output: Output) -> str:
    """One compact line: id, verdict, score or fallback, latency, reasons; or the error."""
    event_id = output.event_id or "(no event id)"
    if output.kind == "dead_letter":
        error = (output.error_class or "?").rsplit(".", 1)[-1]
        message = _shorten(output.error_message or "", MAX_MESSAGE_CHARS)
        return f"{event_id}  DEAD LETTER  stage={output.stage or '?'}  {error}: {message}"
    parts = [event_id, f"{output.decision or '?':<7}"]
    if output.fallback_reason:
        parts.append(f"fallback={output.fallback_reason}")
    else:
        parts.append(f"score={output.score if output.score is not None else '-':<3}")
    if output.latency_ms is not None:
        parts.append(f"{output.latency_ms:7.1f} ms")
    if output.reasons:
        parts.append(",".join(output.reasons))
    return "  ".join(parts)


def dead_letter_json(
    key: bytes | None,
    value: bytes | None,
    headers: HeaderList | None,
    *,
    topic: str,
    partition: int,
    offset: int,
) -> bytes:
    """A dead letter as one JSON object: where it is, why it failed, and the start of its value."""
    parsed = parse_dead_letter(value, headers)
    text = (value or b"").decode("utf-8", "replace")
    return orjson.dumps(
        {
            "event_id": parsed.event_id,
            "stage": parsed.stage,
            "class": parsed.error_class,
            "message": parsed.error_message,
            "field": header(headers, ERROR_PREFIX + "field"),
            "sample_kind": header(headers, SAMPLE_KIND),
            "dead_letter": {"topic": topic, "partition": partition, "offset": offset},
            "source": {
                "topic": header(headers, ERROR_PREFIX + "source.topic"),
                "partition": header(headers, ERROR_PREFIX + "source.partition"),
                "offset": header(headers, ERROR_PREFIX + "source.offset"),
            },
            "key": None if key is None else key.decode("utf-8", "replace"),
            "value_bytes": len(value or b""),
            "value": _shorten(text, MAX_VALUE_CHARS),
        }
    )


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
