"""The image built from the project's Dockerfile: what it runs as, what it ships, how it stops."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator

import pytest

from tests.fixtures.containers import BASE_IMAGES, free_port, image_size_bytes, podman
from tests.fixtures.emulator import EmulatorFactory
from tests.fixtures.kafka import wait_until
from tests.integration.containers.conftest import Report
from tests.integration.containers.ledger import (
    committed,
    http_get,
    metric_total,
    outputs_by_input,
    record_count,
)
from tests.integration.processor.harness import Topics, event, new_topics, produce_events

pytestmark = pytest.mark.integration

MB = 1_000_000


def run_image(image: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    env_args = [f"--env={name}={value}" for name, value in (env or {}).items()]
    result = podman("run", "--rm", *env_args, image, *args, check=False, timeout_s=120)
    return result.returncode, result.stdout, result.stderr


@contextlib.contextmanager
def processor_container(
    image: str, bootstrap: str, emulator_url: str, topics: Topics, group: str, **env: str
) -> Iterator[tuple[str, int]]:
    """``streamproc run`` in a container on the host's network; removed afterwards.

    Yields the container's name and the port of its metrics and health endpoints.
    """
    name, port = f"streamproc-test-{uuid.uuid4().hex[:8]}", free_port()
    settings = {
        "STREAMPROC_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "STREAMPROC_KAFKA__GROUP_ID": group,
        "STREAMPROC_KAFKA__INPUT_TOPIC": topics.input,
        "STREAMPROC_KAFKA__DECISIONS_TOPIC": topics.decisions,
        "STREAMPROC_KAFKA__DEAD_LETTER_TOPIC": topics.dlq,
        "STREAMPROC_KAFKA__COMMIT_INTERVAL_MS": "200",
        "STREAMPROC_CONTROLROOM__URL": emulator_url,
        "STREAMPROC_OBSERVABILITY__HTTP_PORT": str(port),
        **env,
    }
    podman(
        "run", "--detach", f"--name={name}", "--network=host",
        *(f"--env={key}={value}" for key, value in settings.items()),
        image, "run", "--config", "config/local.toml",
    )  # fmt: skip
    try:
        yield name, port
    finally:
        podman("rm", "--force", "--time=5", name, check=False)


def stop_with_sigterm(name: str) -> int:
    """Send SIGTERM to the container's main process and return its exit status."""
    podman("kill", "--signal=TERM", name)
    return int(podman("wait", name, timeout_s=180).stdout.strip())


def log_events(name: str) -> list[dict[str, object]]:
    logs = podman("logs", name)
    lines = logs.stdout.splitlines() + logs.stderr.splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_image_runs_as_an_unprivileged_user(streamproc_image: str) -> None:
    """The image declares a numeric non-root user, and its processes run as that user."""
    declared = podman("image", "inspect", "--format", "{{.Config.User}}", streamproc_image)
    assert declared.stdout.strip() == "10001:10001"
    result = podman(
        "run", "--rm", "--entrypoint=python", streamproc_image,
        "-c", "import os; print(os.getuid(), os.getgid())",
    )  # fmt: skip
    assert result.stdout.split() == ["10001", "10001"]


def test_help_and_check_work_inside_the_image(streamproc_image: str) -> None:
    """`streamproc --help` and `streamproc run --check` answer inside the image; the check
    masks secrets and a bad setting fails with exit 2 naming its key."""
    status, out, err = run_image(streamproc_image, "--help")
    assert status == 0, err
    assert "run" in out
    assert "emulator" in out

    secret = "not-for-logs-" + uuid.uuid4().hex
    status, out, err = run_image(
        streamproc_image, "run", "--config", "config/local.toml", "--check",
        env={"STREAMPROC_CONTROLROOM__PASSWORD": secret, "STREAMPROC_KAFKA__GROUP_ID": "fraud-2"},
    )  # fmt: skip
    assert status == 0, err
    shown = json.loads(out)
    assert shown["kafka"]["group_id"] == "fraud-2"
    assert shown["observability"]["http_host"] == "0.0.0.0"
    assert secret not in out + err

    status, out, err = run_image(
        streamproc_image, "run", "--config", "config/local.toml", "--check",
        env={"STREAMPROC_PROCESSING__MAX_IN_FLIGHT": "-1"},
    )  # fmt: skip
    assert status == 2
    assert "processing.max_in_flight" in err
    assert "Traceback" not in err


