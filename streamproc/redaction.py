"""Masking secrets inside free text: one set of patterns for logs and dead letters.

Code must not put secrets into messages in the first place; these patterns are the last line
of defence for text that comes from elsewhere (a server's error body, a library's exception,
a traceback). Pure: used by the core's dead letters and by the logging processor alike.
"""

from __future__ import annotations

import re
from typing import Final

REDACTED: Final = "***"

# Three base64url segments, the first starting like a JSON header: a JWT.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)[A-Za-z0-9._~+/-]{8,}=*")
# ``password=...``, ``"api_key": "..."``, ``sasl.password: ...``: a secret-named key, a
# separator, and the value (quoted, or up to a blank or delimiter). A name without a
# separator ("token endpoint unavailable") is left alone.
_SECRET_PAIR = re.compile(
    r"(?i)\b([\w.-]*(?:password|passwd|pwd|secret|api[_-]?key|token)[\"']?\s*[:=]\s*)"
    r"(\"[^\"]*\"|'[^']*'|[^\s\"',;&}]+)"
)
# The password in a URL's user info: ``https://user:password@host``.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@")


def redact_text(text: str) -> str:
    """``text`` with JWTs, bearer tokens, secret-named key/value pairs and URL passwords
    replaced by ``***``."""
    redacted = _BEARER.sub(rf"\1\2{REDACTED}", _JWT.sub(REDACTED, text))
    redacted = _SECRET_PAIR.sub(_mask_value, redacted)
    return _USERINFO.sub(rf"\1{REDACTED}@", redacted)


def _mask_value(pair: re.Match[str]) -> str:
    value = pair[2]
    quote = value[0] if value[0] in "\"'" else ""
    return f"{pair[1]}{quote}{REDACTED}{quote}"
