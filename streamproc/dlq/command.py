"""``streamproc dlq replay``: re-drive dead letters into the input topic, safely."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Any, Final, TextIO

from streamproc.dlq.report import ProgressView, RunFacts, record_line, summary_lines
from streamproc.dlq.selection import (
    STAGES,
    DeadLetter,
    ReplayFilter,
    Verdict,
    parse_event_ids,
    parse_instant,
    parse_offsets,
)
from streamproc.errors import ConfigError, KafkaAdminError, StreamprocError

if TYPE_CHECKING:
    from streamproc.dlq.replay import Replay, ReplayOptions

DEFAULT_MAX_REPLAYS: Final = 3
DEFAULT_RATE: Final = 100.0
LISTED_OVER_LIMIT: Final = 100  # over-limit records listed one per line in a real run

_DESCRIPTION = """\
Read the dead-letter topic from this replay's committed position up to its end at start, and
write each selected dead letter's original record back: the same key and value, the original
headers without the error envelope (streamproc.error.*, __connect.errors.*), plus
streamproc.replay.count (1 on the first replay) and streamproc.replay.source (the dead
letter's topic:partition:offset). The processor then scores it like any new event; mind that
an event past its decision deadline (occurred_at + processing.decision_sla_ms) is decided at
once by the fallback policy.

A record that has been replayed --max-replays times already is reported, not replayed, so a
record that can never succeed stops coming back. Filters combine: a dead letter is replayed
when it matches every one given.

The replay is a consumer group of its own (--group). Its position is committed after each
batch once the broker has acknowledged every replayed record of the batch, and covers every
dead letter read, replayed or filtered out: a second run with the same group starts after
them and replays nothing twice. Use another --group for a separate pass over the same dead
letters (a pass with other filters, say).
"""

_EPILOG = """\
examples:
  streamproc dlq replay --config config/local.toml --dry-run
  streamproc dlq replay --config config/local.toml --stage execute --since 2h --rate 50
  streamproc dlq replay --config my.toml --error-class EventValidationError --to transactions.retry
  streamproc dlq replay --config my.toml --partition 3 --offsets 1200..1450
  streamproc dlq replay --config my.toml --event-id e-17,e-18 --group replay-incident-42

Times (--since, --until) are RFC 3339 (2026-11-28T18:00:00Z), a UTC date (2026-11-28) or a
time ago (90s, 15m, 2h, 3d); they select on the dead letter's streamproc.error.failed_at.

Progress goes to stderr (a bar on a terminal, a line every 5 s otherwise); the record lines
and the summary go to stdout. Ctrl-C stops after the current record; what was replayed is
committed. Kafka settings (bootstrap servers, security) come from [kafka] in --config and the
STREAMPROC_KAFKA__* environment, as for `streamproc run`.

exit status: 0 done, 1 a failure (the broker, a record not acknowledged), 2 bad flags or
configuration, 130 interrupted.
"""


def register(subparsers: Any) -> None:
    dlq = subparsers.add_parser(
        "dlq",
        help="work with the dead-letter topic: replay dead letters",
        description="Work with the dead-letter topic.",
    )
    commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="COMMAND")
    parser = commands.add_parser(
        "replay",
        help="write selected dead letters' original records back to the input topic",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--config",
        metavar="FILE",
        help="TOML settings file; its [kafka] section names the broker and the topics"
        " (default: built-in defaults plus the environment)",
    )
    add(
        "--from",
        dest="source",
        metavar="TOPIC",
        help="dead-letter topic to read (default: kafka.dead_letter_topic)",
    )
    add(
        "--to",
        dest="target",
        metavar="TOPIC",
        help="topic to write the records to (default: kafka.input_topic)",
    )
    add(
        "--group",
        metavar="GROUP",
        help="consumer group holding this replay's position (default: <kafka.group_id>-dlq-replay)",
    )
    add(
        "--stage",
        action="append",
        default=[],
        choices=STAGES,
        help="only dead letters of this stage; repeat for several",
    )
    add(
        "--error-class",
        action="append",
        default=[],
        metavar="NAME",
        help="only this error class, by full or short name (EventValidationError); repeatable",
    )
    add(
        "--since",
        type=_instant,
        metavar="TIME",
        help="only dead letters that failed at TIME or later",
    )
    add("--until", type=_instant, metavar="TIME", help="only dead letters that failed before TIME")
    add(
        "--partition",
        action="append",
        default=[],
        type=_partition,
        metavar="N",
        help="only events read from this source partition; repeatable",
    )
    add(
        "--offsets",
        type=_offsets,
        metavar="FIRST..LAST",
        help="only events read at these source offsets, both inclusive (100..200, 100.., ..200"
        " or 150); with --partition, within those partitions",
    )
    add(
        "--event-id",
        action="append",
        default=[],
        metavar="ID",
        help="only these event ids (the value's event_id); repeatable, or comma-separated",
    )
    add(
        "--max-replays",
        type=_at_least_one,
        default=DEFAULT_MAX_REPLAYS,
        metavar="N",
        help="replay a record at most N times in all (streamproc.replay.count); records"
        f" replayed N times are reported, not replayed ({DEFAULT_MAX_REPLAYS})",
    )
    add(
        "--rate",
        type=_rate,
        default=DEFAULT_RATE,
        metavar="R",
        help=f"at most R records written per second ({DEFAULT_RATE:g})",
    )
    add(
        "--dry-run",
        action="store_true",
        help="print what would be replayed and what is over the limit; write and commit nothing",
    )
    parser.set_defaults(handler=replay)


# -- flag types: argparse turns a ValueError or ArgumentTypeError into exit status 2 ----------


def _instant(text: str) -> float:
    try:
        return parse_instant(text, time.time())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _offsets(text: str) -> tuple[int | None, int | None]:
    try:
        return parse_offsets(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _partition(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a partition number")
    return int(text)


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number of records per second")
    return value


# -- the command ----------------------------------------------------------------------------


def replay(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    from streamproc import logs  # noqa: PLC0415 - heavy imports only when run
    from streamproc.config import load_settings  # noqa: PLC0415
    from streamproc.dlq.replay import ReplayOptions  # noqa: PLC0415

    out = out or sys.stdout
    err = err or sys.stderr
    first, last = args.offsets or (None, None)
    selection = ReplayFilter(
        stages=frozenset(args.stage),
        error_classes=frozenset(args.error_class),
        failed_since=args.since,
        failed_before=args.until,
        source_partitions=frozenset(args.partition),
        first_offset=first,
        last_offset=last,
        event_ids=parse_event_ids(args.event_id),
    )
    problems = selection.problems()
    if problems:
        err.write(f"streamproc dlq replay: error: {'; '.join(problems)}\n")
        return 2
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        err.write(f"streamproc dlq replay: configuration error: {exc}\n")
        return 2
    kafka = settings.kafka
    options = ReplayOptions(
        source=args.source or kafka.dead_letter_topic,
        target=args.target or kafka.input_topic,
        group=args.group or f"{kafka.group_id}-dlq-replay",
        selection=selection,
        max_replays=args.max_replays,
        rate=args.rate,
        dry_run=args.dry_run,
    )
    if options.source == options.target:
        err.write(
            f"streamproc dlq replay: error: --to {options.target!r} is the dead-letter topic"
            " itself; name the input topic (or leave --to out)\n"
        )
        return 2
    logs.configure("WARNING", json=settings.observability.log_format == "json", stream=err)
    return _Run(options, kafka.consumer_config(), kafka.producer_config(), out, err).start()


class _Run:
    """Checks, the replay itself with Ctrl-C handling, and the summary."""

    def __init__(
        self,
        options: ReplayOptions,
        consumer_config: dict[str, Any],
        producer_config: dict[str, Any],
        out: TextIO,
        err: TextIO,
    ) -> None:
        self.options = options
        self.consumer_config = consumer_config
        self.producer_config = producer_config
        self.out = out
        self.err = err
        self.listed_over_limit = 0
        self.progress = ProgressView(err, time.monotonic, tty=err.isatty())

    def start(self) -> int:
        problem = self._check_topics()
        if problem is not None:
            return problem
        from streamproc.dlq.replay import Replay  # noqa: PLC0415

        replayer = Replay(
            self.consumer_config,
            self.producer_config,
            self.options,
            on_record=self._on_record,
            progress=self.progress,
        )
        stop = threading.Event()

        def interrupted(_signum: int, _frame: FrameType | None) -> None:
            stop.set()

        # Signal handlers can only be set on the main thread; called from another thread
        # (embedded in a larger program), the caller owns stopping.
        main = threading.current_thread() is threading.main_thread()
        signals = (signal.SIGINT, signal.SIGTERM) if main else ()
        previous = {sig: signal.signal(sig, interrupted) for sig in signals}
        status, outcome = 0, "done: read to the end the topic had at start"
        started = time.monotonic()
        try:
            if not replayer.run(stop):
                committed = "" if self.options.dry_run else ": what was replayed is committed"
                status, outcome = 130, "interrupted" + committed
        except StreamprocError as exc:
            status, outcome = 1, f"failed: {exc}"
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.progress.close(replayer.tally)
        self._summary(replayer, outcome, time.monotonic() - started)
        if status == 1:
            self.err.write(f"streamproc dlq replay: {outcome.removeprefix('failed: ')}\n")
        return status

    def _check_topics(self) -> int | None:
        from streamproc.demo.reader import broker_problem  # noqa: PLC0415
        from streamproc.kafka.admin import missing_topics  # noqa: PLC0415

        bootstrap = self.consumer_config["bootstrap.servers"]
        problem = broker_problem(self.consumer_config)
        if problem is not None:
            self.err.write(
                f"streamproc dlq replay: no Kafka broker answers at {bootstrap}: {problem}\n"
            )
            return 1
        try:
            missing = missing_topics(
                bootstrap, [self.options.source, self.options.target], self.consumer_config
            )
        except KafkaAdminError as exc:
            self.err.write(f"streamproc dlq replay: {exc}\n")
            return 1
        for topic, flag, key in (
            (self.options.source, "--from", "kafka.dead_letter_topic"),
            (self.options.target, "--to", "kafka.input_topic"),
        ):
            if topic in missing:
                self.err.write(
                    f"streamproc dlq replay: configuration error: topic {topic!r} does not exist"
                    f" on {bootstrap} (set by {flag} or {key})\n"
                )
                return 2
        return None

    def _on_record(self, letter: DeadLetter, decided: Verdict) -> None:
        dry_run = self.options.dry_run
        if decided is Verdict.OVER_LIMIT:
            self.listed_over_limit += 1
            if not dry_run and self.listed_over_limit > LISTED_OVER_LIMIT:
                return
        elif not (dry_run and decided is Verdict.REPLAY):
            return
        self.progress.interrupt()
        self.out.write(record_line(letter, decided, self.options.max_replays, dry_run=dry_run))
        self.out.write("\n")

    def _summary(self, replayer: Replay, outcome: str, elapsed_s: float) -> None:
        options = self.options
        facts = RunFacts(
            source=options.source,
            target=options.target,
            group=options.group,
            selection=options.selection.describe(),
            max_replays=options.max_replays,
            dry_run=options.dry_run,
            committed=replayer.committed,
            outcome=outcome,
        )
        if not options.dry_run and self.listed_over_limit > LISTED_OVER_LIMIT:
            self.out.write(
                f"({self.listed_over_limit - LISTED_OVER_LIMIT:,} more over the limit,"
                " not listed)\n"
            )
        self.out.write("\n".join(summary_lines(replayer.tally, facts, elapsed_s)) + "\n")
        self.out.flush()
