"""Secrets inside text are masked in logs and dead letters alike."""

from __future__ import annotations

import io

import orjson
import structlog

from streamproc import logs
from streamproc.redaction import redact_text

JWT = "eyJhbGciOiJSUzUxMiJ9.eyJzdWIiOiIzODAifQ.c2lnbmF0dXJlLWJ5dGVz"


def test_redact_text_masks_each_kind_of_secret() -> None:
    """JWTs, bearer tokens, secret-named pairs and URL passwords are masked; the rest stays."""
    text = (
        f"token {JWT}; Authorization: Bearer abcdefgh12345678; password=hunter22 "
        "api_key: 'k-123456' at https://svc:s3cr3t@cr.example/login (token endpoint unavailable)"
    )
    masked = redact_text(text)
    for secret in (JWT, "abcdefgh12345678", "hunter22", "k-123456", "s3cr3t"):
        assert secret not in masked
    assert "https://svc:***@cr.example/login" in masked
    assert "(token endpoint unavailable)" in masked


def test_log_lines_mask_secrets_in_fields_and_tracebacks() -> None:
    """A secret-named field, a secret inside a message and one inside a traceback are all
    masked in the JSON log line."""
    stream = io.StringIO()
    logs.configure("INFO", stream=stream)
    log = structlog.get_logger("t")
    try:
        raise RuntimeError("login failed: password=hunter22")
    except RuntimeError:
        log.exception("boom", api_key="k-123456", detail={"url": "https://u:pw99@h/x"})
    structlog.reset_defaults()
    line = orjson.loads(stream.getvalue().splitlines()[-1])
    text = stream.getvalue()
    for secret in ("hunter22", "k-123456", "pw99"):
        assert secret not in text
    assert line["api_key"] == "***"
    assert "password=***" in line["exception"]
