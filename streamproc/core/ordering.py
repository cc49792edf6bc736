"""Ordering inside a partition: which consumed events may start scoring now.

Modes (as in Confluent's Parallel Consumer):

- ``key``: events with the same record key are scored one at a time, in offset order;
  different keys run concurrently. Events without a key (None) form one more lane per
  partition, so they keep their relative order among themselves: an unkeyed producer gets
  partition order for its events without holding back keyed ones.
- ``partition``: one event at a time per partition, in offset order.
- ``unordered``: everything may start at once; only the concurrency budget limits it.

The gate is only about order. It does not decide *when* work runs (the concurrency budget
does) nor what may be committed (:mod:`streamproc.core.offsets` does). Offsets submitted for
one lane must increase; the gate does not reorder what it is given.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import Literal, TypeAlias, get_args

OrderingMode: TypeAlias = Literal["key", "partition", "unordered"]

_PARTITION_LANE = object()  # the single lane of a partition in "partition" mode


class OrderingGate:
    """Admission of events in the order the mode requires.

    ``submit`` says whether an event may start now; otherwise it is queued behind the event
    that holds its lane, and ``finish`` of that event releases it. ``drop_partition`` is for
    revokes: it forgets the partition's queued events and returns their offsets (they never
    started); events of that partition still running may ``finish`` later and are ignored.
    ``reset_partition`` forgets a partition whose running events will never finish.
    Await those before submitting the same offsets again after a re-assignment: an old
    finish for an offset that is running anew cannot be told apart from the new one's.
    """

    __slots__ = ("_lanes", "_mode", "_orphans", "_queued", "_running")

    def __init__(self, mode: OrderingMode) -> None:
        if mode not in get_args(OrderingMode):
            raise ValueError(f"unknown ordering mode {mode!r}")
        self._mode: OrderingMode = mode
        # partition -> lane -> offsets; the head of each deque is the running event. In
        # unordered mode each offset is its own lane, so the same bookkeeping serves.
        self._lanes: dict[Hashable, dict[Hashable, deque[int]]] = {}
        # Per dropped partition, the (lane, offset) pairs that were running when it was
        # dropped, until their late finish arrives.
        self._orphans: dict[Hashable, set[tuple[Hashable, int]]] = {}
        self._running = 0
        self._queued = 0

    @property
    def mode(self) -> OrderingMode:
        return self._mode

    @property
    def running(self) -> int:
        """Events started and not finished."""
        return self._running

    @property
    def queued(self) -> int:
        """Events waiting behind an earlier event of their lane."""
        return self._queued

    def submit(self, partition: Hashable, key: Hashable, offset: int) -> bool:
        """Admit an event: True if it may start now, False if it waits for its lane."""
        lanes = self._lanes.setdefault(partition, {})
        lane_id = self._lane(key, offset)
        lane = lanes.get(lane_id)
        if lane is None:
            lanes[lane_id] = deque((offset,))
            self._running += 1
            return True
        if offset <= lane[-1]:
            raise ValueError(
                f"offset {offset} submitted after {lane[-1]} in the same lane of {partition!r}"
            )
        lane.append(offset)
        self._queued += 1
        return False

    def finish(self, partition: Hashable, key: Hashable, offset: int) -> list[int]:
        """Mark a started event done; returns the offsets that may start now (0 or 1)."""
        lane_id = self._lane(key, offset)
        lanes = self._lanes.get(partition)
        lane = lanes.get(lane_id) if lanes is not None else None
        if lanes is None or lane is None or lane[0] != offset:
            orphans = self._orphans.get(partition)
            if orphans is not None and (lane_id, offset) in orphans:
                orphans.remove((lane_id, offset))
                if not orphans:
                    del self._orphans[partition]
                return []
            raise ValueError(f"offset {offset} of {partition!r} is not running")
        lane.popleft()
        self._running -= 1
        if not lane:
            del lanes[lane_id]
            if not lanes:
                del self._lanes[partition]
            return []
        self._queued -= 1
        self._running += 1
        return [lane[0]]

    def drop_partition(self, partition: Hashable) -> list[int]:
        """Forget a revoked partition; returns its queued (never started) offsets, sorted."""
        lanes = self._lanes.pop(partition, {})
        dropped: list[int] = []
        orphans: set[tuple[Hashable, int]] = set()
        for lane_id, lane in lanes.items():
            orphans.add((lane_id, lane[0]))
            dropped.extend(lane[i] for i in range(1, len(lane)))
        self._running -= len(orphans)
        if orphans:
            self._orphans.setdefault(partition, set()).update(orphans)
        self._queued -= len(dropped)
        dropped.sort()
        return dropped

    def reset_partition(self, partition: Hashable) -> None:
        """Forget a partition whose events will never finish (lost, or rewound to redo them):
        its lanes, queued and running alike, and what it left behind."""
        lanes = self._lanes.pop(partition, {})
        self._running -= len(lanes)
        self._queued -= sum(len(lane) - 1 for lane in lanes.values())
        self._orphans.pop(partition, None)

    def _lane(self, key: Hashable, offset: int) -> Hashable:
        if self._mode == "key":
            return key
        if self._mode == "partition":
            return _PARTITION_LANE
        return offset
