"""The processor, run as a user runs it, against a secured broker and a Control Room over HTTPS.

The broker's only client listener is SASL_SSL (SCRAM-SHA-512, a certificate from a throw-away
CA, checked by the processor against that CA); the emulator serves HTTPS with a certificate of
another private CA, trusted through ``controlroom.ca_file``. Every credential reaches the
processor through the environment, and none may appear in what it prints.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from streamproc.emulator import EmulatorHandle
from streamproc.kafka.admin import ensure_topics
from tests.fixtures.emulator import EmulatorFactory
from tests.fixtures.kafka import REPO_ROOT, consume_records, delete_topics, produce_records
from tests.fixtures.secure_kafka import SecureBroker
from tests.fixtures.tls import TlsFiles
from tests.integration.processor.harness import event, record_of

pytestmark = pytest.mark.integration

CR_PASSWORD = "bot-developer-password"
CR_ADMIN_PASSWORD = "cr-admin-password"
EVENTS = 20


@dataclass(frozen=True)
class Setup:
    config: Path
    env: dict[str, str]
    input: str
    decisions: str


@pytest.fixture
def https_emulator(emulator_factory: EmulatorFactory, tls_files: TlsFiles) -> EmulatorHandle:
    return emulator_factory(tls_cert_file=tls_files.cert, tls_key_file=tls_files.key)


@pytest.fixture
def setup(
    secure_kafka: SecureBroker,
    https_emulator: EmulatorHandle,
    tls_files: TlsFiles,
    tmp_path: Path,
) -> Iterator[Setup]:
    """Topics on the secured broker, a config file without secrets, the secrets in env."""
    suffix = uuid.uuid4().hex[:10]
    topics = {"input": f"tx-{suffix}", "decisions": f"decisions-{suffix}", "dlq": f"dlq-{suffix}"}
    ensure_topics(
        secure_kafka.bootstrap,
        {topics["input"]: 2, topics["decisions"]: 2, topics["dlq"]: 1},
        client_config=secure_kafka.client_config(),
    )
    config = tmp_path / "secured.toml"
    config.write_text(
        f"""
[kafka]
bootstrap_servers = "{secure_kafka.bootstrap}"
group_id = "secured-{suffix}"
input_topic = "{topics["input"]}"
decisions_topic = "{topics["decisions"]}"
dead_letter_topic = "{topics["dlq"]}"
commit_interval_ms = 200
session_timeout_ms = 6000
security_protocol = "SASL_SSL"
sasl_mechanism = "SCRAM-SHA-512"
ssl_ca_location = "{secure_kafka.ca_file}"

[controlroom]
url = "{https_emulator.url}"
ca_file = "{tls_files.ca}"
username = "bot-developer"
admin_username = "cr-admin"

[processing]
startup_timeout_s = 20

[observability]
http_enabled = false
log_format = "json"
"""
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("STREAMPROC_")},
        "STREAMPROC_KAFKA__SASL_USERNAME": secure_kafka.username,
        "STREAMPROC_KAFKA__SASL_PASSWORD": secure_kafka.password,
        "STREAMPROC_CONTROLROOM__PASSWORD": CR_PASSWORD,
        "STREAMPROC_CONTROLROOM__ADMIN_PASSWORD": CR_ADMIN_PASSWORD,
    }
    yield Setup(config, env, topics["input"], topics["decisions"])
    delete_topics(
        secure_kafka.bootstrap, list(topics.values()), config=secure_kafka.client_config()
    )


def start(setup: Setup, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "streamproc", "run", "--config", str(setup.config)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_processor_decides_every_event_over_sasl_ssl_and_https(
    setup: Setup, secure_kafka: SecureBroker
) -> None:
    """Over SASL_SSL and HTTPS the processor decides every event, stops cleanly, prints no
    secret."""
    events = [event(f"sec-{i}", f"card-{i % 4}") for i in range(EVENTS)]
    produce_records(
        secure_kafka.bootstrap,
        setup.input,
        (record_of(ev) for ev in events),
        config=secure_kafka.client_config(),
    )
    process = start(setup, setup.env)
    try:
        decisions = consume_records(
            secure_kafka.bootstrap,
            setup.decisions,
            count=EVENTS,
            timeout_s=60,
            config=secure_kafka.client_config(),
        )
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    printed = stdout + stderr
    decided = sorted(orjson.loads(m.value() or b"{}")["event_id"] for m in decisions)
    assert decided == sorted(ev["event_id"] for ev in events), printed[-3000:]
    assert process.returncode == 0, printed[-3000:]
    started = next(
        orjson.loads(line) for line in printed.splitlines() if '"event":"starting"' in line
    )
    assert started["settings"]["kafka"]["security_protocol"] == "SASL_SSL"
    for secret in (secure_kafka.password, CR_PASSWORD, CR_ADMIN_PASSWORD):
        assert secret not in printed


def test_wrong_broker_password_is_a_clear_startup_error(
    setup: Setup, secure_kafka: SecureBroker
) -> None:
    """A refused SCRAM login ends the start with exit 2 naming the key, no traceback, no
    secret."""
    wrong = f"wrong-{uuid.uuid4().hex}"
    process = start(setup, {**setup.env, "STREAMPROC_KAFKA__SASL_PASSWORD": wrong})
    stdout, stderr = process.communicate(timeout=60)
    printed = stdout + stderr
    assert process.returncode == 2, printed[-3000:]
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith("streamproc: configuration error: config key 'kafka.sasl_password'")
    assert "SASL authentication" in last_line
    assert "Traceback" not in printed
    for secret in (wrong, secure_kafka.password, CR_PASSWORD, CR_ADMIN_PASSWORD):
        assert secret not in printed


def test_broker_certificate_is_checked_against_the_ca(
    setup: Setup, secure_kafka: SecureBroker, tls_files: TlsFiles
) -> None:
    """With another CA as ssl_ca_location the broker's certificate is refused at start."""
    env = {**setup.env, "STREAMPROC_KAFKA__SSL_CA_LOCATION": str(tls_files.other_ca)}
    process = start(setup, env)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 2, (stdout + stderr)[-3000:]
    last_line = stderr.strip().splitlines()[-1]
    assert "config key 'kafka.ssl_ca_location'" in last_line
    assert "certificate verify failed" in last_line
    assert "Traceback" not in stdout + stderr
