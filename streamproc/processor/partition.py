"""One assigned partition as the engine sees it: its offsets, its events in flight, its commits."""

from __future__ import annotations

import asyncio

from streamproc.core.offsets import CommitPoint, PartitionOffsets
from streamproc.processor.flight import Flight


class PartitionState:
    __slots__ = (
        "committed",
        "done",
        "first_offset",
        "flights",
        "idle",
        "last_offset",
        "offsets",
        "revoking",
    )

    def __init__(self, done: frozenset[int] = frozenset()) -> None:
        self.offsets = PartitionOffsets()
        self.flights: dict[int, Flight] = {}
        self.idle = asyncio.Event()
        self.idle.set()
        self.revoking = False
        self.committed: CommitPoint | None = None
        self.first_offset: int | None = None  # where reading began, for a rewind
        self.last_offset: int | None = None
        # Offsets a previous owner completed beyond its commit: skipped, not decided again.
        self.done = set(done)
