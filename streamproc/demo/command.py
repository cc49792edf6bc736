"""The demo's sub-commands: ``demo``, ``produce-sample`` and ``tail``."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

from streamproc.errors import ConfigError, KafkaAdminError

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"

_DEMO_DESCRIPTION = """\
Run the whole pipeline on this machine and watch it: a sample generator produces realistic
card transactions (and a few malformed records on purpose), the processor scores each with the
Fraud Score API Task on a local Control Room emulator, and a checker reads the decisions and
dead letters back, counting them by event id. The live view shows rates, decisions, fallbacks,
dead letters, in-flight work against each API Task's budget, and latency.

Each run uses a consumer group of its own that starts at the end of the input topic, so it
processes exactly the events it produces. Ctrl-C (or --duration) stops the generator, waits
until every event has its output, drains the processor and prints a summary; exit status 0
when every produced event came out exactly once, 1 otherwise. A second Ctrl-C aborts.
"""

_PRODUCE_DESCRIPTION = """\
Produce sample card transactions keyed by card_id: a large pool of cards with home countries
and currencies, lognormal amounts by merchant category, channels, travel and cross-border
purchases, high-risk merchants, stolen-card sprees and card-testing bursts (velocity),
occurred_at = now, unique event ids, and fields the processor does not know (device,
terminal_id). Scored by the Fraud Score API Task, about 80% APPROVE, 15% REVIEW, 5% DECLINE.

