"""Draining a backlog: decisions per second against the allocation's bound.

    python -m bench.backlog [--events 20000] [--runs 1]

The API Task answers in a fixed 20 ms within an allocation of 8, so at most 8 / 0.020 s =
400 decisions/s are possible. A backlog of ``--events`` transactions (over 5,000 cards) is
produced first, then ``streamproc run`` (SLA long enough that every event is scored) drains
it; processor, emulator and load generator are separate processes. The rate is taken between
the 10th and the 90th percentile of decisions. Prints ``ratio`` (bound >= 0.95), the
emulator's ``maxInFlight`` (<= 8) and ``rejected`` (0); exits 1 when one is missed, an event
has no decision, or one was decided by fallback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.stack import ROOT, Reader, Sampler, Topics, emulator, finish, loadgen, processor

LIMIT, LATENCY_MS = 8, 20.0
BOUND = LIMIT / (LATENCY_MS / 1000)


def run_once(events: int, cwd: Path) -> dict[str, float]:
    topics = Topics.fresh(partitions=6)
    finish(loadgen(topics.input, count=events))
    processing = "decision_sla_ms = 600000"
    with (
        emulator(LIMIT, LATENCY_MS, cwd=cwd) as emu,
        Reader(topics) as reader,
        processor(topics, emu.url, processing=processing, cwd=cwd) as proc,
        Sampler(reader, proc.pid) as sampler,
    ):
        complete = reader.wait_for(events, 600)
        stats = emu.stats()
    seconds, cpu, outputs = sampler.between(events // 10, events * 9 // 10)
    return {
        "complete": float(complete),
        "rate": outputs / seconds,
        "fallbacks": float(sum(1 for o in reader.outputs if o.fallback or o.dead_letter)),
        "cpu_us": cpu / outputs * 1e6,
        "max_in_flight": float(stats["maxInFlight"]),
        "rejected": float(stats["rejected"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--cwd", type=Path, default=ROOT, help="checkout whose streamproc runs")
    args = parser.parse_args(argv)
    ok = True
    for run in range(1, args.runs + 1):
        r = run_once(args.events, args.cwd)
        ratio = r["rate"] / BOUND
        print(
            f"run={run} events={args.events} decisions_per_s={r['rate']:.0f} bound={BOUND:.0f}"
            f" ratio={ratio:.3f} (bound >= 0.95) cpu_per_event_us={r['cpu_us']:.0f}"
            f" fallbacks={r['fallbacks']:.0f} max_in_flight={r['max_in_flight']:.0f}"
            f" (bound <= {LIMIT}) rejected={r['rejected']:.0f}"
        )
        ok &= bool(r["complete"]) and ratio >= 0.95 and r["fallbacks"] == 0
        ok &= r["max_in_flight"] <= LIMIT and r["rejected"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
