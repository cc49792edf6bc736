"""``streamproc tail``: follow the decisions (or dead-letter) topic, one line per record.

Reads every partition from its end (or its beginning) without joining a consumer group, so it
never disturbs the processor's group and starts at once. A record is shown as a dead letter
when it carries the ``streamproc.error.stage`` header, whichever topic it came from.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any, TextIO

from streamproc.core.deadletters import PREFIX as ERROR_PREFIX
from streamproc.demo.outputs import (
    dead_letter_json,
    format_line,
    header,
    parse_dead_letter,
    parse_decision,
)
from streamproc.demo.reader import FROM_BEGINNING, FROM_END, TopicFollower, end_offsets
from streamproc.kafka.records import ConsumedRecord


def record_line(record: ConsumedRecord, *, as_json: bool) -> str:
    """The line ``tail`` prints for ``record``: human-readable, or one JSON object."""
    dead = header(record.headers, ERROR_PREFIX + "stage") is not None
    if as_json:
        if dead:
            return dead_letter_json(
                record.key,
                record.value,
                record.headers,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
            ).decode()
        # A decision's value is already one compact JSON object.
        return (record.value or b"null").decode("utf-8", "replace")
    output = (parse_dead_letter if dead else parse_decision)(record.value, record.headers)
    return format_line(output)


class _Printer:
    def __init__(self, out: TextIO, stop: threading.Event, *, as_json: bool, limit: int | None):
        self.out = out
        self.stop = stop
        self.as_json = as_json
        self.limit = limit
        self.printed = 0

    def __call__(self, record: ConsumedRecord) -> None:
        if self.stop.is_set():
            return
        try:
            self.out.write(record_line(record, as_json=self.as_json) + "\n")
            self.out.flush()
        except BrokenPipeError:  # `streamproc tail | head`: the reader left; so do we
            self.stop.set()
            return
        self.printed += 1
        if self.limit is not None and self.printed >= self.limit:
            self.stop.set()


def run_tail(
    config: dict[str, Any],
    topic: str,
    *,
    from_beginning: bool = False,
    as_json: bool = False,
    limit: int | None = None,
    out: TextIO = sys.stdout,
) -> None:
    """Print ``topic``'s records until Ctrl-C (or ``limit`` records); KafkaAdminError if absent."""
    partitions = end_offsets(config, [topic])
    start = FROM_BEGINNING if from_beginning else FROM_END
    stop = threading.Event()
    printer = _Printer(out, stop, as_json=as_json, limit=limit)
    follower = TopicFollower(config, dict.fromkeys(partitions, start), printer)

    def interrupted(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        follower.run(stop)
    finally:
        signal.signal(signal.SIGINT, previous)
