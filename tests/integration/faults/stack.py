"""What the fault tests run and read: processor processes that can be killed, and the topics'
full contents read back afterwards.

The processor runs as ``python -m streamproc run --config ...`` in a child process
(:class:`Replica`), so SIGKILL is a real crash: no drain, no final commit, no producer flush.
The emulator and the load generator are child processes too (``bench.stack``), so the test
process only reads.

Every topic a fault test makes stamps records with the broker's append time
(``message.timestamp.type=LogAppendTime``): an output's timestamp is when the broker wrote it,
whichever process produced it, so gaps and commit order are read from the broker's own clock.
Accounting is done after the run from a full read of the input and output topics
(``read_committed``): each input record's event id (the ``x-sample-event-id`` header of every
sample record, malformed ones too) must come out exactly once, as a decision (its
``event_id``) or a dead letter (the original headers, kept).
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
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupState,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from bench.stack import ROOT, Processor, Topics, free_port, processor_config, stop_process
from streamproc.config import ProcessingSettings
from streamproc.kafka.admin import TopicSpec, ensure_topics
from tests.fixtures.kafka import wait_until

EVENT_ID_HEADER = "x-sample-event-id"
APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}
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


def fresh_topics(
    servers: str,
    partitions: int,
    *,
    replication: int | None = None,
    decisions_replicas: list[list[int]] | None = None,
    decisions_config: Mapping[str, str] | None = None,
) -> Topics:
    """New input, decisions and dead-letter topics, stamped with the broker's append time.
    ``decisions_replicas`` places the decisions partitions on chosen brokers (one list of
    broker ids per partition, the preferred leader first)."""
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(f"fault-tx-{suffix}", f"fault-decisions-{suffix}", f"fault-dlq-{suffix}")
    decisions_settings = {**APPEND_TIME, **(decisions_config or {})}
    if decisions_replicas is not None:
        admin = AdminClient({"bootstrap.servers": servers})
        wanted = NewTopic(
            topics.decisions,
            num_partitions=len(decisions_replicas),
            replica_assignment=decisions_replicas,
            config=decisions_settings,
        )
        admin.create_topics([wanted])[topics.decisions].result(30)
    ensure_topics(
        servers,
        {
            topics.input: TopicSpec(partitions, replication, APPEND_TIME),
            topics.decisions: TopicSpec(partitions, replication, decisions_settings),
            topics.dlq: TopicSpec(1, replication, APPEND_TIME),
        },
    )
    return topics


# -- processes ------------------------------------------------------------------------------


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


@contextmanager
def replicas(
    topics: Topics,
    emulator_url: str,
    *,
    servers: str,
    log_dir: Path,
    processing: str = "",
    kafka: str = "",
    count: int = 1,
) -> Iterator[list[Replica]]:
    """``count`` members of one new consumer group, not started yet; stopped at the end.
    ``processing`` and ``kafka`` are extra lines of those sections of their settings."""
    group = f"fault-{uuid.uuid4().hex[:8]}"
    made = [
        Replica(
            topics,
            emulator_url,
            servers=servers,
            group=group,
            log=log_dir / f"processor-{i + 1}.log",
            processing=processing,
            kafka=kafka,
        )
        for i in range(count)
    ]
    try:
        yield made
    finally:
        for replica in made:
            replica.remove()


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
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


# -- reading the topics back ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InputRecord:
    event_id: str
    partition: int
    offset: int
    appended: float  # epoch seconds


@dataclass(frozen=True, slots=True)
class OutputRecord:
    event_id: str
    topic: str
    partition: int
    offset: int
    appended: float  # epoch seconds: when the broker wrote it
    dead_letter: bool
    decision: Mapping[str, Any] | None  # the decoded decision; None for a dead letter
    source: tuple[int, int] | None  # the input's (partition, offset)


def _header(msg: Message, name: str) -> bytes | None:
    for key, value in msg.headers() or ():
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


def read_all(servers: str, topics: list[str], timeout_s: float = 60.0) -> list[Message]:
    """Every committed record of ``topics``, read from the beginning to the end."""
    consumer = Consumer(
        {
            "bootstrap.servers": servers,
            "group.id": f"fault-read-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    try:
        metadata = consumer.list_topics(timeout=10)
        parts = [
            TopicPartition(topic, p, OFFSET_BEGINNING)
            for topic in topics
            for p in metadata.topics[topic].partitions
        ]
        consumer.assign(parts)
        pending = {(tp.topic, tp.partition) for tp in parts}
        got: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topics} did not reach the end of {sorted(pending)}")
            for msg in consumer.consume(1000, 0.5):
                error = msg.error()
                if error is None:
                    got.append(msg)
                elif error.code() == KafkaError._PARTITION_EOF:
                    pending.discard((msg.topic(), msg.partition()))
                else:
                    raise RuntimeError(f"reading {msg.topic()}: {error.str()}")
        return got
    finally:
        consumer.close()


def read_inputs(servers: str, topics: Topics) -> dict[str, InputRecord]:
    inputs: dict[str, InputRecord] = {}
    for msg in read_all(servers, [topics.input]):
        raw = _header(msg, EVENT_ID_HEADER)
        assert raw is not None, f"input {msg.partition()}:{msg.offset()} has no event id header"
        event_id = raw.decode()
        inputs[event_id] = InputRecord(
            event_id, msg.partition(), msg.offset(), msg.timestamp()[1] / 1000
        )
    return inputs


def read_outputs(servers: str, topics: Topics) -> list[OutputRecord]:
    outputs = []
    for msg in read_all(servers, [topics.decisions, topics.dlq]):
        decision: dict[str, Any] | None = None
        if msg.topic() == topics.decisions:
            decision = orjson.loads(msg.value())
            event_id = str(decision["event_id"])
            source = decision["source"]
            part, off = source["partition"], source["offset"]
        else:
            raw = _header(msg, EVENT_ID_HEADER)
            event_id = raw.decode() if raw else f"?{msg.offset()}"
            part = _header(msg, "streamproc.error.source.partition")
            off = _header(msg, "streamproc.error.source.offset")
        outputs.append(
            OutputRecord(
                event_id=event_id,
                topic=msg.topic(),
                partition=msg.partition(),
                offset=msg.offset(),
                appended=msg.timestamp()[1] / 1000,
                dead_letter=decision is None,
                decision=decision,
                source=(int(part), int(off)) if part is not None and off is not None else None,
            )
        )
    return outputs


@dataclass(frozen=True)
class Tally:
    """Inputs against outputs, by event id."""

    offered: int
    lost: list[str]
    duplicated: int
    decisions: int
    dead_letters: int
    unknown: int  # outputs whose event id is not among the inputs

    def describe(self) -> str:
        return (
            f"offered={self.offered} decisions={self.decisions} "
            f"dead_letters={self.dead_letters} lost={len(self.lost)} "
            f"duplicated={self.duplicated} unknown={self.unknown}"
        )


def tally(inputs: Mapping[str, InputRecord], outputs: list[OutputRecord]) -> Tally:
    counts = Counter(o.event_id for o in outputs)
    return Tally(
        offered=len(inputs),
        lost=sorted(set(inputs) - set(counts)),
        duplicated=sum(n - 1 for n in counts.values() if n > 1),
        decisions=sum(1 for o in outputs if not o.dead_letter),
        dead_letters=sum(1 for o in outputs if o.dead_letter),
        unknown=sum(1 for event_id in counts if event_id not in inputs),
    )


T = TypeVar("T")


def _through_failover(ask: Callable[[], T], timeout_s: float = 30.0) -> T:
    """``ask()``, asked again while a broker failover makes it fail (a coordinator or leader
    that moved, a new leader's high watermark not caught up yet)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ask()
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    return sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)


