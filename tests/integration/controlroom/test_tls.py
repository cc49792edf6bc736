"""HTTPS to a Control Room whose certificate a private CA signed: ``controlroom.ca_file``.

The emulator serves HTTPS with a certificate for 127.0.0.1 signed by a test CA. Every client
of the Control Room, the login and admin client and each execute transport, must trust it with
``ca_file`` and must refuse it without (no CA of the system signed it) or with another CA.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streamproc.app import make_execute_transport
from streamproc.controlroom.transport import TransportKind
from streamproc.core.values import StringValue
from streamproc.emulator import EmulatorHandle
from streamproc.errors import ConfigError, EndpointConnectionError
from tests.fixtures.emulator import EmulatorFactory
from tests.fixtures.tls import TlsFiles
from tests.integration.controlroom.conftest import ZIP_CODE_TASK, MakeClient, developer

pytestmark = pytest.mark.integration

TRANSPORTS: list[TransportKind] = ["httptools", "pyreqwest", "aiohttp", "httpx"]
ZIP = {"iStrZipCode": StringValue("76131")}


@pytest.fixture
def https_emulator(emulator_factory: EmulatorFactory, tls_files: TlsFiles) -> EmulatorHandle:
    """The emulator over HTTPS with the test CA's certificate."""
    emulator = emulator_factory(
        tls_cert_file=tls_files.cert,
        tls_key_file=tls_files.key,
        allocations=[{"fileId": 149, "concurrencyLimit": 4}],
    )
    assert emulator.url.startswith("https://127.0.0.1:")
    return emulator


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_execute_over_https_trusts_the_ca_file(
    https_emulator: EmulatorHandle, cr_client: MakeClient, tls_files: TlsFiles, kind: TransportKind
) -> None:
    """With ca_file, login, access details and an execute through each transport succeed."""
    client = cr_client(https_emulator.url, developer(), ca_file=tls_files.ca)
    transport = make_execute_transport(kind, max_connections=2, ca_file=tls_files.ca)
    try:
        session = client.execution_session(ZIP_CODE_TASK, transport)
        result = await session.execute(ZIP, timeout_s=10)
    finally:
        await transport.aclose()
    assert result.outputs["State"] == StringValue("California")
    assert https_emulator.stats()["allocations"]  # the control calls work over HTTPS too


@pytest.mark.parametrize("kind", TRANSPORTS)
@pytest.mark.parametrize("trusted", ["system", "other_ca"])
async def test_execute_transport_refuses_a_certificate_it_was_not_told_to_trust(
    https_emulator: EmulatorHandle,
    cr_client: MakeClient,
    tls_files: TlsFiles,
    kind: TransportKind,
    trusted: str,
) -> None:
    """Each transport checks the certificate: the system's CAs or another CA do not pass it."""
    client = cr_client(https_emulator.url, developer(), ca_file=tls_files.ca)
    ca_file = None if trusted == "system" else tls_files.other_ca
    transport = make_execute_transport(kind, max_connections=2, ca_file=ca_file)
    try:
        session = client.execution_session(ZIP_CODE_TASK, transport)
        with pytest.raises(EndpointConnectionError) as caught:
            await session.execute(ZIP, timeout_s=10)
    finally:
        await transport.aclose()
    assert "certificate" in str(caught.value).lower()


async def test_login_client_refuses_the_certificate_without_the_ca_file(
    https_emulator: EmulatorHandle, cr_client: MakeClient
) -> None:
    """The login and admin client checks the certificate against the system's CAs by default."""
    client = cr_client(https_emulator.url)
    with pytest.raises(EndpointConnectionError) as caught:
        await client.authenticate()
    assert "certificate" in str(caught.value).lower()


def test_a_ca_file_without_a_certificate_is_a_config_error(tmp_path: Path) -> None:
    """A ca_file holding no PEM certificate fails at start naming controlroom.ca_file."""
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    for kind in TRANSPORTS:
        with pytest.raises(ConfigError) as caught:
            make_execute_transport(kind, ca_file=empty)
        assert caught.value.key == "controlroom.ca_file"
