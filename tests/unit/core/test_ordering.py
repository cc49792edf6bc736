"""Ordering of events inside a partition."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from streamproc.core.ordering import OrderingGate, OrderingMode


def test_key_mode_serialises_a_key_and_runs_other_keys_concurrently() -> None:
    """In key mode a key waits for its earlier event; other keys start at once."""
    gate = OrderingGate("key")
    assert gate.submit(0, b"a", 1) is True
    assert gate.submit(0, b"b", 2) is True
    assert gate.submit(0, b"a", 3) is False
    assert gate.submit(0, b"a", 4) is False
    assert (gate.running, gate.queued) == (2, 2)
    assert gate.finish(0, b"b", 2) == []
    assert gate.finish(0, b"a", 1) == [3]
    assert gate.finish(0, b"a", 3) == [4]
    assert gate.finish(0, b"a", 4) == []
    assert (gate.running, gate.queued) == (0, 0)


def test_same_key_on_different_partitions_is_independent() -> None:
    """A key's lane is per partition."""
    gate = OrderingGate("key")
    assert gate.submit(0, b"a", 1)
    assert gate.submit(1, b"a", 1)


def test_none_keys_are_ordered_among_themselves() -> None:
    """Unkeyed events keep their order per partition without blocking keyed ones."""
    gate = OrderingGate("key")
    assert gate.submit(0, None, 1) is True
    assert gate.submit(0, None, 2) is False
    assert gate.submit(0, b"k", 3) is True
    assert gate.finish(0, None, 1) == [2]


def test_partition_mode_runs_one_event_per_partition() -> None:
    """In partition mode keys are ignored: one event at a time, in offset order."""
    gate = OrderingGate("partition")
    assert gate.submit(0, b"a", 1) is True
    assert gate.submit(0, b"b", 2) is False
    assert gate.submit(1, b"a", 1) is True
    assert gate.finish(0, b"a", 1) == [2]


def test_unordered_mode_starts_everything() -> None:
    """In unordered mode every event may start immediately."""
    gate = OrderingGate("unordered")
    assert all(gate.submit(0, b"a", o) for o in range(5))
    assert gate.running == 5
    assert gate.finish(0, b"a", 3) == []
    assert gate.running == 4


@pytest.mark.parametrize("mode", ["key", "partition", "unordered"])
def test_finishing_what_is_not_running_is_an_error(mode: OrderingMode) -> None:
    """finish of an unknown, queued or already finished event raises."""
    gate = OrderingGate(mode)
    with pytest.raises(ValueError, match="not running"):
        gate.finish(0, b"a", 1)
    gate.submit(0, b"a", 1)
    gate.submit(0, b"a", 2)
    if mode != "unordered":
        with pytest.raises(ValueError, match="not running"):
            gate.finish(0, b"a", 2)  # queued, not running
    gate.finish(0, b"a", 1)
    with pytest.raises(ValueError, match="not running"):
        gate.finish(0, b"a", 1)


@pytest.mark.parametrize("mode", ["key", "partition"])
def test_offsets_in_a_lane_must_increase(mode: OrderingMode) -> None:
    """Submitting an offset at or below the lane's last one is a programming error."""
    gate = OrderingGate(mode)
    gate.submit(0, b"a", 5)
    with pytest.raises(ValueError, match="same lane"):
        gate.submit(0, b"a", 5)


def test_unknown_mode_is_rejected() -> None:
    """Only the three documented modes exist."""
    with pytest.raises(ValueError, match="unknown ordering mode"):
        OrderingGate("fifo")  # type: ignore[arg-type]


def test_drop_partition_returns_queued_and_ignores_late_finishes() -> None:
    """A revoke discards queued events; running ones may still finish, harmlessly, once."""
    gate = OrderingGate("key")
    gate.submit(0, b"a", 1)
    gate.submit(0, b"a", 4)
    gate.submit(0, b"b", 2)
    gate.submit(0, b"b", 3)
    gate.submit(1, b"a", 9)
    assert gate.drop_partition(0) == [3, 4]
    assert (gate.running, gate.queued) == (1, 0)
    assert gate.finish(0, b"a", 1) == []
    with pytest.raises(ValueError, match="not running"):
        gate.finish(0, b"a", 1)
    # Re-assigned: new events start fresh even while an old one has not reported.
    assert gate.submit(0, b"b", 10) is True
    assert gate.finish(0, b"b", 2) == []
    assert gate.finish(0, b"b", 10) == []
    assert gate.drop_partition(5) == []


