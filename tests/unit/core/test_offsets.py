"""Committable offsets under out-of-order completion."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from streamproc.core.offsets import PartitionOffsets, decode_completed, encode_completed


def test_nothing_is_committable_before_a_completion() -> None:
    """Tracking alone never produces a position to commit."""
    offsets = PartitionOffsets()
    offsets.track(0)
    offsets.track(1)
    assert offsets.committable() is None
    assert offsets.pending == 2
    assert offsets.oldest_pending == 0


def test_position_waits_for_the_oldest_incomplete_offset() -> None:
    """A later completion does not move the position past an earlier offset in flight."""
    offsets = PartitionOffsets()
    for o in (10, 11, 12):
        offsets.track(o)
    offsets.complete(12)
    offsets.complete(11)
    assert offsets.committable() is None
    offsets.complete(10)
    assert offsets.committable() == 13
    assert offsets.pending == 0
    assert offsets.oldest_pending is None


def test_position_stops_at_the_oldest_incomplete_offset() -> None:
    """With 5 done and 6 in flight the position is 6: resume at the unfinished one."""
    offsets = PartitionOffsets()
    for o in (5, 6, 7):
        offsets.track(o)
    offsets.complete(5)
    offsets.complete(7)
    assert offsets.committable() == 6
    assert 6 in offsets
    assert 7 not in offsets


def test_gaps_in_offsets_are_not_waited_for() -> None:
    """Offsets missing from the log (compaction, transaction markers) do not block the position."""
    offsets = PartitionOffsets()
    for o in (3, 7, 20):
        offsets.track(o)
    offsets.complete(3)
    assert offsets.committable() == 7
    offsets.complete(7)
    assert offsets.committable() == 20
    offsets.complete(20)
    assert offsets.committable() == 21


@pytest.mark.parametrize("offset", [4, 5])
def test_backwards_or_duplicate_offset_is_rejected(offset: int) -> None:
    """Tracking must strictly advance."""
    offsets = PartitionOffsets()
    offsets.track(5)
    with pytest.raises(ValueError, match="backwards"):
        offsets.track(offset)


def test_next_offset_sets_the_floor() -> None:
    """An offset below the starting position is rejected."""
    offsets = PartitionOffsets(next_offset=100)
    with pytest.raises(ValueError, match="backwards"):
        offsets.track(99)
    offsets.track(100)


@pytest.mark.parametrize("bad", [-1, True, 1.5])
def test_offsets_are_non_negative_integers(bad: object) -> None:
    """Negative, boolean and fractional offsets are rejected."""
    with pytest.raises(ValueError, match="non-negative integer"):
        PartitionOffsets().track(bad)  # type: ignore[arg-type]


def test_unknown_or_double_completion_is_rejected() -> None:
    """Completing an offset that is not in flight is an error, including a second time."""
    offsets = PartitionOffsets()
    offsets.track(1)
    with pytest.raises(ValueError, match="not in flight"):
        offsets.complete(2)
    offsets.complete(1)
    with pytest.raises(ValueError, match="not in flight"):
        offsets.complete(1)


def test_reset_forgets_in_flight_offsets_and_allows_going_back() -> None:
    """After reset (a seek), earlier offsets may be tracked again and old ones are unknown."""
    offsets = PartitionOffsets()
    for o in (10, 11):
        offsets.track(o)
    offsets.complete(10)
    offsets.reset(5)
    assert offsets.committable() is None
    assert offsets.pending == 0
    with pytest.raises(ValueError, match="not in flight"):
        offsets.complete(11)
    with pytest.raises(ValueError, match="backwards"):
        offsets.track(4)
    offsets.track(5)
    offsets.complete(5)
    assert offsets.committable() == 6


# --------------------------------------------------------------------------------------
# properties


@st.composite
def schedules(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    """Increasing offsets with random gaps, and a random completion order for them."""
    start = draw(st.integers(min_value=0, max_value=1000))
    gaps = draw(st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=60))
    offsets = [start + sum(gaps[:i]) for i in range(len(gaps))]
    return offsets, draw(st.permutations(offsets))


@given(schedules())
def test_completion_order_never_leaks_past_an_incomplete_offset(
    schedule: tuple[list[int], list[int]],
) -> None:
    """For any completion order the position never passes an incomplete offset, never goes
    back, and ends at max + 1."""
    tracked, completion_order = schedule
    offsets = PartitionOffsets()
    for o in tracked:
        offsets.track(o)
    incomplete = set(tracked)
    previous = None
    for o in completion_order:
        offsets.complete(o)
        incomplete.discard(o)
        position = offsets.committable()
        if position is None:
            # Only while the very first offset is in flight is there nothing to commit.
            assert tracked[0] in incomplete
            continue
        if incomplete:
            assert position <= min(incomplete)
            # It is also the best position: every tracked offset before it is complete.
            assert position == min(incomplete)
        if previous is not None:
            assert position >= previous
        previous = position
    assert offsets.committable() == max(tracked) + 1
    assert offsets.pending == 0


class InterleavedTrackAndComplete(RuleBasedStateMachine):
    """Consumption and completion interleave arbitrarily, as in the processor."""

    def __init__(self) -> None:
        super().__init__()
        self.offsets = PartitionOffsets()
        self.next = 0
        self.in_flight: list[int] = []
        self.tracked: list[int] = []
        self.last_position: int | None = None

    @rule(gap=st.integers(min_value=1, max_value=4))
    def consume(self, gap: int) -> None:
        offset = self.next + gap - 1
        self.offsets.track(offset)
        self.next = offset + 1
        self.in_flight.append(offset)
        self.tracked.append(offset)

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        offset = data.draw(st.sampled_from(self.in_flight))
        self.in_flight.remove(offset)
        self.offsets.complete(offset)

    @invariant()
    def position_is_safe_and_monotonic(self) -> None:
        position = self.offsets.committable()
        if position is None:
            return
        if self.in_flight:
            assert position <= min(self.in_flight)
        else:
            assert position == max(self.tracked) + 1
        if self.last_position is not None:
            assert position >= self.last_position
        self.last_position = position

    @invariant()
    def counts_agree(self) -> None:
        assert self.offsets.pending == len(self.in_flight)
        assert self.offsets.oldest_pending == (min(self.in_flight) if self.in_flight else None)


TestInterleavedTrackAndComplete = InterleavedTrackAndComplete.TestCase
TestInterleavedTrackAndComplete.settings = settings(max_examples=100, stateful_step_count=50)


# --------------------------------------------------------------------------------------
# completed offsets beyond the position, in commit metadata


@given(
    st.integers(min_value=0, max_value=2**40),
    st.sets(st.integers(min_value=1, max_value=20_000), max_size=500),
)
def test_completed_offsets_survive_the_commit_metadata(position: int, above: set[int]) -> None:
    """Whatever was completed above the position is read back exactly from the metadata."""
    completed = {position + d for d in above}
    metadata = encode_completed(position, completed)
    assert decode_completed(position, metadata) == completed
    assert metadata.isascii()
    assert (metadata == "") == (not completed)


def test_the_encoding_is_compact_for_usual_and_worst_patterns() -> None:
    """A run of 10,000 done offsets takes a few bytes; alternating ones a bit each."""
    assert len(encode_completed(100, range(105, 10_105))) < 16
    alternating = encode_completed(0, range(1, 20_000, 2))
    assert len(alternating) < 20_000 // 8 * 4 // 3 + 16  # a bitmap in base64


@pytest.mark.parametrize(
    "metadata",
    ["", None, "some other tool", "sp1:", "sp1:x", "sp1:r!!!", "sp1:r/w", "sp1:r////", "sp2:bAg"],
)
def test_metadata_it_did_not_write_reads_as_nothing_known(metadata: str | None) -> None:
    """Foreign or damaged metadata never makes an offset look done: the event is redone."""
    assert decode_completed(10, metadata) == frozenset()


def test_the_commit_point_carries_completions_above_an_incomplete_head() -> None:
    """With the oldest event still running, the position stays there and the later
    completions ride along, so a crash does not redo them."""
    offsets = PartitionOffsets(5)
    for o in range(5, 10):
        offsets.track(o)
    assert offsets.commit_point() is None
    offsets.complete(7)
    offsets.complete(9)
    assert offsets.commit_point() == (5, [7, 9])
    offsets.complete(5)
    offsets.complete(6)
    assert offsets.commit_point() == (8, [9])
    offsets.complete(8)
    assert offsets.commit_point() == (10, [])
