"""Processor CPU per scored and per shed event, against the naive loop in the same run.

    python -m bench.cpu [--events 20000] [--rounds 1]

The API Task answers in 1 ms within an allocation of 64, so the processor itself is the
bottleneck. Each phase loads a backlog of ``--events`` with the load generator, starts one
consumer as a process of its own, and takes CPU time (utime + stime, from /proc) per output
between the 10th and the 90th percentile of outputs:

- **scored**: ``streamproc run`` with a long SLA, every event scored by an execute;
- **shed**: ``streamproc run`` with a 50 ms SLA over a backlog a second old, so every event is
  decided by fallback at intake without an execute;
- **naive**: ``bench.naive_loop`` (poll, ``httpx.post``, produce, commit; one at a time).

Prints each figure against its bound (scored <= 200 µs, shed <= 25 µs, naive / scored >= 6)
and exits 1 when one is missed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from bench.stack import (
    ROOT,
    Reader,
    Sampler,
    Topics,
    bootstrap,
    emulator,
    finish,
    loadgen,
    processor,
    stop_process,
)

SCORED_BOUND_US, SHED_BOUND_US, NAIVE_RATIO_BOUND = 200.0, 25.0, 6.0


@contextmanager
def naive(topics: Topics, url: str, count: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.naive_loop", "--bootstrap", bootstrap(),
         "--topic", topics.input, "--decisions", topics.decisions,
         "--group", f"bench-naive-{uuid.uuid4().hex[:8]}", "--url", url,
         "--count", str(count)],
        cwd=ROOT,
    )  # fmt: skip
    try:
        yield proc
    finally:
        stop_process(proc)


def measure(
    events: int,
    start: Callable[[Topics], AbstractContextManager[int]],
    *,
    age_s: float = 0.0,
    fallback: bool,
) -> tuple[float, float]:
    """(CPU µs per output, outputs/s) of the consumer ``start`` runs over a fresh backlog,
    whose outputs must all be fallbacks (``fallback``) or all scored."""
    topics = Topics.fresh(partitions=6)
    finish(loadgen(topics.input, count=events))
    time.sleep(age_s)  # the backlog ages past its deadline: part of the set-up, not a wait
    with Reader(topics) as reader, start(topics) as pid, Sampler(reader, pid) as sampler:
        if not reader.wait_for(events, 300):
            raise RuntimeError(f"only {reader.count()} of {events} outputs")
    wrong = sum(1 for o in reader.outputs if o.fallback != fallback or o.dead_letter)
    if wrong:
        kind = "scored" if fallback else "fallback or dead-lettered"
        raise RuntimeError(f"{wrong} of {events} outputs were {kind}")
    seconds, cpu, outputs = sampler.between(events // 10, events * 9 // 10)
    return cpu / outputs * 1e6, outputs / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--cwd", type=Path, default=ROOT, help="checkout whose streamproc runs")
    args = parser.parse_args(argv)
    ok = True
    with emulator(64, 1.0, cwd=args.cwd) as emu:

        @contextmanager
        def streamproc(topics: Topics, sla_ms: int) -> Iterator[int]:
            processing = f"decision_sla_ms = {sla_ms}\nmax_in_flight = 5000"
            with processor(topics, emu.url, processing=processing, cwd=args.cwd) as proc:
                yield proc.pid

        @contextmanager
        def naive_loop(topics: Topics) -> Iterator[int]:
            with naive(topics, emu.url, args.events) as proc:
                yield proc.pid

        for round_ in range(1, args.rounds + 1):
            scored, scored_rate = measure(
                args.events, lambda t: streamproc(t, 600_000), fallback=False
            )
            shed, shed_rate = measure(
                args.events, lambda t: streamproc(t, 50), age_s=1.0, fallback=True
            )
            base, base_rate = measure(args.events, naive_loop, fallback=False)
            ratio = base / scored
            print(
                f"round={round_} cpu_per_scored_us={scored:.0f}"
                f" ratio={scored / SCORED_BOUND_US:.2f} (bound <= 1) scored_per_s={scored_rate:.0f}"
                f" | cpu_per_shed_us={shed:.1f}"
                f" ratio={shed / SHED_BOUND_US:.2f} (bound <= 1) shed_per_s={shed_rate:.0f}"
                f" | naive_us={base:.0f} naive_per_s={base_rate:.0f}"
                f" naive/scored={ratio:.1f} (bound >= {NAIVE_RATIO_BOUND:g})"
            )
            ok &= scored <= SCORED_BOUND_US and shed <= SHED_BOUND_US
            ok &= ratio >= NAIVE_RATIO_BOUND
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
