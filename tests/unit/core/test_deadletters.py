"""The dead-letter envelope."""

from __future__ import annotations

import pytest

from streamproc.core.deadletters import (
    dead_letter_headers,
    dead_letter_headers_for,
    error_class_name,
    safe_message,
)
from streamproc.errors import BadRequestError, DecodeError, EventValidationError, ServerError

NOW = 1795889055.25
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJl"


def as_text(headers: list[tuple[str, bytes | None]]) -> dict[str, str]:
    return {k: v.decode() for k, v in headers if k.startswith(("streamproc.", "__connect.")) and v}


def test_envelope_keeps_original_headers_first_and_unchanged() -> None:
    """Original headers, including null values and repeats, come first exactly as received."""
    original: list[tuple[str, bytes | None]] = [("trace", b"abc"), ("empty", None), ("trace", b"d")]
    headers = dead_letter_headers(
        original,
        stage="validate",
        error_class="streamproc.errors.EventValidationError",
        message="amount is required",
        http_status=None,
        attempts=0,
        source_topic="payments",
        partition=2,
        offset=77,
        now_epoch=NOW,
        field="amount",
    )
    assert headers[:3] == original
    assert as_text(headers) == {
        "streamproc.error.stage": "validate",
        "streamproc.error.class": "streamproc.errors.EventValidationError",
        "streamproc.error.message": "amount is required",
        "streamproc.error.field": "amount",
        "streamproc.error.attempts": "0",
        "streamproc.error.source.topic": "payments",
        "streamproc.error.source.partition": "2",
        "streamproc.error.source.offset": "77",
        "streamproc.error.failed_at": "2026-11-28T18:04:15.250Z",
        "__connect.errors.topic": "payments",
        "__connect.errors.partition": "2",
        "__connect.errors.offset": "77",
        "__connect.errors.exception.class.name": "streamproc.errors.EventValidationError",
        "__connect.errors.exception.message": "amount is required",
    }


def test_connect_headers_can_be_left_out() -> None:
    """connect_headers=False writes only the streamproc.error.* names."""
    headers = dead_letter_headers(
        None,
        stage="execute",
        error_class="x.Y",
        message="m",
        http_status=503,
        attempts=3,
        source_topic="t",
        partition=0,
        offset=1,
        now_epoch=NOW,
        connect_headers=False,
    )
    assert all(name.startswith("streamproc.error.") for name, _ in headers)
    assert ("streamproc.error.http_status", b"503") in headers


def test_message_is_redacted_and_truncated() -> None:
    """JWTs and bearer tokens are masked and long messages are cut with a marker."""
    assert safe_message(f"bad token {JWT} rejected") == "bad token *** rejected"
    assert safe_message("Authorization: Bearer abcdefgh12345678") == "Authorization: Bearer ***"
    assert safe_message("token endpoint unavailable") == "token endpoint unavailable"
    cut = safe_message("x" * 1000)
    assert len(cut) == 500
    assert cut.endswith("...")
    headers = dead_letter_headers(
        None,
        stage="execute",
        error_class="x.Y",
        message=f"{JWT} " + "y" * 1000,
        http_status=None,
        attempts=1,
        source_topic="t",
        partition=0,
        offset=1,
        now_epoch=NOW,
    )
    message = dict(headers)["streamproc.error.message"]
    assert message is not None
    assert message.startswith(b"*** yyy")
    assert len(message) == 500
    assert JWT.encode() not in b"".join(v or b"" for _, v in headers)


def test_unencodable_message_still_encodes() -> None:
    """A message holding a lone surrogate is escaped rather than failing the dead letter."""
    headers = dead_letter_headers(
        None,
        stage="decode",
        error_class="x.Y",
        message="bad \ud800 text",
        http_status=None,
        attempts=0,
        source_topic="t",
        partition=0,
        offset=1,
        now_epoch=NOW,
    )
    assert dict(headers)["streamproc.error.message"] == b"bad \\ud800 text"


@pytest.mark.parametrize(
    ("error", "stage", "status", "field"),
    [
        (DecodeError("not JSON"), "decode", None, None),
        (EventValidationError("amount is null", field="amount"), "validate", None, "amount"),
        (BadRequestError("rejected", status=400, method="POST", url="/x"), "execute", "400", None),
        (ServerError("boom", status=503), "execute", "503", None),
    ],
)
def test_headers_for_error_derive_the_envelope(
    error: Exception, stage: str, status: str | None, field: str | None
) -> None:
    """Stage, class, message, field and HTTP status are read from the exception."""
    text = as_text(
        dead_letter_headers_for(
            [], error, attempts=1, source_topic="t", partition=0, offset=5, now_epoch=NOW
        )
    )
    assert text["streamproc.error.stage"] == stage
    assert text["streamproc.error.class"] == error_class_name(error)
    assert text["streamproc.error.message"] == str(error)
    assert text.get("streamproc.error.http_status") == status
    assert text.get("streamproc.error.field") == field


def test_error_class_name_is_fully_qualified() -> None:
    """The class header names the module and class."""
    assert error_class_name(DecodeError("x")) == "streamproc.errors.DecodeError"
