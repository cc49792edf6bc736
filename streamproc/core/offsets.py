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
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple


class TopicPartition(NamedTuple):
    """A partition of a topic: the unit of ordering, assignment and commits."""

    topic: str
    partition: int


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
