"""The KAFKA_TESTCONTAINERS path: a broker container started by testcontainers serves a
processor end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.containers import free_port, kafka_container, podman
from tests.fixtures.emulator import EmulatorHandle
from tests.fixtures.kafka import REPO_ROOT, produce_records, wait_until
from tests.integration.containers.conftest import Report
from tests.integration.containers.ledger import outputs_by_input, record_count
from tests.integration.processor.harness import event, new_topics, record_of

pytestmark = pytest.mark.integration


def test_processor_runs_end_to_end_against_a_testcontainers_broker(
    container_engine: None,
    emulator: EmulatorHandle,
    unique_group: str,
    report: Report,
    tmp_path: Path,
) -> None:
    """testcontainers starts apache/kafka through the engine's API; `streamproc run` scores
    every event through it and stops cleanly; the container is gone afterwards."""
    with kafka_container() as broker:
        topics = new_topics(broker.bootstrap, partitions=3)
        events = [event(f"tc-{i}", f"card-{i % 7}") for i in range(60)]
        produce_records(
            broker.bootstrap,
            topics.input,
            [record_of(ev) for ev in events] + [(b"card-x", b"not json", None)],
        )
        # Only these settings: a STREAMPROC_ variable of the caller's shell would change them.
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("STREAMPROC_")},
            "STREAMPROC_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
            "STREAMPROC_KAFKA__GROUP_ID": unique_group,
            "STREAMPROC_KAFKA__INPUT_TOPIC": topics.input,
            "STREAMPROC_KAFKA__DECISIONS_TOPIC": topics.decisions,
            "STREAMPROC_KAFKA__DEAD_LETTER_TOPIC": topics.dlq,
            "STREAMPROC_CONTROLROOM__URL": emulator.url,
            "STREAMPROC_OBSERVABILITY__HTTP_PORT": str(free_port()),
        }
        log_path = tmp_path / "processor.log"
        with log_path.open("wb") as log:
            processor = subprocess.Popen(
                [sys.executable, "-m", "streamproc", "run", "--config", "config/local.toml"],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(
                lambda: record_count(broker.bootstrap, topics.decisions)
                + record_count(broker.bootstrap, topics.dlq)
                >= len(events) + 1,
                timeout_s=180, interval_s=0.5, message="an answer to every event",
            )  # fmt: skip
            answered = True
        except TimeoutError:
            answered = False
        finally:
            processor.send_signal(signal.SIGTERM)
            processor.wait(timeout=120)
        logged = log_path.read_text()[-3000:]
        assert answered, f"not every event was answered within 180 s; the processor:\n{logged}"
        assert processor.returncode == 0, logged
        outputs = outputs_by_input(broker.bootstrap, topics.decisions, topics.dlq)
        assert len(outputs) == len(events) + 1
        assert set(outputs.values()) == {1}
        container_id = broker.container_id
        report(f"testcontainers: {broker.image} at {broker.bootstrap}, {len(outputs)} answered")
    assert podman("container", "exists", container_id, check=False).returncode == 1
