"""Which certificates a Control Room's HTTPS is checked against, the same for every HTTP library.

``verify_tls`` false accepts any certificate (test servers only). ``ca_file`` names a PEM file
of CA certificates trusted in addition to the system's: a Control Room whose certificate a
private CA signed. The admin client (httpx) and every execute transport (httptools, pyreqwest,
aiohttp, httpx) take the same two settings, so no path to the Control Room checks less than
another.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path

from streamproc.errors import ConfigError

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)
_KEY = "controlroom.ca_file"


def ca_certificates(ca_file: str | Path) -> list[bytes]:
    """Each PEM certificate of ``ca_file``; ConfigError when it cannot be read or holds none."""
    try:
        data = Path(ca_file).read_bytes()
    except OSError as exc:
        raise ConfigError(_KEY, f"cannot read {ca_file}: {exc.strerror or exc}") from exc
    certificates = _PEM_CERTIFICATE.findall(data)
    if not certificates:
        raise ConfigError(_KEY, f"{ca_file} holds no PEM certificate (BEGIN CERTIFICATE)")
    return certificates


def check(verify_tls: bool, ca_file: str | Path | None) -> None:
    """A CA file with verification off would be trusted by no one: say so at start."""
    if ca_file is not None and not verify_tls:
        raise ConfigError(_KEY, "is set while verify_tls is false; a CA file needs verification")


def ssl_context(verify_tls: bool, ca_file: str | Path | None) -> ssl.SSLContext | bool:
    """What httpx's ``verify`` and aiohttp's ``ssl`` take: True (their defaults), False (no
    verification), or a context that also trusts the CAs of ``ca_file``."""
    check(verify_tls, ca_file)
    if not verify_tls:
        return False
    if ca_file is None:
        return True
    context = ssl.create_default_context()
    pem = b"\n".join(ca_certificates(ca_file)).decode("ascii")
    try:
        context.load_verify_locations(cadata=pem)
    except ssl.SSLError as exc:
        raise ConfigError(_KEY, f"{ca_file}: not a valid certificate: {exc.reason}") from exc
    return context


def tls_context(verify_tls: bool, ca_file: str | Path | None) -> ssl.SSLContext:
    """The same choice as :func:`ssl_context`, always as a context, for code that calls
    ``loop.create_connection(ssl=...)`` itself: the system's CAs (plus ``ca_file``'s), or no
    verification at all with ``verify_tls`` false."""
    chosen = ssl_context(verify_tls, ca_file)
    if isinstance(chosen, ssl.SSLContext):
        return chosen
    context = ssl.create_default_context()
    if not chosen:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