A share of records is malformed on purpose, each kind named in the x-sample-kind header:
bad_json, missing_field, mistyped_amount, bad_occurred_at, oversized (> 64 KiB) and empty.
Every record carries its event id in x-sample-event-id, so a dead letter can be matched to
it. The topic is created (--partitions) if it does not exist. Progress goes to stderr every
2 s, the final count to stdout.
"""

_DEMO_EPILOG = """\
The broker must be running: `make kafka-up` (`make demo` starts it, then this command).
Logs go to .demo/demo.log. With a controlroom.url that is not on this machine (or with
--no-emulator) no emulator starts and the configured Control Room scores the events.
"""


def register(subparsers: Any) -> None:
    _register_demo(subparsers)
    _register_produce_sample(subparsers)
    _register_tail(subparsers)


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _ratio(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


# -- demo ---------------------------------------------------------------------------------------


def _register_demo(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run generator, emulator and processor together, with live progress",
        description=_DEMO_DESCRIPTION,
        epilog=_DEMO_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--config", metavar="FILE", help="TOML settings file (e.g. config/local.toml)")
    add("--rate", type=_positive, default=200.0, metavar="R", help="events per second (200)")
    add("--duration", type=_positive, metavar="SECONDS", help="stop producing after this long")
    add(
        "--emulator-port",
        type=int,
        metavar="PORT",
        help="emulator port (default: the port of controlroom.url; 0 picks a free one)",
    )
    add(
        "--no-emulator",
        dest="use_emulator",
        action="store_false",
        help="start no emulator: score with the Control Room at controlroom.url",
    )
    add("--partitions", type=_count, default=6, metavar="N", help="input topic partitions (6)")
    add(
        "--latency-ms",
        type=float,
        default=20.0,
        metavar="MS",
        help="median simulated API Task latency, lognormal (20)",
    )
    add(
        "--malformed-ratio",
        type=_ratio,
        default=0.02,
        metavar="F",
        help="share of deliberately malformed records (0.02)",
    )
    add("--seed", type=int, help="seed of the sample generator (default: random)")
    add("--log-dir", type=Path, default=Path(".demo"), metavar="DIR", help="where logs go (.demo)")
    parser.set_defaults(handler=demo)


def demo(args: argparse.Namespace) -> int:
    from streamproc.config import load_settings  # noqa: PLC0415 - heavy imports only when run
    from streamproc.demo.runner import DemoOptions, run_demo  # noqa: PLC0415

    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"streamproc demo: configuration error: {exc}", file=sys.stderr)
        return 2
    options = DemoOptions(
        rate=args.rate,
        duration_s=args.duration,
        emulator_port=args.emulator_port,
        use_emulator=args.use_emulator,
        partitions=args.partitions,
        latency_ms=args.latency_ms,
        malformed_ratio=args.malformed_ratio,
        seed=args.seed,
        log_dir=args.log_dir,
    )
    return run_demo(settings, options)


# -- produce-sample -----------------------------------------------------------------------------


def _register_produce_sample(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "produce-sample",
        help="produce realistic sample card transactions (and some malformed records)",
        description=_PRODUCE_DESCRIPTION,
        epilog=(
            "examples:\n"
            "  streamproc produce-sample --count 1000\n"
            "  streamproc produce-sample --rate 200 --duration 60 --seed 7\n"
            "  streamproc produce-sample --rate 50           (until Ctrl-C)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--bootstrap", default=DEFAULT_BOOTSTRAP, help=f"Kafka bootstrap ({DEFAULT_BOOTSTRAP})")
    add("--topic", default="transactions", help="topic to produce to (transactions)")
    add("--count", type=_count, metavar="N", help="produce N records")
    add(
        "--rate",
        type=_positive,
        metavar="R",
        help="records per second (default: as fast as it can)",
    )
    add("--duration", type=_positive, metavar="S", help="stop after S seconds")
    add(
        "--malformed-ratio",
        type=_ratio,
        default=0.02,
        metavar="F",
        help="share of malformed records (0.02)",
    )
    add("--seed", type=int, help="generator seed: the same seed gives the same records")
    add(
        "--partitions",
        type=_count,
        default=6,
        metavar="N",
        help="partitions if the topic must be created (6)",
    )
    parser.set_defaults(handler=produce_sample)


def produce_sample(args: argparse.Namespace) -> int:
    from streamproc.demo.feed import SampleFeed, sample_producer_config  # noqa: PLC0415
    from streamproc.demo.generator import SampleGenerator  # noqa: PLC0415
    from streamproc.demo.reader import broker_problem  # noqa: PLC0415
    from streamproc.kafka.admin import ensure_topics  # noqa: PLC0415

    if args.count is None and args.duration is None and args.rate is None:
        print(
            "streamproc produce-sample: say how much: --count N, or --rate R --duration S "
            "(or --rate R alone to run until Ctrl-C)",
            file=sys.stderr,
        )
        return 2
    config = sample_producer_config(args.bootstrap)
    problem = broker_problem(config)
    if problem is not None:
        print(
            f"streamproc produce-sample: no Kafka broker answers at {args.bootstrap}"
            f" (run `make kafka-up`): {problem}",
            file=sys.stderr,
        )
        return 1
    try:
        ensure_topics(args.bootstrap, {args.topic: args.partitions})
    except KafkaAdminError as exc:
        print(f"streamproc produce-sample: {exc}", file=sys.stderr)
        return 1
    generator = SampleGenerator(args.seed, malformed_ratio=args.malformed_ratio, clock=time.time)
    feed = SampleFeed(
        config,
        args.topic,
        generator,
        rate=args.rate,
        count=args.count,
        duration_s=args.duration,
    )
    stop = threading.Event()
    worker = threading.Thread(target=feed.run, args=(stop,), name="produce-sample")
    worker.start()
    started = time.monotonic()
    last_report = started
    try:
        while worker.is_alive():
            worker.join(0.2)
            now = time.monotonic()
            if now - last_report >= 2.0:
                last_report = now
                total = f"/{args.count:,}" if args.count else ""
                print(
                    f"produced {feed.stats.sent:,}{total}"
                    f" ({feed.stats.sent / (now - started):,.0f}/s)",
                    file=sys.stderr,
                )
    except KeyboardInterrupt:
        stop.set()
        worker.join()
    stats = feed.stats
    elapsed = (stats.finished_at or time.monotonic()) - (stats.started_at or started)
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(stats.by_kind.items()) if k != "valid")
    print(
        f"produced {stats.acknowledged:,} records to {args.topic} in {elapsed:.1f} s"
        f" ({stats.acknowledged / elapsed if elapsed > 0 else 0:,.0f}/s),"
        f" {stats.malformed:,} malformed on purpose ({kinds or 'none'}), seed {generator.seed}"
    )
    if stats.failed:
        print(
            f"streamproc produce-sample: {stats.failed:,} record(s) not acknowledged:"
            f" {stats.first_error}",
            file=sys.stderr,
        )
        return 1
    return 0


# -- tail ---------------------------------------------------------------------------------------


def _register_tail(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "tail",
        help="follow the decisions (or dead-letter) topic, one line per record",
        description=(
            "Print one compact line per decision (event id, decision, score or fallback "
            "reason, latency, reasons) or per dead letter (event id, stage, error class and "
            "message), from the end of the topic unless --from-beginning. No consumer group "
            "is joined and nothing is committed. Ctrl-C exits 0."
        ),
        epilog=(
            "examples:\n"
            "  streamproc tail\n"
            "  streamproc tail --dlq --from-beginning\n"
            "  streamproc tail --json | jq 'select(.decision == \"DECLINE\")'"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--bootstrap", default=DEFAULT_BOOTSTRAP, help=f"Kafka bootstrap ({DEFAULT_BOOTSTRAP})")
    add("--topic", help="topic to follow (decisions; with --dlq, transactions.dlq)")
    add("--dlq", action="store_true", help="follow the dead-letter topic")
    add("--from-beginning", action="store_true", help="start at the oldest record")
    add("--json", dest="as_json", action="store_true", help="one JSON object per line")
    add("--limit", type=_count, metavar="N", help="exit after N records")
    parser.set_defaults(handler=tail)


def tail(args: argparse.Namespace) -> int:
    from streamproc.demo.reader import broker_problem  # noqa: PLC0415
    from streamproc.demo.tail import run_tail  # noqa: PLC0415

    topic = args.topic or ("transactions.dlq" if args.dlq else "decisions")
    config = {"bootstrap.servers": args.bootstrap}
    problem = broker_problem(config)
    if problem is not None:
        print(
            f"streamproc tail: no Kafka broker answers at {args.bootstrap}"
            f" (run `make kafka-up`): {problem}",
            file=sys.stderr,
        )
        return 1
    try:
        run_tail(
            config,
            topic,
            from_beginning=args.from_beginning,
            as_json=args.as_json,
            limit=args.limit,
        )
    except KafkaAdminError as exc:
        print(
            f"streamproc tail: {exc} (does it exist? `streamproc demo` creates it)",
            file=sys.stderr,
        )
        return 1
    return 0
