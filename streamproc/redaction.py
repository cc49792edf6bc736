"""Masking secrets: one set of patterns for logs and dead letters, one list for librdkafka.

Code must not put secrets into messages in the first place; these patterns are the last line
of defence for text that comes from elsewhere (a server's error body, a library's exception,
a traceback). Pure: used by the core's dead letters, the logging processor and the settings
shown at start alike.
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


# librdkafka properties whose values are, or can carry, a secret: the ones librdkafka itself
# flags as sensitive, the OAuth/OIDC client secrets and assertion keys, the SASL extensions
# and OAUTHBEARER config (free-form key=value pairs), the kinit command (a shell command
# line), and the Java client's names, which librdkafka refuses but a person may still try.
KAFKA_SECRET_PROPERTIES: Final = frozenset(
    {
        "sasl.password",
        "sasl.oauthbearer.config",
        "sasl.oauthbearer.extensions",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.client.credentials.client.secret",
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "sasl.oauthbearer.assertion.private.key.pem",
        "sasl.kerberos.kinit.cmd",
        "ssl.key.password",
        "ssl.key.pem",
        "ssl.keystore.password",
        "ssl_key",
        "sasl.jaas.config",
        "ssl.truststore.password",
    }
)
# Any other property whose name says it holds a secret (a future one, a plugin's).
_SECRET_NAME = re.compile(r"pass(word|phrase)?|secret|token|api[._-]?key|credential|\.pem$", re.I)


def is_secret_kafka_property(name: str) -> bool:
    """Whether a librdkafka property's value must never be shown."""
    return name.strip().lower() in KAFKA_SECRET_PROPERTIES or bool(_SECRET_NAME.search(name))


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
