"""Out-of-order completion, in-order commits: the committable offset of each partition.

Events of one partition are scored concurrently and finish in any order, but a Kafka commit
says "everything before this position is done". :class:`PartitionOffsets` tracks offsets as
they are consumed and as their output (decision or dead letter) is acknowledged, and reports
the highest position that is safe to commit: never past an offset still in flight, so a crash
replays unfinished work (at-least-once) and nothing else that is contiguous.

Offsets need not be contiguous: compacted topics and transaction markers leave gaps. The
committable position is the smallest tracked-but-incomplete offset when there is one (every
tracked offset before it is done, and untracked ones do not exist), else the last tracked
offset + 1. A position is a Kafka committed offset, i.e. the next offset to read.

Each offset enters the deque once and leaves it once, so every operation is amortised O(1).

**Completed beyond the position.** A commit can say more than its position: its metadata
(:func:`encode_completed`) lists the offsets above it that are already done, compactly, as
Confluent's Parallel Consumer does. After a crash the partition's next owner reads it back
(:func:`decode_completed`) and skips those offsets instead of deciding them again: a replayed
event would be past its deadline and get a fallback contradicting the decision already
published. The encoding is the shorter of two: run lengths (varints) of alternating
incomplete and complete offsets, or a bitmap; base64, behind a version tag. Anything else in
the metadata (another tool's, or garbage) decodes as "nothing known", which is safe.
"""

from __future__ import annotations

import base64
import binascii
from collections import deque
from collections.abc import Iterable
from typing import Final, NamedTuple

METADATA_TAG: Final = "sp1"


class TopicPartition(NamedTuple):
    """A partition of a topic: the unit of ordering, assignment and commits."""

    topic: str
    partition: int


class CommitPoint(NamedTuple):
    """What a commit says of a partition: its position, and what is done beyond it."""

    offset: int
    metadata: str = ""


class PartitionOffsets:
    """Consumed and completed offsets of one partition.

    ``track`` in consumption order (strictly increasing), ``complete`` in any order.
    ``reset`` forgets everything in flight, for a seek or a re-assignment: commit what is
    committable first if it should not be lost.
    """

    __slots__ = ("_committable", "_incomplete", "_last_tracked", "_next", "_order")

    def __init__(self, next_offset: int | None = None) -> None:
        self._order: deque[int] = deque()  # tracked offsets from the oldest incomplete on
        self._incomplete: set[int] = set()
        self._last_tracked: int | None = None
        self._next = _check(next_offset) if next_offset is not None else 0  # lowest trackable
        self._committable: int | None = None

    def track(self, offset: int) -> None:
        """Record that ``offset`` was consumed; ValueError unless it is past every earlier one."""
        if _check(offset) < self._next:
            raise ValueError(f"offset {offset} goes backwards: the next must be >= {self._next}")
        self._last_tracked = offset
        self._next = offset + 1
        self._order.append(offset)
        self._incomplete.add(offset)

    def complete(self, offset: int) -> None:
        """Record that ``offset``'s output was acknowledged; ValueError if not in flight."""
        try:
            self._incomplete.remove(offset)
        except KeyError:
            raise ValueError(f"offset {offset} is not in flight (unknown, or done)") from None
        order = self._order
        if order[0] != offset:
            return  # an earlier offset is still in flight; the position cannot move yet
        while order and order[0] not in self._incomplete:
            order.popleft()
        self._committable = order[0] if order else self._next

    def committable(self) -> int | None:
        """The position to commit, or None when nothing completed since creation or reset."""
        return self._committable

    def commit_point(self) -> tuple[int, list[int]] | None:
        """The position to commit and the completed offsets above it, ascending; None while
        nothing at all has completed."""
        order = self._order
        if not order:
            return None if self._committable is None else (self._committable, [])
        incomplete = self._incomplete
        done = [offset for offset in order if offset not in incomplete]
        if not done and self._committable is None:
            return None
        return order[0], done

    def reset(self, next_offset: int) -> None:
        """Forget all tracked offsets; the next tracked offset must be >= ``next_offset``."""
        self._next = _check(next_offset)
        self._order.clear()
        self._incomplete.clear()
        self._last_tracked = None
        self._committable = None

    @property
    def pending(self) -> int:
        """How many tracked offsets are not complete."""
        return len(self._incomplete)

    @property
    def oldest_pending(self) -> int | None:
        """The smallest incomplete offset: the one holding the committable position back."""
        return self._order[0] if self._order else None

    @property
    def last_tracked(self) -> int | None:
        return self._last_tracked

    def __contains__(self, offset: object) -> bool:
        """Whether ``offset`` is in flight (tracked and not complete)."""
        return offset in self._incomplete

    def __repr__(self) -> str:
        return (
            f"PartitionOffsets(committable={self._committable}, pending={self.pending}, "
            f"oldest_pending={self.oldest_pending}, last_tracked={self._last_tracked})"
        )