def test_image_is_small_and_ships_no_build_tools(streamproc_image: str, report: Report) -> None:
    """The final stage adds the application only: no compiler, pip, setuptools or sources."""
    size = image_size_bytes(streamproc_image)
    base = image_size_bytes(BASE_IMAGES[0])
    report(
        f"image {streamproc_image}: {size / MB:.0f} MB, of which {base / MB:.0f} MB is its base "
        f"{BASE_IMAGES[0]} and {(size - base) / MB:.0f} MB the application and its packages"
    )
    assert size - base < 150 * MB
    probe = (
        "import importlib.util, os, shutil; "
        "print(sorted(t for t in ('gcc', 'cc', 'make', 'git') if shutil.which(t))); "
        "print(sorted(m for m in ('pip', 'setuptools', 'wheel') if importlib.util.find_spec(m))); "
        "print(os.path.exists('/src'), os.path.exists('/app/streamproc'))"
    )
    result = podman("run", "--rm", "--entrypoint=python", streamproc_image, "-c", probe)
    assert result.stdout.split("\n")[:3] == ["[]", "[]", "False False"]


def test_documented_probes_answer_from_a_processor_container(
    streamproc_image: str,
    kafka_bootstrap: str,
    emulator_factory: EmulatorFactory,
    unique_group: str,
) -> None:
    """A processor container answers /healthz and /readyz with 200 once it has joined its
    group, and serves its metrics."""
    emulator = emulator_factory()
    topics = new_topics(kafka_bootstrap, partitions=2)
    with processor_container(
        streamproc_image, kafka_bootstrap, emulator.url, topics, unique_group
    ) as (_name, port):
        base = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: http_get(f"{base}/readyz")[0] == 200, timeout_s=90, interval_s=0.5,
            message="/readyz of the processor container to answer 200",
        )  # fmt: skip
        assert http_get(f"{base}/healthz")[0] == 200
        status, metrics = http_get(f"{base}/metrics")
        assert status == 200
        assert "streamproc_events_consumed_total" in metrics


def test_sigterm_to_the_container_drains_and_commits(
    streamproc_image: str,
    kafka_bootstrap: str,
    emulator_factory: EmulatorFactory,
    unique_group: str,
) -> None:
    """SIGTERM mid-stream: the container finishes what it holds, commits exactly what it
    answered and exits 0; a new container in the group answers the rest, each event once."""
    # Each execute takes 1.2 s (within the 2 s attempt timeout), so events are in flight
    # whenever SIGTERM comes.
    emulator = emulator_factory(latency_ms=1200, latency_jitter_ms=0)
    topics = new_topics(kafka_bootstrap, partitions=3)
    events = [event(f"ev-{i}", f"card-{i % 17}") for i in range(60)]
    produce_events(kafka_bootstrap, topics.input, events)
    env = {
        # Fresh events, long SLA: every event is scored by the API Task, none decided at once.
        "STREAMPROC_PROCESSING__DECISION_SLA_MS": "300000",
        # As many in flight as the allocation has slots: none waits for one, none is shed.
        "STREAMPROC_PROCESSING__MAX_IN_FLIGHT": "8",
        # Draining 8 events takes a second or two; the margin is for a loaded machine.
        "STREAMPROC_PROCESSING__DRAIN_TIMEOUT_S": "60",
    }

    def answered() -> int:
        return record_count(kafka_bootstrap, topics.decisions) + record_count(
            kafka_bootstrap, topics.dlq
        )

    with processor_container(
        streamproc_image, kafka_bootstrap, emulator.url, topics, unique_group, **env
    ) as (name, port):

        def in_flight() -> float:
            metrics = http_get(f"http://127.0.0.1:{port}/metrics")[1]
            return metric_total(metrics, "streamproc_in_flight_events")

        wait_until(
            lambda: answered() >= 10 and in_flight() > 0, timeout_s=120, interval_s=0.2,
            message="10 answers and more in flight",
        )  # fmt: skip
        assert stop_with_sigterm(name) == 0
        logged = log_events(name)
    stopped = [e for e in logged if e.get("event") == "processor_stopped"]
    assert stopped, logged[-10:]
    assert stopped[-1]["drained"] is True, logged[-10:]
    assert stopped[-1]["abandoned"] == 0

    first_run = outputs_by_input(kafka_bootstrap, topics.decisions, topics.dlq)
    commits = committed(kafka_bootstrap, unique_group, topics.input)
    assert max(first_run.values()) == 1
    for partition, offset in commits.items():
        answered_here = sorted(o for p, o in first_run if p == partition)
        assert answered_here == list(range(offset)), f"partition {partition}"
    assert 10 <= sum(commits.values()) < len(events)

    with processor_container(
        streamproc_image, kafka_bootstrap, emulator.url, topics, unique_group, **env
    ) as (name, _port):
        wait_until(
            lambda: answered() >= len(events), timeout_s=120, interval_s=0.5,
            message=f"{len(events)} answers after the restart",
        )  # fmt: skip
        assert stop_with_sigterm(name) == 0
    every = outputs_by_input(kafka_bootstrap, topics.decisions, topics.dlq)
    assert len(every) == len(events)
    assert set(every.values()) == {1}
