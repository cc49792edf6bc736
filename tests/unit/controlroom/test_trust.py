"""Trust settings for HTTPS to the Control Room: one reading of ca_file for every client."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest

from streamproc.config import load_settings
from streamproc.controlroom.trust import ca_certificates, ssl_context, tls_context
from streamproc.errors import ConfigError
from tests.fixtures.tls import TlsFiles


def test_each_pem_certificate_of_a_bundle_is_read(tls_files: TlsFiles, tmp_path: Path) -> None:
    """A bundle of two CAs, with text around them, gives both certificates."""
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(
        "# our CAs\n" + tls_files.ca.read_text() + "\n" + tls_files.other_ca.read_text()
    )
    assert len(ca_certificates(bundle)) == 2


def test_a_missing_ca_file_names_the_key(tmp_path: Path) -> None:
    """An unreadable ca_file is a ConfigError naming controlroom.ca_file and the path."""
    with pytest.raises(ConfigError) as caught:
        ca_certificates(tmp_path / "absent.pem")
    assert caught.value.key == "controlroom.ca_file"
    assert "absent.pem" in caught.value.problem


def test_a_ca_file_with_verification_off_is_refused(tls_files: TlsFiles) -> None:
    """verify_tls = false and a ca_file contradict each other: a ConfigError, not a guess."""
    with pytest.raises(ConfigError) as caught:
        ssl_context(False, tls_files.ca)
    assert caught.value.key == "controlroom.ca_file"


def test_the_context_trusts_the_ca_file_besides_the_defaults(tls_files: TlsFiles) -> None:
    """The context verifies certificates and holds the CA of ca_file."""
    context = ssl_context(True, tls_files.ca)
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    subjects = [dict(x[0] for x in c["subject"]) for c in context.get_ca_certs()]
    assert {"commonName": "streamproc test CA"} in subjects
    assert ssl_context(True, None) is True
    assert ssl_context(False, None) is False


def test_settings_refuse_a_ca_file_or_broker_ca_that_does_not_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """controlroom.ca_file and kafka.ssl_ca_location must name existing files at start."""
    for name in list(os.environ):
        if name.upper().startswith("STREAMPROC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STREAMPROC_CONTROLROOM__CA_FILE", str(tmp_path / "nope.pem"))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.key == "controlroom.ca_file"
    monkeypatch.delenv("STREAMPROC_CONTROLROOM__CA_FILE")
    monkeypatch.setenv("STREAMPROC_KAFKA__SSL_CA_LOCATION", str(tmp_path / "nope.pem"))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.key == "kafka.ssl_ca_location"


def test_tls_context_applies_the_same_choice_as_ssl_context(tls_files: TlsFiles) -> None:
    """As a context: verification on by default, off with verify_tls false, plus a CA file."""
    default = tls_context(True, None)
    assert default.verify_mode == ssl.CERT_REQUIRED
    assert default.check_hostname
    unverified = tls_context(False, None)
    assert unverified.verify_mode == ssl.CERT_NONE
    assert not unverified.check_hostname
    with_ca = tls_context(True, tls_files.ca)
    assert with_ca.verify_mode == ssl.CERT_REQUIRED
    assert any("streamproc test CA" in str(ca["subject"]) for ca in with_ca.get_ca_certs())
