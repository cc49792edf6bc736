"""Dead letters of the real processor, replayed into its input: their replays are bounded."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from streamproc.dlq.selection import REPLAY_COUNT
from tests.integration.dlq.helpers import run_replay
from tests.integration.processor.harness import (
    TEST_ID,
    collecting,
    new_topics,
    produce_raw,
    running,
    settings_for,
    wait_for,
)

pytestmark = pytest.mark.integration


def replay(bootstrap: str, dlq: str, target: str, group: str, *flags: str) -> str:
    ran = run_replay(bootstrap, dlq, target, group, *flags)
    assert ran.status == 0, ran.err
    return ran.out


async def test_a_record_failing_again_is_replayed_at_most_max_replays_times(
    kafka_bootstrap: str, emulator: Any, unique_group: str
) -> None:
    """A dead letter that fails again each time it is replayed comes back with its replay count
    (the processor keeps the input's headers), and after --max-replays replays it is reported,
    not replayed."""
    topics = new_topics(kafka_bootstrap, partitions=1)
    settings = settings_for(kafka_bootstrap, emulator.url, topics, unique_group)
    bad = orjson.dumps({"event_id": "bad-1", "occurred_at": "2026-01-01T00:00:00Z"})
    group = f"{unique_group}-replay"

    def run(*flags: str) -> str:
        return replay(kafka_bootstrap, topics.dlq, topics.input, group, *flags)

    async with collecting(kafka_bootstrap, topics) as outputs, running(settings):
        await asyncio.to_thread(produce_raw, kafka_bootstrap, topics.input, [("bad-1", bad)])
        await wait_for(lambda: len(outputs.dead_letters()) == 1, 30, "the first dead letter")

        first = await asyncio.to_thread(run, "--max-replays", "2")
        assert "  replayed      1 (validate 1)" in first
        await wait_for(lambda: len(outputs.dead_letters()) == 2, 30, "the second dead letter")
        second = await asyncio.to_thread(run, "--max-replays", "2")
        assert "  replayed      1 (validate 1)" in second
        await wait_for(lambda: len(outputs.dead_letters()) == 3, 30, "the third dead letter")
        third = await asyncio.to_thread(run, "--max-replays", "2")
        assert "  replayed      0" in third
        assert "  over limit    1 " in third
        assert "event bad-1  stage validate" in third

    counts = [o.headers.get(REPLAY_COUNT) for o in outputs.dead_letters()]
    assert counts == [None, b"1", b"2"]
    assert all(o.headers.get(TEST_ID) == b"bad-1" for o in outputs.dead_letters())
    assert all(o.value == bad for o in outputs.dead_letters())
