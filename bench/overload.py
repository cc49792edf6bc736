"""Goodput under overload: does every budget slot still score an event in time?

    python -m bench.overload [--loads 1.5,3] [--seconds 30] [--runs 1]

The API Task answers in a fixed 20 ms within an allocation of 8, so at most
8 / 0.020 s = 400 events/s can be scored (the bound). The load generator offers ``load`` times
that, steadily, over 5,000 cards, with ``occurred_at`` = now and a 500 ms SLA; processor,
emulator and load generator are separate processes, and a downstream consumer reads the
decisions. Per load it prints:

- ``scored_ratio``: scored (not fallback) decisions per second in the steady window (from 5 s
  after the start to 2 s before the end) over the bound (at 1.5x: >= 0.90; at 3x: >= 0.85);
- ``on_time``: the share of all events decided within SLA + 100 ms at the reader (>= 0.99);
- the emulator's ``maxInFlight`` (<= 8) and ``rejected`` (0), and the fallback reasons.

Exits 1 when a bound is missed or an event has no decision.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.stack import ROOT, Reader, Topics, emulator, finish, loadgen, processor

LIMIT, LATENCY_MS, SLA_S = 8, 20.0, 0.5
BOUND = LIMIT / (LATENCY_MS / 1000)
SCORED_BOUNDS = {1.5: 0.90, 3.0: 0.85}


def run_load(load: float, seconds: float, cwd: Path) -> dict[str, Any]:
    topics = Topics.fresh(partitions=6)
    with emulator(LIMIT, LATENCY_MS, cwd=cwd) as emu, Reader(topics) as reader:
        with processor(topics, emu.url, cwd=cwd):
            produced = finish(loadgen(topics.input, rate=load * BOUND, duration_s=seconds))
            complete = reader.wait_for(produced["sent"], 30)
        stats = emu.stats()
    outputs = list(reader.outputs)
    decisions = [o for o in outputs if not o.dead_letter and o.occurred is not None]
    start, end = produced["started_at"] + 5, produced["finished_at"] - 2
    window = [o for o in decisions if o.occurred is not None and start <= o.occurred < end]
    scored = sum(1 for o in window if not o.fallback)
    on_time = sum(1 for o in decisions if o.received - (o.occurred or 0) <= SLA_S + 0.1)
    return {
        "load": load,
        "offered": produced["sent"],
        "outputs": len({o.event_id for o in outputs}),
        "complete": complete,
        "scored_ratio": scored / (end - start) / BOUND,
        "on_time": on_time / max(1, produced["sent"]),
        "max_in_flight": stats["maxInFlight"],
        "rejected": stats["rejected"],
        "reasons": dict(Counter(o.reason for o in decisions if o.fallback)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", default="1.5,3", help="offered load, times the bound")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--cwd", type=Path, default=ROOT, help="checkout whose streamproc runs")
    args = parser.parse_args(argv)
    ok = True
    for run in range(1, args.runs + 1):
        for load in (float(x) for x in args.loads.split(",")):
            r = run_load(load, args.seconds, args.cwd)
            need = SCORED_BOUNDS.get(load, 0.0)
            print(
                f"run={run} load={load:g}x offered={r['offered']} outputs={r['outputs']}"
                f" scored_ratio={r['scored_ratio']:.3f} (bound >= {need:g})"
                f" on_time={r['on_time']:.4f} (bound >= 0.99)"
                f" max_in_flight={r['max_in_flight']} (bound <= {LIMIT})"
                f" rejected={r['rejected']} fallbacks={r['reasons']}"
            )
            ok &= r["complete"] and r["outputs"] == r["offered"]
            ok &= r["scored_ratio"] >= need and r["on_time"] >= 0.99
            ok &= r["max_in_flight"] <= LIMIT and r["rejected"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
