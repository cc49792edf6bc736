"""The demo end to end: a real broker, the emulator, the processor, run as a user runs it."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.kafka import REPO_ROOT, delete_topics

pytestmark = pytest.mark.integration

DEMO_TIMEOUT_S = 60


def summary_counts(text: str) -> dict[str, int]:
    """The summary's figures by label, e.g. {"missing": 0, "APPROVE": 480, ...}."""
    counts: dict[str, int] = {}
    for label in ("produced", "decisions", "fallbacks", "dead letters", "duplicates", "missing"):
        found = re.search(rf"^  {label} +([\d,]+)", text, re.MULTILINE)
        if found:
            counts[label] = int(found.group(1).replace(",", ""))
    decisions = re.search(r"^  decisions .*$", text, re.MULTILINE)
    assert decisions is not None, text
    for decision in ("APPROVE", "REVIEW", "DECLINE"):
        found = re.search(rf"{decision} ([\d,]+)", decisions.group(0))
        counts[decision] = int(found.group(1).replace(",", "")) if found else 0
    return counts


@pytest.fixture
def demo_env(kafka_bootstrap: str) -> Iterator[dict[str, str]]:
    """Environment overrides giving the demo its own topics and group; topics deleted after."""
    suffix = uuid.uuid4().hex[:10]
    topics = {
        "STREAMPROC_KAFKA__INPUT_TOPIC": f"demo-in-{suffix}",
        "STREAMPROC_KAFKA__DECISIONS_TOPIC": f"demo-decisions-{suffix}",
        "STREAMPROC_KAFKA__DEAD_LETTER_TOPIC": f"demo-dlq-{suffix}",
    }
    env = {
        **os.environ,
        **topics,
        "STREAMPROC_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "STREAMPROC_KAFKA__GROUP_ID": f"demo-{suffix}",
        "STREAMPROC_OBSERVABILITY__HTTP_PORT": "0",
    }
    yield env
    delete_topics(kafka_bootstrap, list(topics.values()))


def run_demo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamproc", "demo", "--config", "config/local.toml", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
    )


def test_demo_decides_every_event_exactly_once(demo_env: dict[str, str], tmp_path: Path) -> None:
    """A timed demo run shows all three decisions and dead letters, loses and doubles nothing."""
    result = run_demo(
        demo_env,
        "--duration", "6",
        "--rate", "100",
        "--partitions", "3",
        "--emulator-port", "0",
        "--seed", "7",
        "--log-dir", str(tmp_path),
    )  # fmt: skip
    output = result.stdout + result.stderr

    assert result.returncode == 0, output
    counts = summary_counts(result.stdout)
    assert counts["produced"] >= 500, output
    assert counts["APPROVE"] > counts["REVIEW"] > counts["DECLINE"] > 0, output
    assert counts["dead letters"] > 0, output
    assert counts["decisions"] + counts["dead letters"] == counts["produced"], output
    assert (counts["missing"], counts["duplicates"]) == (0, 0), output
    assert "result        OK: every produced event came out exactly once" in result.stdout
    assert "malformed records at their expected stage" in result.stdout
    # The header points a browser at the live status page.
    assert re.search(r"^  status page   http://127\.0\.0\.1:\d+/ ", result.stdout, re.MULTILINE)
    # Without a terminal the view is plain lines: no cursor movement in a log.
    assert "\x1b[" not in result.stdout
    # The processor's logs went to the log file, not into the view.
    log = (tmp_path / "demo.log").read_text()
    assert '"event":"processor_stopped"' in log
    assert '"event":"processor_stopped"' not in output


def test_demo_without_a_broker_says_to_start_one(tmp_path: Path) -> None:
    """With no broker at the bootstrap address the demo says `make kafka-up` and exits 1."""
    env = {**os.environ, "STREAMPROC_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    result = run_demo(env, "--duration", "1", "--log-dir", str(tmp_path))
    assert result.returncode == 1
    assert "no Kafka broker answers at 127.0.0.1:1" in result.stderr
    assert "make kafka-up" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_says_when_the_emulator_port_is_taken(
    demo_env: dict[str, str], tmp_path: Path
) -> None:
    """A busy emulator port is named, with what to do about it, and the demo exits 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_demo(demo_env, "--emulator-port", str(port), "--log-dir", str(tmp_path))
    assert result.returncode == 1
    assert f"cannot start the Control Room emulator on 127.0.0.1:{port}" in result.stderr
    assert "--emulator-port PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_serves_metrics_elsewhere_when_their_port_is_taken(
    demo_env: dict[str, str], tmp_path: Path
) -> None:
    """A busy metrics port does not stop the demo: it serves them on a free port and says so."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**demo_env, "STREAMPROC_OBSERVABILITY__HTTP_PORT": str(port)}
        result = run_demo(
            env, "--duration", "1", "--rate", "50", "--emulator-port", "0",
            "--log-dir", str(tmp_path),
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(
        rf"metrics +http://127\.0\.0\.1:\d+/metrics \({port} is in use\)", result.stdout
    )


def test_kafka_client_log_lines_go_to_the_log_file_not_the_view(
    demo_env: dict[str, str], tmp_path: Path
) -> None:
    """librdkafka's own lines (here configuration warnings from the processor's consumer and
    producer) are written to the demo's log file as JSON events, never into its output."""
    env = {
        **demo_env,
        # A producer property given to the consumer, and a consumer property to the producer:
        # librdkafka warns about each (facility CONFWARN) as the client starts.
        "STREAMPROC_KAFKA__CONSUMER_OVERRIDES": '{"queue.buffering.max.kbytes": "65536"}',
        "STREAMPROC_KAFKA__PRODUCER_OVERRIDES": '{"fetch.min.bytes": "1"}',
    }
    result = run_demo(
        env,
        "--duration", "1",
        "--rate", "20",
        "--partitions", "1",
        "--emulator-port", "0",
        "--log-dir", str(tmp_path),
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "CONFWARN" not in output
    assert not re.search(r"^%\d\|", output, re.MULTILINE), output
    log = (tmp_path / "demo.log").read_text().splitlines()
    lines = [json.loads(line) for line in log if line.startswith("{")]
    warned = {
        line["client"].split("#")[1].split("-")[0]
        for line in lines
        if line.get("event") == "kafka_client_log" and line.get("facility") == "CONFWARN"
    }
    assert warned == {"consumer", "producer"}, lines