class GateMachine(RuleBasedStateMachine):
    """Random submits and finishes over a few partitions and keys."""

    mode: OrderingMode = "key"

    def __init__(self) -> None:
        super().__init__()
        self.gate = OrderingGate(self.mode)
        self.next_offset: dict[int, int] = defaultdict(int)
        self.running: set[tuple[int, bytes | None, int]] = set()
        self.waiting: set[tuple[int, bytes | None, int]] = set()
        self.started: dict[tuple[int, object], list[int]] = defaultdict(list)
        self.submitted: dict[tuple[int, object], list[int]] = defaultdict(list)

    def lane(self, partition: int, key: bytes | None, offset: int) -> tuple[int, object]:
        if self.mode == "key":
            return (partition, key)
        if self.mode == "partition":
            return (partition, None)
        return (partition, offset)

    def start(self, partition: int, key: bytes | None, offset: int) -> None:
        self.running.add((partition, key, offset))
        self.started[self.lane(partition, key, offset)].append(offset)

    @rule(
        partition=st.integers(min_value=0, max_value=1),
        key=st.sampled_from([b"a", b"b", b"c", None]),
        gap=st.integers(min_value=1, max_value=3),
    )
    def submit(self, partition: int, key: bytes | None, gap: int) -> None:
        offset = self.next_offset[partition] + gap - 1
        self.next_offset[partition] = offset + 1
        self.submitted[self.lane(partition, key, offset)].append(offset)
        if self.gate.submit(partition, key, offset):
            self.start(partition, key, offset)
        else:
            self.waiting.add((partition, key, offset))

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        event = data.draw(st.sampled_from(sorted(self.running, key=repr)))
        self.running.remove(event)
        partition = event[0]
        for released in self.gate.finish(*event):
            match = [w for w in self.waiting if w[0] == partition and w[2] == released]
            assert len(match) == 1
            self.waiting.remove(match[0])
            self.start(*match[0])

    @invariant()
    def one_running_event_per_lane(self) -> None:
        lanes = [self.lane(*e) for e in self.running]
        assert len(lanes) == len(set(lanes))

    @invariant()
    def each_lane_starts_in_offset_order(self) -> None:
        for lane, started in self.started.items():
            assert started == self.submitted[lane][: len(started)]

    @invariant()
    def nothing_waits_on_an_idle_lane(self) -> None:
        busy = {self.lane(*e) for e in self.running}
        assert all(self.lane(*w) in busy for w in self.waiting)

    @invariant()
    def counters_agree(self) -> None:
        assert self.gate.running == len(self.running)
        assert self.gate.queued == len(self.waiting)


class PartitionGateMachine(GateMachine):
    mode: OrderingMode = "partition"


class UnorderedGateMachine(GateMachine):
    mode: OrderingMode = "unordered"


_SETTINGS = settings(max_examples=40, stateful_step_count=40)
TestKeyOrdering = GateMachine.TestCase
TestKeyOrdering.settings = _SETTINGS
TestPartitionOrdering = PartitionGateMachine.TestCase
TestPartitionOrdering.settings = _SETTINGS
TestUnordered = UnorderedGateMachine.TestCase
TestUnordered.settings = _SETTINGS


def test_a_reset_partition_starts_over_with_nothing_running_or_queued() -> None:
    """After a reset (a lost partition, or a rewind to redo its events), the same offsets can
    be submitted again and start at once; other partitions are untouched."""
    gate = OrderingGate("key")
    assert gate.submit("p0", "A", 1)
    assert not gate.submit("p0", "A", 2)
    assert gate.submit("p1", "A", 1)
    gate.reset_partition("p0")
    assert (gate.running, gate.queued) == (1, 0)
    assert gate.submit("p0", "A", 1)
    assert gate.finish("p1", "A", 1) == []
