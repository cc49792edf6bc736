"""The fault tests' processes: processor replicas that can be killed, and their load.

The processor runs as ``python -m streamproc run --config ...`` in a child process
(:class:`Replica`), so SIGKILL is a real crash: no drain, no final commit, no producer flush.
The emulator and the load generator are child processes too (``bench.stack``), so the test
process only watches and reads.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bench.stack import ROOT, Processor, Topics, free_port, processor_config, stop_process
from streamproc.config import ProcessingSettings
from tests.fixtures.kafka import wait_until
from tests.integration.faults.topics import Commits, end_offsets

# A killed member's partitions move once the group stops hearing from it: the shortest
# session the settings allow, so a restart waits seconds, not the default 45. Only for tests
# that kill the processor: a session this short also ends when a broker failover keeps the
# group coordinator away for 6 s, and the member's partitions are lost and replayed.
SHORT_SESSION = "session_timeout_ms = 6000\n"


DELIVERY_MODES = ("at_least_once", "exactly_once")


def delivery_params(modes: Iterable[str]) -> list[Any]:
    """``modes`` as test parameters; exactly-once is skipped by a build whose settings have no
    ``processing.delivery``."""
    built = "delivery" in ProcessingSettings.model_fields
    skip = pytest.mark.skipif(
        not built, reason='this build has no processing.delivery setting ("exactly_once")'
    )
    return [
        pytest.param(mode, id=mode, marks=() if mode == "at_least_once" else skip) for mode in modes
    ]


def processing_lines(delivery: str, extra: str = "") -> str:
    """``[processing]`` lines for ``delivery``; at-least-once is the default, left unset."""
    lines = extra
    if delivery != "at_least_once":
        lines += f'delivery = "{delivery}"\n'
    return lines


class Replica:
    """One consumer-group member: ``streamproc run`` in a child process, started again with
    the same settings after a kill. Its output goes to ``log``."""

    def __init__(
        self,
        topics: Topics,
        emulator_url: str,
        *,
        servers: str,
        group: str,
        log: Path,
        processing: str = "",
        kafka: str = "",
    ) -> None:
        self.port = free_port()
        self.group = group
        self.config = processor_config(
            topics,
            emulator_url,
            port=self.port,
            processing=processing,
            group=group,
            kafka=kafka,
            servers=servers,
        )
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamproc", "run", "--config", str(self.config)],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_processor_environment(),
            )
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        """/readyz answers 200: joined the group, partitions assigned, able to score."""
        if not self.alive():
            raise AssertionError(f"the processor exited ({self.exit_status()}):\n{self.tail()}")
        try:
            self.http("/readyz")
        except OSError:
            return False
        return True

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        wait_until(self.ready, timeout_s, 0.1, "the processor's /readyz")

    def kill(self) -> float:
        """SIGKILL: the process ends where it stands. Returns when (epoch seconds)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        return time.time()

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM, the orchestrator's stop: drain, commit, leave the group."""
        if self.proc is None:
            return None
        return stop_process(self.proc, timeout_s)

    def exit_status(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def metrics(self) -> Processor:
        assert self.proc is not None
        return Processor(self.proc, self.url)

    def http(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=2) as response:
            body: bytes = response.read()
        return body

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def remove(self) -> None:
        if self.alive():
            self.stop(10)
        self.config.unlink(missing_ok=True)


@dataclass
class Run:
    """A consumer group under test, its first member started and ready."""

    servers: str
    topics: Topics
    members: list[Replica]
    commits: Commits
    abandoned: bool = False

    @property
    def processor(self) -> Replica:
        return self.members[0]

    def abandon(self) -> None:
        """Kill every member: the group is stuck for good, nothing is left to wait for."""
        self.abandoned = True
        for member in self.members:
            if member.alive():
                member.kill()

    def caught_up(self, timeout_s: float = 90.0) -> float:
        """Wait until the group has committed the input up to its end as it is now; returns
        when that was (epoch seconds)."""
        ends = end_offsets(self.servers, self.topics.input)

        def done() -> bool:
            now = self.commits()
            return all(end == 0 or now.get(p, -1) >= end for p, end in ends.items())

        wait_until(done, timeout_s, 0.2, f"the group to commit up to {ends}")
        return time.time()


@contextmanager
def group_run(
    servers: str,
    topics: Topics,
    emulator_url: str,
    log_dir: Path,
    *,
    processing: str = "",
    kafka: str = "",
    members: int = 1,
) -> Iterator[Run]:
    """``members`` replicas of a new group, the first one started. When the block ends (its
    load stopped), the group is left to process and commit the whole input, then each member
    still running is stopped and must exit 0; unless the run was abandoned."""
    group = f"fault-{uuid.uuid4().hex[:8]}"
    made = [
        Replica(
            topics,
            emulator_url,
            servers=servers,
            group=group,
            log=log_dir / f"processor-{i + 1}.log",
            processing=processing,
            # Each replica its own client id, as each pod has its own host name: they make
            # its transactional id, which a restart of the replica reuses (fencing what its
            # predecessor left open) and which two replicas must never share.
            kafka=kafka + f'client_id = "streamproc-{i + 1}"\n',
        )
        for i in range(members)
    ]
    run = Run(servers, topics, made, Commits(servers, group, topics.input))
    try:
        run.processor.start()
        run.processor.wait_ready()
        yield run
        if not run.abandoned:
            run.caught_up()
            for member in made:
                if member.alive():
                    assert member.stop() == 0, member.tail()
    finally:
        run.commits.close()
        for member in made:
            member.remove()


@contextmanager
def load(
    servers: str, topic: str, *, rate: float, malformed_ratio: float = 0.0, seed: int = 7
) -> Iterator[subprocess.Popen[bytes]]:
    """``bench.loadgen`` producing ``rate`` events/s until the block ends (SIGTERM: it flushes
    what it produced)."""
    from bench.stack import loadgen

    proc = loadgen(topic, rate=rate, malformed_ratio=malformed_ratio, seed=seed, servers=servers)
    try:
        yield proc
    finally:
        # Killed if its producer still waits on a broker a test restarted: the load generator
        # is not under test, and what it never wrote is not in the input topic, so not lost.
        stop_process(proc, 60)


@dataclass
class Sampler:
    """Calls ``sample`` every ``interval_s`` in a thread and keeps (epoch seconds, result)."""

    sample: Callable[[], Any]
    interval_s: float = 0.1
    samples: list[tuple[float, Any]] = field(default_factory=list)
    errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="fault-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                value = self.sample()
            except Exception:  # a process between restarts: count it and go on
                self.errors += 1
                continue
            self.samples.append((time.time(), value))


def _processor_environment() -> dict[str, str]:
    """This process's environment without ``STREAMPROC_*`` variables: the test's settings
    file is the processor's whole configuration."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STREAMPROC_")}
