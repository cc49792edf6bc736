"""Exit 0 once a Kafka broker at BOOTSTRAP answers a metadata request that lists a broker.

Used by scripts/kafka.sh: an open port is not readiness (the socket server binds before the
broker has joined its own quorum), a metadata answer naming a broker is.

    probe.py BOOTSTRAP --timeout SECONDS [--pid PID] [--client-config FILE] [--brokers N]

``--client-config`` names a file of ``key=value`` librdkafka settings (security protocol, SASL,
CA), for a listener that needs them. ``--brokers N`` waits until the answer lists at least N
brokers: every node of a cluster registered and unfenced.

Exit status: 0 ready, 1 no answer within the timeout, 2 the process PID ended first.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient


def process_alive(pid: int) -> bool:
    # A broker started by the calling shell stays its zombie child until the shell exits, and
    # kill(pid, 0) succeeds on zombies, so read the state instead.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--pid", type=int)
    parser.add_argument("--client-config", type=Path)
    parser.add_argument("--brokers", type=int, default=1)
    args = parser.parse_args()
    security: dict[str, str] = {}
    if args.client_config is not None:
        for line in args.client_config.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                security[key.strip()] = value.strip()

    deadline = time.monotonic() + args.timeout
    admin = AdminClient(
        {
            **security,
            "bootstrap.servers": args.bootstrap,
            # Refused connections while the JVM starts are expected; keep them out of stderr.
            "log_level": 0,
            "reconnect.backoff.ms": 100,
            "reconnect.backoff.max.ms": 500,
        }
    )
    while True:
        if args.pid is not None and not process_alive(args.pid):
            return 2
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return 1
        try:
            metadata = admin.list_topics(timeout=min(1.0, remaining))
        except Exception:  # any failure here only means "not ready yet"
            # A refused connection can fail at once; pause so the loop does not spin.
            time.sleep(0.1)
            continue
        if len(metadata.brokers) >= args.brokers:
            return 0
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
