"""Sustained decisions per second against the allocation bound, and processor CPU per event.

    python -m bench.processor_throughput [--events 6000] [--latency-ms 20] [--limit 8]

With an API Task that takes ``--latency-ms`` per execute and an allocation of ``--limit``
concurrent executes, no processor can decide more than ``limit / latency`` events per second
(8 / 0.020 s = 400/s). This starts the emulator and ``streamproc run`` as separate processes
(so each one's CPU is its own), loads a backlog of ``--events`` transactions over many cards,
and reads the decisions topic. Throughput and CPU are taken between the 10th and the 90th
percentile of decisions, so start-up and the last stragglers do not count.

Prints ``decisions_per_s=<n> bound=<limit/latency> ratio=<n/bound> cpu_per_event_us=<n>``
and exits 1 when the ratio is below ``--min-ratio`` (0.85), when an event is missing, or when
the emulator ever rejected an execute or saw more than ``--limit`` in flight.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer

from bench.emulator_throughput import cpu_seconds, free_port
from streamproc.kafka.admin import ensure_topics

ROOT = Path(__file__).parents[1]
FRAUD_FILE_ID = 201


def start_emulator(port: int, latency_ms: float, limit: int) -> subprocess.Popen[bytes]:
    config = Path(tempfile.mkstemp(suffix=".toml")[1])
    config.write_text(
        "[[allocations]]\n"
        f"file_id = {FRAUD_FILE_ID}\nconcurrency_limit = {limit}\nrun_as_user_id = 12\n"
    )
    return subprocess.Popen(
        [sys.executable, "-m", "streamproc", "emulator", "--port", str(port),
         "--config", str(config), "--latency-ms", str(latency_ms),
         "--no-access-log", "--log-level", "WARNING"],
        cwd=ROOT,
    )  # fmt: skip


def wait_http(url: str, within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def processor_config(bootstrap: str, emulator_url: str, suffix: str) -> Path:
    path = Path(tempfile.mkstemp(suffix=".toml")[1])
    path.write_text(f"""
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "bench-{suffix}"
input_topic = "bench-tx-{suffix}"
decisions_topic = "bench-decisions-{suffix}"
dead_letter_topic = "bench-dlq-{suffix}"

[controlroom]
url = "{emulator_url}"
username = "bot-developer"
password = "bot-developer-password"
admin_username = "cr-admin"
admin_password = "cr-admin-password"

[processing]
# A backlog is the point of a throughput run: give it time rather than fallbacks.
decision_sla_ms = 600000

[observability]
log_level = "WARNING"
http_enabled = true\nhttp_port = 9199
""")
    return path


def produce_backlog(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    for i in range(count):
        card = f"card-{i % max(1, count // 4)}"
        event = {
            "event_id": f"bench-{i}", "occurred_at": now, "amount": 20 + (i % 500),
            "currency": "USD", "card_id": card, "country": "US", "card_country": "US",
            "merchant_category": "5411", "channel": "pos",
        }  # fmt: skip
        producer.produce(topic, key=card.encode(), value=orjson.dumps(event))
        if i % 1000 == 0:
            producer.poll(0)
    if producer.flush(60):
        raise RuntimeError("backlog not fully delivered")


class Watch:
    """Counts decisions, noting wall time and processor CPU at the 10th and 90th percentile."""

    def __init__(self, total: int, pid: int) -> None:
        self.total = total
        self.pid = pid
        self.seen: set[str] = set()
        self.marks: dict[int, tuple[float, float]] = {}
        self.done = threading.Event()

    def observe(self, event_id: str) -> None:
        self.seen.add(event_id)
        n = len(self.seen)
        for mark in (self.total // 10, self.total * 9 // 10):
            if n == mark:
                self.marks[mark] = (time.monotonic(), cpu_seconds(self.pid))
        if n >= self.total:
            self.done.set()


def consume(bootstrap: str, topic: str, watch: Watch, stop: threading.Event) -> None:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"bench-reader-{uuid.uuid4().hex}",
         "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )  # fmt: skip
    consumer.subscribe([topic])
    try:
        while not stop.is_set() and not watch.done.is_set():
            for msg in consumer.consume(1000, 0.2):
                if msg.error() is None and msg.value():
                    watch.observe(orjson.loads(msg.value())["event_id"])
    finally:
        consumer.close()


def emulator_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/emulator/v1/stats", timeout=5) as resp:
        stats: dict[str, Any] = orjson.loads(resp.read())
    return next(a for a in stats["allocations"] if int(a["fileId"]) == FRAUD_FILE_ID)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=6000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--min-ratio", type=float, default=0.85)
    parser.add_argument("--timeout-s", type=float, default=180.0)
    args = parser.parse_args(argv)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    bound = args.limit / (args.latency_ms / 1000)
    suffix = uuid.uuid4().hex[:8]
    port = free_port()
    emulator_url = f"http://127.0.0.1:{port}"
    emulator = start_emulator(port, args.latency_ms, args.limit)
    processor: subprocess.Popen[bytes] | None = None
    stop = threading.Event()
    try:
        wait_http(f"{emulator_url}/emulator/v1/stats")
        topics = {f"bench-tx-{suffix}": 3, f"bench-decisions-{suffix}": 3, f"bench-dlq-{suffix}": 1}
        ensure_topics(bootstrap, topics)
        produce_backlog(bootstrap, f"bench-tx-{suffix}", args.events)
        config = processor_config(bootstrap, emulator_url, suffix)
        processor = subprocess.Popen(
            [sys.executable, "-m", "streamproc", "run", "--config", str(config)], cwd=ROOT
        )
        watch = Watch(args.events, processor.pid)
        reader = threading.Thread(
            target=consume, args=(bootstrap, f"bench-decisions-{suffix}", watch, stop)
        )
        reader.start()
        finished = watch.done.wait(args.timeout_s)
        stop.set()
        reader.join(10)
        stats = emulator_stats(emulator_url)
    finally:
        stop.set()
        for proc in (processor, emulator):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
    lo, hi = args.events // 10, args.events * 9 // 10
    if not finished or lo not in watch.marks or hi not in watch.marks:
        print(f"missing decisions: {args.events - len(watch.seen)} of {args.events}")
        return 1
    (t0, c0), (t1, c1) = watch.marks[lo], watch.marks[hi]
    rate = (hi - lo) / (t1 - t0)
    ratio = rate / bound
    cpu_us = (c1 - c0) / (hi - lo) * 1e6
    print(
        f"decisions_per_s={rate:.0f} bound={bound:.0f} ratio={ratio:.2f} "
        f"cpu_per_event_us={cpu_us:.0f} events={args.events} "
        f"emulator_max_in_flight={stats['maxInFlight']} rejected={stats['rejected']}"
    )
    ok = ratio >= args.min_ratio and stats["rejected"] == 0 and stats["maxInFlight"] <= args.limit
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
