"""The engine's state, as its parts share it.

:class:`~streamproc.processor.engine.Processor` is written in parts, one concept per module:
the record's path through the engine (:mod:`.engine`), commits and transactions
(:mod:`.commits`), and rebalances (:mod:`.rebalance`). Each part sees the state declared here;
the processor creates it. The hooks at the end are the engine's, which the other parts call.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from streamproc.config import KafkaSettings, ProcessingSettings
from streamproc.core.offsets import TopicPartition
from streamproc.core.ordering import OrderingGate
from streamproc.kafka.records import ConsumedRecord, OutputRecord
from streamproc.observability.metrics import Count, ProcessorMetrics
from streamproc.processor.allocation import Allocation
from streamproc.processor.flight import Flight
from streamproc.processor.partition import PartitionState
from streamproc.processor.ports import Sink, Source


class EngineState:
    metrics: ProcessorMetrics
    allocations: dict[str, Allocation]
    sink: Sink
    source: Source
    _kafka: KafkaSettings
    _proc: ProcessingSettings
    _loop: asyncio.AbstractEventLoop | None
    _partitions: dict[TopicPartition, PartitionState]
    _gate: OrderingGate
    _in_flight: int
    _intake: deque[ConsumedRecord]
    _overflow: deque[Flight]  # outputs the producer could not queue yet
    _stopping: bool
    _on_assignment: Callable[[Sequence[TopicPartition]], Awaitable[None]] | None
    # Exactly once.
    _exactly_once: bool
    _committing: bool  # a transaction commits: outputs wait in the overflow
    _in_transaction: int  # outputs produced into the open transaction
    _transaction_error: BaseException | None
    _commit_lock: asyncio.Lock
    _corrections: list[OutputRecord]  # corrections held back while a transaction commits
    _metadata_dropped: Count

    def _maybe_resume(self) -> None:
        raise NotImplementedError

    def _flush_overflow(self) -> None:
        raise NotImplementedError

    def _produce_correction(self, correction: OutputRecord) -> None:
        raise NotImplementedError
