"""The pieces of a processor benchmark, each in a process of its own.

An emulator inside the processor would share its interpreter lock and distort every figure, so
a benchmark starts:

- :func:`emulator`: ``streamproc emulator`` with one allocation (the Fraud Score API Task);
- :func:`processor`: ``streamproc run`` with a generated TOML file, ready once ``/readyz``
  answers; its CPU time and resident memory are read from /proc;
- :func:`loadgen`: ``python -m bench.loadgen`` producing at a steady rate;
- :class:`Reader`: a downstream consumer, in a thread here, that notes when each decision
  arrives, so decision age is measured as a fraud analyst's consumer would see it.

``cwd`` runs another checkout's ``streamproc`` with this one's interpreter: the same benchmark
then compares two versions of the processor.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer

from streamproc.kafka.admin import ensure_topics

ROOT = Path(__file__).parents[1]
FRAUD_FILE_ID = 201
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def bootstrap() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_kib(pid: int) -> dict[str, int]:
    """Resident memory now (VmRSS) and at its peak (VmHWM), in KiB."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values


def http_json(url: str, *, method: str = "GET", body: Any = None) -> Any:
    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        raw = response.read()
    return orjson.loads(raw) if raw else None


def wait_http(url: str, within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def stop_process(proc: subprocess.Popen[Any], timeout_s: float = 30) -> int | None:
    """SIGTERM, then SIGKILL after ``timeout_s``; its pipes, if any, are read and closed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=5)
    return proc.returncode


# Where each load generator sends one record before its events (see ``loadgen``); shared by
# every run, never read.
WARM_UP_TOPIC = "bench-warm-up"


@dataclass
class Topics:
    input: str
    decisions: str
    dlq: str

    @classmethod
    def fresh(cls, partitions: int = 6) -> Topics:
        suffix = uuid.uuid4().hex[:8]
        topics = cls(f"bench-tx-{suffix}", f"bench-decisions-{suffix}", f"bench-dlq-{suffix}")
        ensure_topics(
            bootstrap(),
            {topics.input: partitions, topics.decisions: partitions, topics.dlq: 1},
        )
        return topics


@dataclass
class Emulator:
    url: str
    proc: subprocess.Popen[bytes]

    def set_behavior(self, **fields: Any) -> None:
        http_json(f"{self.url}/emulator/v1/behavior/{FRAUD_FILE_ID}", method="PUT", body=fields)

    def stats(self) -> dict[str, Any]:
        stats = http_json(f"{self.url}/emulator/v1/stats")
        allocation: dict[str, Any] = next(
            a for a in stats["allocations"] if int(a["fileId"]) == FRAUD_FILE_ID
        )
        return allocation

    def attempted(self) -> int:
        """Executes that reached the allocation: answered, failed, or refused over the limit."""
        s = self.stats()
        return int(s["executed"]) + int(s["failed"]) + int(s["rejected"])


@contextmanager
def emulator(
    limit: int,
    latency_ms: float,
    *,
    distribution: str = "fixed",
    jitter_ms: float = 0.0,
    cwd: Path = ROOT,
) -> Iterator[Emulator]:
    port = free_port()
    config = Path(tempfile.mkstemp(suffix=".toml")[1])
    config.write_text(
        f"[[allocations]]\nfile_id = {FRAUD_FILE_ID}\n"
        f"concurrency_limit = {limit}\nrun_as_user_id = 12\n"
    )
    command = [
        sys.executable, "-m", "streamproc", "emulator", "--port", str(port),
        "--config", str(config), "--latency-ms", str(latency_ms),
        "--latency-distribution", distribution, "--latency-jitter-ms", str(jitter_ms),
        "--no-access-log", "--log-level", "WARNING",
    ]  # fmt: skip
    proc = subprocess.Popen(command, cwd=cwd)
    handle = Emulator(f"http://127.0.0.1:{port}", proc)
    try:
        wait_http(f"{handle.url}/emulator/v1/health")
        yield handle
    finally:
        stop_process(proc)
        config.unlink(missing_ok=True)


@dataclass
class Processor:
    proc: subprocess.Popen[bytes]
    metrics_url: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def memory_kib(self) -> dict[str, int]:
        return memory_kib(self.pid)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.metrics_url}/metrics", timeout=5) as response:
            text: str = response.read().decode()
        return text

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples whose labels include ``labels``."""
        total = 0.0
        for line in self.metrics().splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            head, _, rest = series.partition("{")
            if head != name:
                continue
            if all(f'{k}="{v}"' in rest for k, v in labels.items()):
                total += float(value)
        return total


def processor_config(
    topics: Topics,
    emulator_url: str,
    *,
    port: int,
    processing: str = "",
    group: str | None = None,
    kafka: str = "",
    servers: str | None = None,
) -> Path:
    """A TOML file for ``streamproc run``; ``processing`` and ``kafka`` are extra TOML lines of
    those sections, ``servers`` the bootstrap servers (default :func:`bootstrap`)."""
    path = Path(tempfile.mkstemp(suffix=".toml")[1])
    path.write_text(f"""
[kafka]
bootstrap_servers = "{servers or bootstrap()}"
group_id = "{group or "bench-" + uuid.uuid4().hex[:8]}"
input_topic = "{topics.input}"
decisions_topic = "{topics.decisions}"
dead_letter_topic = "{topics.dlq}"
{kafka}

[controlroom]
url = "{emulator_url}"
username = "bot-developer"
password = "bot-developer-password"
admin_username = "cr-admin"
admin_password = "cr-admin-password"

[processing]
{processing}

[observability]
log_level = "WARNING"
http_enabled = true
http_port = {port}
progress_interval_s = 0
""")
    return path


@contextmanager
def processor(
    topics: Topics,
    emulator_url: str,
    *,
    processing: str = "",
    kafka: str = "",
    cwd: Path = ROOT,
    group: str | None = None,
) -> Iterator[Processor]:
    port = free_port()
    config = processor_config(
        topics, emulator_url, port=port, processing=processing, kafka=kafka, group=group
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamproc", "run", "--config", str(config)], cwd=cwd
    )
    handle = Processor(proc, f"http://127.0.0.1:{port}")
    try:
        wait_http(f"{handle.metrics_url}/readyz")
        yield handle
    finally:
        stop_process(proc)
        config.unlink(missing_ok=True)


def loadgen(
    topic: str,
    *,
    rate: float = 0.0,
    duration_s: float | None = None,
    count: int | None = None,
    cards: int = 5_000,
    seed: int = 7,
    malformed_ratio: float = 0.0,
    servers: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start the load generator; ``finish`` it to read its summary. With neither
    ``duration_s`` nor ``count`` it produces until it gets SIGTERM. It first waits for an
    acknowledgement from :data:`WARM_UP_TOPIC`, so no event is stamped before its producer
    can send."""
    servers = servers or bootstrap()
    ensure_topics(servers, {WARM_UP_TOPIC: 1})
    command = [
        sys.executable, "-m", "bench.loadgen", "--bootstrap", servers,
        "--topic", topic, "--rate", str(rate), "--cards", str(cards), "--seed", str(seed),
        "--malformed-ratio", str(malformed_ratio), "--warm-up-topic", WARM_UP_TOPIC,
    ]  # fmt: skip
    if duration_s is not None:
        command += ["--duration", str(duration_s)]
    if count is not None:
        command += ["--count", str(count)]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE)


def finish(proc: subprocess.Popen[bytes], timeout_s: float = 120) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed with status {proc.returncode}")
    summary: dict[str, Any] = orjson.loads(out.splitlines()[-1])
    return summary


@dataclass(slots=True)
class Output:
    event_id: str
    received: float  # wall clock at the reader
    occurred: float | None  # the event's occurred_at (decisions only)
    fallback: bool
    reason: str | None
    dead_letter: bool
    key: bytes | None = None  # the record key: the card, for decisions keyed like their input
    decided: float | None = None  # the decision's decided_at (decisions only)


def _epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


@dataclass
class Reader:
    """Reads the decisions and dead-letter topics from the start, in a thread."""

    topics: Topics
    outputs: list[Output] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _ready: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Reader:
        self._thread = threading.Thread(target=self._run, name="bench-reader", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the reader got no assignment within 30 s")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def count(self) -> int:
        return len(self.outputs)

    def wait_for(self, total: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while len({o.event_id for o in self.outputs}) < total:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def _run(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap(),
                "group.id": f"bench-reader-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 10,
            }
        )
        consumer.subscribe(
            [self.topics.decisions, self.topics.dlq], on_assign=lambda *_: self._ready.set()
        )
        try:
            while not self._stop.is_set():
                # consume(n, t) returns once n records came or t passed: asking for a batch
                # would hold each record back up to t, and add that to every decision's age.
                # Wait for one, then take what is already fetched.
                messages = consumer.consume(1, 0.05)
                if messages:
                    messages += consumer.consume(999, 0)
                for msg in messages:
                    if msg.error() is None:
                        self._add(msg.topic(), msg.value(), dict(msg.headers() or ()), msg.key())
        finally:
            consumer.close()

    def _add(
        self,
        topic: str,
        value: bytes | None,
        headers: dict[str, bytes | None],
        key: bytes | None = None,
    ) -> None:
        now = time.time()
        if topic == self.topics.decisions and value:
            d = orjson.loads(value)
            decided = _epoch(d["decided_at"])
            occurred = decided - d["latency_ms"] / 1000
            self.outputs.append(
                Output(
                    d["event_id"],
                    now,
                    occurred,
                    d["fallback"],
                    d["fallback_reason"],
                    dead_letter=False,
                    key=key,
                    decided=decided,
                )
            )
        else:
            raw = headers.get("x-sample-event-id") or b"?"
            self.outputs.append(Output(raw.decode(), now, None, False, None, True))


@dataclass
class Sampler:
    """Notes (outputs read, wall time, a process's CPU seconds) every ``interval_s``, in a
    thread: rates and CPU per event are then taken between two of these samples."""

    reader: Reader
    pid: int
    interval_s: float = 0.05
    samples: list[tuple[int, float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                cpu = cpu_seconds(self.pid)
            except OSError:
                return  # the process is gone
            self.samples.append((self.reader.count(), time.monotonic(), cpu))

    def between(self, low: int, high: int) -> tuple[float, float, int]:
        """(seconds, CPU seconds, outputs) from the first sample at ``low`` outputs or more to
        the first at ``high`` or more."""
        first = next(s for s in self.samples if s[0] >= low)
        last = next(s for s in self.samples if s[0] >= high)
        return last[1] - first[1], last[2] - first[2], last[0] - first[0]


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
