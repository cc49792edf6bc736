"""Processor: a record delivered twice is processed once."""

from __future__ import annotations

from tests.unit.processor.conftest import MakeHarness
from tests.unit.processor.fakes import TP0, record


async def test_a_repeated_offset_is_not_processed_twice(make_harness: MakeHarness) -> None:
    """If the consumer hands over an offset again within one assignment, the repeat is
    skipped rather than crashing intake or producing a second output."""
    h = make_harness()
    await h.start()
    h.source.feed(record(0), record(1))
    await h.outputs(2)
    h.source.feed(record(1), record(2))
    await h.outputs(3)
    await h.stop()
    assert sorted(h.sink.by_source()) == [(0, 0), (0, 1), (0, 2)]
    assert all(len(outs) == 1 for outs in h.sink.by_source().values())
    assert h.source.committed(TP0) == 3
