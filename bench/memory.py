"""Resident memory with 10,000 events in flight.

    python -m bench.memory [--in-flight 10000]

An allocation of 8 answering in 20 ms drains 400 events/s, so a backlog of twice
``--in-flight`` events keeps the processor holding ``processing.max_in_flight`` of them (SLA
long enough that none is shed). Once ``streamproc_in_flight_events`` reaches that, the
processor's resident memory (VmRSS, and its peak VmHWM) is read from /proc. Prints it against
the 150 MB bound and exits 1 above it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench.stack import ROOT, Topics, emulator, finish, loadgen, processor

BOUND_MB = 150.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--in-flight", type=int, default=10_000)
    parser.add_argument("--cwd", type=Path, default=ROOT, help="checkout whose streamproc runs")
    args = parser.parse_args(argv)
    topics = Topics.fresh(partitions=6)
    finish(loadgen(topics.input, count=2 * args.in_flight))
    processing = f"decision_sla_ms = 600000\nmax_in_flight = {args.in_flight}"
    with (
        emulator(8, 20.0, cwd=args.cwd) as emu,
        processor(topics, emu.url, processing=processing, cwd=args.cwd) as proc,
    ):
        deadline = time.monotonic() + 120
        held = 0.0
        while time.monotonic() < deadline:
            held = proc.metric("streamproc_in_flight_events")
            if held >= args.in_flight * 0.98:
                break
            time.sleep(0.2)  # sampling a gauge, not synchronising
        time.sleep(2)  # let the batch in hand settle before reading memory
        memory = proc.memory_kib()
        held = proc.metric("streamproc_in_flight_events")
    rss_mb, peak_mb = memory["VmRSS"] / 1024, memory["VmHWM"] / 1024
    print(
        f"in_flight={held:.0f} rss_mb={rss_mb:.1f} peak_mb={peak_mb:.1f}"
        f" ratio={rss_mb / BOUND_MB:.2f} (bound <= 1, {BOUND_MB:g} MB)"
    )
    return 0 if held >= args.in_flight * 0.98 and rss_mb <= BOUND_MB else 1


if __name__ == "__main__":
    sys.exit(main())
