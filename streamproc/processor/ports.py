"""What the engine needs of Kafka: a source of records and a sink for outputs.

The adapters in :mod:`streamproc.kafka` implement them; the unit tests use fakes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from streamproc.core.offsets import CommitPoint, TopicPartition
from streamproc.kafka.records import ConsumedRecord, OutputRecord
from streamproc.logs import get_logger

if TYPE_CHECKING:
    from streamproc.processor.flight import Flight

log = get_logger("processor")

# How often the sink's delivery reports are served while outputs or work are in flight.
BUSY_TICK_S = 0.005


class Source(Protocol):
    room: int
    last_poll_monotonic: float
    # The group has answered: an assignment (maybe empty) came, so records can flow.
    joined: bool

    async def start(
        self,
        deliver: Callable[[list[ConsumedRecord]], None],
        fail: Callable[[BaseException], None],
    ) -> None: ...
    async def commit(self, points: Mapping[TopicPartition, CommitPoint]) -> bool: ...
    def seek(self, positions: Mapping[TopicPartition, int]) -> None:
        """Read these partitions again from ``positions``: from this call on, only their
        records from there are delivered. Returns at once."""
        ...

    def group_metadata(self) -> Any: ...
    async def pause(self, partitions: Sequence[TopicPartition]) -> None: ...
    async def resume(self, partitions: Sequence[TopicPartition]) -> None: ...
    async def close(self) -> None: ...


class Sink(Protocol):
    def produce(self, record: OutputRecord, token: Flight | None) -> bool: ...
    def poll(self) -> int: ...
    def pending(self) -> int: ...

    # Exactly-once only.
    async def start_transactions(self) -> None: ...
    def begin(self) -> None: ...
    async def commit(self, offsets: Mapping[TopicPartition, CommitPoint], group: Any) -> None: ...
    async def abort(self) -> None: ...
    async def renew(self) -> None: ...


def log_failure(task: asyncio.Task[None]) -> None:
    """Done callback of a source request nobody waits for (pause, resume, seek)."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("consumer_request_failed", error=str(task.exception()))
