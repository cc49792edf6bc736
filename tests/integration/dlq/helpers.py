"""Running ``streamproc dlq replay`` in the test process, and dead letters to replay."""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass

import orjson

from streamproc import cli
from streamproc.dlq.command import replay
from streamproc.dlq.selection import REPLAY_COUNT
from tests.unit.dlq.test_selection import dead_letter_record

NOW = time.time()
Headers = list[tuple[str, bytes | None]]


@dataclass
class Ran:
    status: int
    out: str
    err: str


def run_replay(bootstrap: str, source: str, target: str, group: str, *flags: str) -> Ran:
    """``streamproc dlq replay`` reading ``source`` into ``target`` as ``group``."""
    os.environ["STREAMPROC_KAFKA__BOOTSTRAP_SERVERS"] = bootstrap
    try:
        args = cli.build_parser().parse_args(
            ["dlq", "replay", "--from", source, "--to", target, "--group", group, *flags]
        )
        out, err = io.StringIO(), io.StringIO()
        status = replay(args, out, err)
    finally:
        del os.environ["STREAMPROC_KAFKA__BOOTSTRAP_SERVERS"]
    return Ran(status, out.getvalue(), err.getvalue())


def dead_letter(
    event_id: str,
    *,
    stage: str = "validate",
    error_class: str = "streamproc.errors.EventValidationError",
    partition: int = 0,
    offset: int = 10,
    failed_at: float = NOW,
    replays: int = 0,
) -> tuple[bytes, bytes | None, Headers]:
    """``(key, value, headers)`` of a dead letter, as the processor writes it, of an event with
    ``event_id`` (also in its x-test-id header) read at ``transactions:partition:offset``."""
    original: Headers = [("x-test-id", event_id.encode()), ("trace", b"t-" + event_id.encode())]
    if replays:
        original.append((REPLAY_COUNT, str(replays).encode()))
    record = dead_letter_record(
        stage=stage,
        error_class=error_class,
        partition=partition,
        offset=offset,
        failed_at=failed_at,
        original=original,
        value=orjson.dumps({"event_id": event_id, "amount": "not a number"}),
    )
    return f"card-{event_id}".encode(), record.value, record.headers
