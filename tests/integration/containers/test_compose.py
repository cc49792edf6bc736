"""docker-compose.yml brought up with podman-compose: the whole job, seen from the host."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.fixtures.containers import free_port, podman
from tests.fixtures.kafka import REPO_ROOT, produce_records, wait_until
from tests.integration.containers.conftest import Report
from tests.integration.containers.ledger import (
    http_get,
    members_partitions,
    metric_total,
    outputs_by_input,
    record_count,
)
from tests.integration.processor.harness import event, record_of

pytestmark = pytest.mark.integration

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
PODMAN_COMPOSE = Path(sys.executable).with_name("podman-compose")
HOST_EVENTS = 150
MALFORMED = [b"not json", b"{}", b'{"event_id": "x", "occurred_at": "yesterday", "amount": 1}']


def compose(project: str, env: dict[str, str], *args: str, timeout_s: float = 300) -> str:
    result = subprocess.run(
        [str(PODMAN_COMPOSE), "--file", str(COMPOSE_FILE), "--project-name", project, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert result.returncode == 0, f"podman-compose {args[0]}: {result.stderr[-3000:]}"
    return result.stdout


def test_compose_stack_answers_every_event_once_across_two_replicas(
    streamproc_image: str, report: Report
) -> None:
    """`up` runs broker, topics, emulator, generator and two processor replicas; events
    produced from the host and by the generator each get exactly one decision or dead letter,
    both replicas take part and answer their probes, and `down` removes every container."""
    project = f"streamproc-test-{uuid.uuid4().hex[:8]}"
    ports = {name: free_port() for name in ("KAFKA", "EMULATOR", "PROCESSOR_1", "PROCESSOR_2")}
    env = {
        **os.environ,
        **{f"{name}_PORT": str(port) for name, port in ports.items()},
        "GENERATOR_RATE": "100",
        "GENERATOR_DURATION_S": "3",
    }
    bootstrap = f"127.0.0.1:{ports['KAFKA']}"
    replicas = [f"http://127.0.0.1:{ports[name]}" for name in ("PROCESSOR_1", "PROCESSOR_2")]
    try:
        compose(project, env, "up", "--detach", "--no-build")
        for replica in replicas:
            wait_until(
                lambda replica=replica: http_get(f"{replica}/readyz")[0] == 200,
                timeout_s=180, interval_s=1.0, message=f"{replica}/readyz to answer 200",
            )  # fmt: skip
        # Ready is not enough: the group's first assignment may give one replica every
        # partition until the other has joined.
        wait_until(
            lambda: sorted(members_partitions(bootstrap, "streamproc")) == [3, 3],
            timeout_s=120, interval_s=1.0, message="each replica to own 3 of the 6 partitions",
        )  # fmt: skip
        status = podman("wait", f"{project}_generator_1", timeout_s=120).stdout.strip()
        assert status == "0", "the generator failed"
        generated = record_count(bootstrap, "transactions")

        events = [event(f"host-{i}", f"card-{i % 23}") for i in range(HOST_EVENTS)]
        produce_records(
            bootstrap,
            "transactions",
            [record_of(ev) for ev in events] + [(b"card-x", bad, None) for bad in MALFORMED],
        )
        total = record_count(bootstrap, "transactions")
        assert total == generated + HOST_EVENTS + len(MALFORMED)

        def answered() -> int:
            return record_count(bootstrap, "decisions") + record_count(
                bootstrap, "transactions.dlq"
            )

        wait_until(
            lambda: answered() >= total, timeout_s=120, interval_s=0.5,
            message=f"{total} decisions and dead letters",
        )  # fmt: skip
        outputs = outputs_by_input(bootstrap, "decisions", "transactions.dlq")
        decisions = record_count(bootstrap, "decisions")
        dead_letters = record_count(bootstrap, "transactions.dlq")

        consumed = []
        for replica in replicas:
            assert http_get(f"{replica}/healthz")[0] == 200
            status_code, metrics = http_get(f"{replica}/metrics")
            assert status_code == 200
            consumed.append(metric_total(metrics, "streamproc_events_consumed_total"))
        report(
            f"compose: {total} events in ({generated} from the generator, "
            f"{HOST_EVENTS + len(MALFORMED)} from the host), {decisions} decisions + "
            f"{dead_letters} dead letters out, replicas consumed {consumed[0]:.0f} and "
            f"{consumed[1]:.0f}"
        )
        assert len(outputs) == total
        assert set(outputs.values()) == {1}
        assert dead_letters >= len(MALFORMED)
        assert all(count > 0 for count in consumed)
        assert sum(consumed) >= total
    finally:
        compose(project, env, "down", "--timeout", "30")
    left = podman("ps", "--all", "--quiet", f"--filter=name={project}_").stdout.split()
    assert left == []
