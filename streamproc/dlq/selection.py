"""Which dead letters a replay re-drives, and what it writes for each: pure functions.

A dead letter (:mod:`streamproc.core.deadletters`) is the original record, key and value
untouched, with the original headers first and the error envelope after them. Replaying one
writes the original record back: the same key and value, the original headers without any
envelope (``streamproc.error.*``, ``__connect.errors.*``), and two headers of its own:

    streamproc.replay.count    how many times this record has now been replayed (1, 2, ...)
    streamproc.replay.source   the dead letter it came from, ``topic:partition:offset``

The processor keeps an input's headers on the dead letter it makes, so a replayed record that
fails again comes back carrying its count, and :func:`verdict` refuses it once the count has
reached the limit: a record that can never succeed is replayed a bounded number of times.

Everything here is a function of the record and the flags; time is an argument.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

import orjson

from streamproc.core.deadletters import CONNECT_PREFIX, PREFIX
from streamproc.core.decisions import rfc3339_utc
from streamproc.core.events import parse_timestamp
from streamproc.kafka.records import ConsumedRecord, Headers

REPLAY_PREFIX: Final = "streamproc.replay."
REPLAY_COUNT: Final = REPLAY_PREFIX + "count"
REPLAY_SOURCE: Final = REPLAY_PREFIX + "source"
STAGES: Final = ("decode", "validate", "map", "execute")

_NOT_ORIGINAL = (PREFIX, CONNECT_PREFIX, REPLAY_PREFIX)
_AGO = re.compile(r"(\d+(?:\.\d+)?)([smhd])", re.ASCII)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of the dead-letter topic, its envelope read.

    Envelope fields are None when the header is absent or unreadable; ``stage`` None means the
    record is not a streamproc dead letter at all.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    original_headers: tuple[tuple[str, bytes | None], ...]
    stage: str | None
    error_class: str | None
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    failed_at: float | None
    replay_count: int

    @property
    def coordinates(self) -> str:
        """Where the dead letter is: ``topic:partition:offset``."""
        return f"{self.topic}:{self.partition}:{self.offset}"

    @property
    def event_id(self) -> str | None:
        """The ``event_id`` of the original value, when it is a JSON object that has one."""
        if not self.value:
            return None
        try:
            data = orjson.loads(self.value)
        except orjson.JSONDecodeError:
            return None
        found = data.get("event_id") if isinstance(data, dict) else None
        return found if isinstance(found, str) else None


def read_dead_letter(record: ConsumedRecord) -> DeadLetter:
    """The dead letter in ``record``; the last value of a repeated header wins, as in Kafka."""
    last: dict[str, str] = {}
    original: list[tuple[str, bytes | None]] = []
    replay_count = 0
    for name, value in record.headers:
        if name.startswith(_NOT_ORIGINAL):
            text = value.decode("utf-8", "replace") if value is not None else ""
            last[name] = text
            if name == REPLAY_COUNT:
                replay_count = _int(text) or 0
        else:
            original.append((name, value))
    return DeadLetter(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        original_headers=tuple(original),
        stage=last.get(PREFIX + "stage") or None,
        error_class=last.get(PREFIX + "class") or None,
        source_topic=last.get(PREFIX + "source.topic") or None,
        source_partition=_int(last.get(PREFIX + "source.partition")),
        source_offset=_int(last.get(PREFIX + "source.offset")),
        failed_at=_epoch(last.get(PREFIX + "failed_at")),
        replay_count=replay_count,
    )


@dataclass(frozen=True, slots=True)
class ReplayFilter:
    """Which dead letters to replay. Every given criterion must hold; an empty one holds always.

    ``error_classes`` match the full class name or its last part (``EventValidationError``).
    Times are epoch seconds of ``failed_at``: ``failed_since`` inclusive, ``failed_before``
    exclusive. ``first_offset``/``last_offset`` bound the source offset, both inclusive.
    """

    stages: frozenset[str] = frozenset()
    error_classes: frozenset[str] = frozenset()
    failed_since: float | None = None
    failed_before: float | None = None
    source_partitions: frozenset[int] = frozenset()
    first_offset: int | None = None
    last_offset: int | None = None
    event_ids: frozenset[str] = frozenset()

    def problems(self) -> list[str]:
        """What makes this filter match nothing by construction, in flag terms."""
        found: list[str] = []
        unknown = sorted(self.stages - set(STAGES))
        if unknown:
            found.append(f"--stage: unknown stage(s) {', '.join(unknown)}")
        if (
            self.failed_since is not None
            and self.failed_before is not None
            and self.failed_since >= self.failed_before
        ):
            found.append("--since must be earlier than --until")
        if (
            self.first_offset is not None
            and self.last_offset is not None
            and self.first_offset > self.last_offset
        ):
            found.append("--offsets: the first offset is after the last")
        return found

    def matches(self, letter: DeadLetter) -> bool:
        last = self.last_offset
        checks = (
            not self.stages or letter.stage in self.stages,
            not self.error_classes or _class_matches(letter.error_class, self.error_classes),
            _within(letter.failed_at, self.failed_since, self.failed_before),
            not self.source_partitions or letter.source_partition in self.source_partitions,
            _within(letter.source_offset, self.first_offset, None if last is None else last + 1),
        )
        if not all(checks):
            return False
        return not self.event_ids or letter.event_id in self.event_ids

    def describe(self) -> str:
        """The criteria in flag terms, for the summary; "every dead letter" when none."""
        parts: list[str] = []
        if self.stages:
            parts.append("stage " + "|".join(sorted(self.stages)))
        if self.error_classes:
            parts.append("class " + "|".join(sorted(self.error_classes)))
        if self.failed_since is not None:
            parts.append("failed since " + rfc3339_utc(self.failed_since))
        if self.failed_before is not None:
            parts.append("failed before " + rfc3339_utc(self.failed_before))
        if self.source_partitions:
            parts.append("partition " + "|".join(str(p) for p in sorted(self.source_partitions)))
        if self.first_offset is not None or self.last_offset is not None:
            first = "" if self.first_offset is None else str(self.first_offset)
            last = "" if self.last_offset is None else str(self.last_offset)
            parts.append(f"offsets {first}..{last}")
        if self.event_ids:
            parts.append(f"{len(self.event_ids)} event id(s)")
        return " · ".join(parts) or "every dead letter"


class Verdict(StrEnum):
    REPLAY = "replay"
    FILTERED = "filtered"  # a streamproc dead letter the filter does not select
    OVER_LIMIT = "over_limit"  # selected, but replayed max_replays times already
    NOT_A_DEAD_LETTER = "not_a_dead_letter"  # no streamproc.error.stage header


def verdict(letter: DeadLetter, selection: ReplayFilter, max_replays: int) -> Verdict:
    """What a replay does with ``letter``."""
    if letter.stage is None:
        return Verdict.NOT_A_DEAD_LETTER
    if not selection.matches(letter):
        return Verdict.FILTERED
    if letter.replay_count >= max_replays:
        return Verdict.OVER_LIMIT
    return Verdict.REPLAY


def replay_headers(letter: DeadLetter) -> Headers:
    """The headers a replay writes: the original ones, then the replay count and source."""
    return [
        *letter.original_headers,
        (REPLAY_COUNT, str(letter.replay_count + 1).encode()),
        (REPLAY_SOURCE, letter.coordinates.encode()),
    ]


# -- flag values ----------------------------------------------------------------------------


def parse_instant(text: str, now_epoch: float) -> float:
    """Epoch seconds from an RFC 3339 date-time (``2026-11-28T18:00:00Z``), a UTC date
    (``2026-11-28``) or a time ago (``90s``, ``15m``, ``2h``, ``3d``); ValueError otherwise."""
    text = text.strip()
    ago = _AGO.fullmatch(text)
    if ago:
        return now_epoch - float(ago.group(1)) * _UNIT_S[ago.group(2)]
    if _DATE.fullmatch(text):
        try:
            return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()
        except ValueError:
            raise ValueError(f"{text[:40]!r} is not a real date") from None
    try:
        return parse_timestamp(text).timestamp()
    except ValueError:
        raise ValueError(
            f"{text[:40]!r} is neither a time ago (90s, 15m, 2h, 3d), a date (2026-11-28) "
            "nor an RFC 3339 date-time with Z or an offset (2026-11-28T18:00:00Z)"
        ) from None


def parse_offsets(text: str) -> tuple[int | None, int | None]:
    """``FIRST..LAST`` (either side may be left out) or one ``OFFSET``; ValueError otherwise."""
    first, sep, last = text.strip().partition("..")
    bounds = (first, last) if sep else (first, first)
    if not any(bounds) or not all(b.isdigit() or b == "" for b in bounds):
        raise ValueError(f"{text[:40]!r} is not FIRST..LAST, FIRST.., ..LAST or one offset")
    low, high = (int(b) if b else None for b in bounds)
    return low, high


def parse_event_ids(values: Iterable[str]) -> frozenset[str]:
    """Event ids from repeated flags, each possibly comma-separated."""
    return frozenset(part.strip() for value in values for part in value.split(",") if part.strip())


def _within(value: float | None, low: float | None, high: float | None) -> bool:
    """Whether ``value`` is in [low, high); unbounded sides always hold, an absent value fails
    any bound."""
    if low is None and high is None:
        return True
    if value is None:
        return False
    return (low is None or value >= low) and (high is None or value < high)


def _class_matches(error_class: str | None, wanted: frozenset[str]) -> bool:
    if error_class is None:
        return False
    short = error_class.rsplit(".", 1)[-1]
    return error_class in wanted or short in wanted


def _int(text: str | None) -> int | None:
    if text is None or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return parse_timestamp(text).timestamp()
    except (ValueError, OverflowError):
        return None