def _check(offset: int) -> int:
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"an offset is a non-negative integer, got {offset!r}")
    return offset


def encode_completed(position: int, completed: Iterable[int]) -> str:
    """Commit metadata for ``completed`` offsets above ``position`` (which is incomplete)."""
    offsets = sorted(set(completed))
    if not offsets:
        return ""
    if offsets[0] <= position:
        raise ValueError(f"completed offsets must be above the position {position}")
    runs = _varints(_runs(position, offsets))
    bitmap = _bitmap(position, offsets)
    kind, data = ("r", runs) if len(runs) <= len(bitmap) else ("b", bitmap)
    return f"{METADATA_TAG}:{kind}{base64.urlsafe_b64encode(data).decode().rstrip('=')}"


def decode_completed(position: int, metadata: str | None) -> frozenset[int]:
    """The completed offsets above ``position`` that :func:`encode_completed` wrote; nothing
    for metadata it did not write."""
    prefix = f"{METADATA_TAG}:"
    if not metadata or not metadata.startswith(prefix) or len(metadata) < len(prefix) + 1:
        return frozenset()
    kind, text = metadata[len(prefix)], metadata[len(prefix) + 1 :]
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return frozenset()
    if kind == "b":
        return frozenset(
            position + i * 8 + bit
            for i, byte in enumerate(data)
            for bit in range(8)
            if byte >> bit & 1
        )
    if kind != "r":
        return frozenset()
    found: set[int] = set()
    cursor, done = position, False
    try:
        for length in _read_varints(data):
            if done:
                found.update(range(cursor, cursor + length))
            cursor += length
            done = not done
    except ValueError:
        return frozenset()
    return frozenset(found)


def _runs(position: int, offsets: list[int]) -> list[int]:
    """Alternating run lengths from ``position``: incomplete, complete, incomplete, ..."""
    runs: list[int] = []
    cursor = position
    start = offsets[0]
    previous = start - 1
    for offset in offsets:
        if offset != previous + 1:
            runs.append(start - cursor)  # the incomplete gap before this complete run
            runs.append(previous + 1 - start)
            cursor, start = previous + 1, offset
        previous = offset
    runs.append(start - cursor)
    runs.append(previous + 1 - start)
    return runs


def _bitmap(position: int, offsets: list[int]) -> bytes:
    data = bytearray((offsets[-1] - position) // 8 + 1)
    for offset in offsets:
        index = offset - position
        data[index // 8] |= 1 << (index % 8)
    return bytes(data)


def _varints(numbers: list[int]) -> bytes:
    out = bytearray()
    for number in numbers:
        rest = number
        while rest >= 0x80:
            out.append(rest & 0x7F | 0x80)
            rest >>= 7
        out.append(rest)
    return bytes(out)


def _read_varints(data: bytes) -> list[int]:
    numbers: list[int] = []
    value = shift = 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            if shift > 63:
                raise ValueError("varint too long")
            continue
        numbers.append(value)
        value = shift = 0
    if shift:
        raise ValueError("truncated varint")
    return numbers
