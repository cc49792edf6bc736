"""A load generator process: sample transactions at a steady rate, ``occurred_at`` = now.

    python -m bench.loadgen --topic T --rate 600 --duration 30 [--cards 5000] [--count N]
                            [--malformed-ratio 0.05] [--warm-up-topic T]

Runs the demo's :class:`~streamproc.demo.feed.SampleFeed` over a pool of ``--cards`` cards,
without malformed records unless ``--malformed-ratio`` asks for some, in a process of its own,
so its CPU never counts as the processor's. With neither ``--duration`` nor ``--count`` it runs
until SIGTERM or SIGINT. Either signal stops it, waits for the acknowledgements and prints the
summary, one JSON line: ``{"sent": n, "acknowledged": n, "failed": n,
"started_at": epoch, "finished_at": epoch}``. With ``--rate 0`` it produces as fast as the
broker takes them (a backlog).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

import orjson

from streamproc.demo.feed import SampleFeed, sample_producer_config
from streamproc.demo.generator import MixSettings, SampleGenerator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--topic", required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="records/s; 0: as fast as it can")
    parser.add_argument("--duration", type=float, help="seconds to produce for")
    parser.add_argument("--count", type=int, help="records to produce")
    parser.add_argument("--cards", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--malformed-ratio", type=float, default=0.0)
    parser.add_argument(
        "--warm-up-topic",
        help="send one record here first and wait for it: the producer then has its id before "
        "the first event is stamped",
    )
    args = parser.parse_args(argv)
    generator = SampleGenerator(
        args.seed,
        malformed_ratio=args.malformed_ratio,
        mix=MixSettings(cards=args.cards),
        clock=time.time,
    )
    feed = SampleFeed(
        sample_producer_config(args.bootstrap, **{"linger.ms": 2}),
        args.topic,
        generator,
        rate=args.rate or None,
        count=args.count,
        duration_s=args.duration,
        clock=time.time,
    )
    if args.warm_up_topic:
        feed.warm_up(args.warm_up_topic)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stats = feed.run(stop)
    summary = {
        "sent": stats.sent,
        "acknowledged": stats.acknowledged,
        "failed": stats.failed,
        "started_at": stats.started_at,
        "finished_at": stats.finished_at,
    }
    sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    return 0 if stats.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