def end_offsets(servers: str, topic: str) -> dict[int, int]:
    """Each partition's high watermark: the offset after its last record."""
    consumer = Consumer({"bootstrap.servers": servers, "group.id": "fault-ends"})
    try:
        return {
            p: _through_failover(
                lambda p=p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            )
            for p in _partitions(consumer, topic)
        }
    finally:
        consumer.close()


class Commits:
    """The positions a group has committed on a topic, by partition (-1001 where none), asked
    of its coordinator without joining the group."""

    def __init__(self, servers: str, group: str, topic: str) -> None:
        self._consumer = Consumer({"bootstrap.servers": servers, "group.id": group})
        self._parts = [TopicPartition(topic, p) for p in _partitions(self._consumer, topic)]

    def __call__(self) -> dict[int, int]:
        answer = _through_failover(lambda: self._consumer.committed(self._parts, timeout=10))
        return {tp.partition: tp.offset for tp in answer}

    def close(self) -> None:
        self._consumer.close()

    def wait_for_advance(self, timeout_s: float) -> bool:
        """Until a commit moves some position (True), or ``timeout_s`` passes (False)."""
        before = self()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self() != before:
                return True
        return False


def assignment(servers: str, group: str) -> list[int]:
    """How many partitions each member of ``group`` owns, by its coordinator (sorted); empty
    while the group rebalances."""
    admin = AdminClient({"bootstrap.servers": servers})  # alive until the answer comes
    description = admin.describe_consumer_groups([group])[group].result(10)
    if description.state != ConsumerGroupState.STABLE:
        return []
    return sorted(len(m.assignment.topic_partitions) for m in description.members)


def caught_up(commits: Commits, ends: Mapping[int, int], timeout_s: float = 90.0) -> None:
    """Wait until the group has committed every partition up to ``ends`` (or past it)."""

    def done() -> bool:
        now = commits()
        return all(end == 0 or now.get(p, -1) >= end for p, end in ends.items())

    wait_until(done, timeout_s, 0.2, f"the group to commit up to {dict(ends)}")


def longest_gap(
    outputs: list[OutputRecord], start: float, end: float, partitions: Iterable[int]
) -> float:
    """The longest time within [start, end] in which one of the decisions ``partitions`` got
    no record: how long processing stalled there (seconds, by the broker's append times)."""
    times: dict[int, list[float]] = {p: [] for p in partitions}
    for o in outputs:
        if not o.dead_letter and start <= o.appended <= end:
            times[o.partition].append(o.appended)
    longest = 0.0
    for appended in times.values():
        edges = [start, *sorted(appended), end]
        longest = max(longest, *(b - a for a, b in pairwise(edges)))
    return longest


class OutputCount:
    """How many records the output topics hold now (their high watermarks), to see progress
    without reading them."""

    def __init__(self, servers: str, topics: Topics) -> None:
        self._consumer = Consumer(
            {"bootstrap.servers": servers, "group.id": f"fault-count-{uuid.uuid4().hex[:8]}"}
        )
        metadata = self._consumer.list_topics(timeout=10)
        self._parts = [
            TopicPartition(topic, p)
            for topic in (topics.decisions, topics.dlq)
            for p in metadata.topics[topic].partitions
        ]

    def __call__(self) -> int:
        total = 0
        for tp in self._parts:
            _, high = _through_failover(
                lambda tp=tp: self._consumer.get_watermark_offsets(tp, timeout=5, cached=False)
            )
            total += high
        return total

    def close(self) -> None:
        self._consumer.close()

    def wait_for_more(self, than: int, timeout_s: float, what: str) -> int:
        return wait_until(lambda: (n := self()) > than and n, timeout_s, 0.1, what)


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
