"""What librdkafka's statistics say about the consumer: its lag, and its group.

librdkafka sends a JSON document every ``statistics.interval.ms`` to ``stats_cb``, on the
thread that serves the consumer (inside ``consume()``), so reading it costs one parse per
interval and nothing per record. For each partition this member is assigned, the lag is the
distance from the consumer's position (the offset after the last record handed to the
application, or else the committed offset) to the partition's end (the last stable offset, as
the consumer reads committed records only, or else the high watermark).

The lag of a partition paused for backpressure is a lower bound: librdkafka stops fetching
it, so its end is the one last fetched. Records consumed but not yet committed are the commit
lag (``streamproc_commit_lag``), not this.

The same document's ``cgrp`` object says how this member stands in its consumer group: the
group handler's state, the join state (``steady`` between rebalances), and how many rebalances
it has been through, when the last one was and why. librdkafka reports no generation id or
member id there; the rebalance count is what moves when the generation does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import Gauge

from streamproc.kafka.records import TopicPartition
from streamproc.logs import get_logger

log = get_logger("kafka.statistics")

# Often enough for a dashboard and an autoscaler; rare enough that its cost is nothing.
# ``kafka.consumer_overrides`` may set statistics.interval.ms otherwise (0 turns it off).
STATISTICS_INTERVAL_MS = 5_000


def consumer_lag(stats: Mapping[str, Any]) -> dict[TopicPartition, int]:
    """The lag of every assigned partition whose position and end are known."""
    lags: dict[TopicPartition, int] = {}
    topics = stats.get("topics")
    if not isinstance(topics, Mapping):
        return lags
    for topic, topic_stats in topics.items():
        partitions = topic_stats.get("partitions") if isinstance(topic_stats, Mapping) else None
        if not isinstance(partitions, Mapping):
            continue
        for p in partitions.values():
            # Partition -1 is librdkafka's holder of records not yet assigned a partition.
            if not isinstance(p, Mapping) or p.get("partition", -1) < 0 or not p.get("desired"):
                continue
            end = _first_known(p, "ls_offset", "hi_offset")
            position = _first_known(p, "app_offset", "committed_offset")
            if end is not None and position is not None:
                lags[TopicPartition(str(topic), int(p["partition"]))] = max(0, end - position)
    return lags


@dataclass(frozen=True, slots=True)
class GroupState:
    """This member's view of its consumer group, from one statistics document."""

    state: str  # the group handler's state: "up" once the coordinator is known
    join_state: str  # "steady" between rebalances
    rebalances: int  # rebalances this member has been through
    rebalance_age_s: float | None  # since the last one; None before the first
    rebalance_reason: str
    assigned: int  # partitions assigned to this member
    received_monotonic: float  # when the document arrived


def group_state(stats: Mapping[str, Any], received_monotonic: float) -> GroupState | None:
    """The ``cgrp`` object of a consumer's statistics; None when there is none (a producer)."""
    cgrp = stats.get("cgrp")
    if not isinstance(cgrp, Mapping):
        return None
    rebalances = _count(cgrp.get("rebalance_cnt"))
    age_ms = _count(cgrp.get("rebalance_age"))
    return GroupState(
        state=str(cgrp.get("state", "")),
        join_state=str(cgrp.get("join_state", "")),
        rebalances=rebalances,
        rebalance_age_s=age_ms / 1000 if rebalances else None,
        rebalance_reason=str(cgrp.get("rebalance_reason", "")),
        assigned=_count(cgrp.get("assignment_size")),
        received_monotonic=received_monotonic,
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def _first_known(partition: Mapping[str, Any], *names: str) -> int | None:
    # librdkafka writes -1001 (OFFSET_INVALID) for an offset it does not know yet.
    for name in names:
        value = partition.get(name)
        if isinstance(value, int) and value >= 0:
            return value
    return None


class ConsumerStatistics:
    """Takes the consumer's statistics: a ``[topic, partition]`` lag gauge equal to the last
    document, and :attr:`group`, the last group state.

    A partition that is no longer assigned leaves the gauge, so a revoked partition's last lag
    does not stay on the dashboard as if it were still this member's.
    """

    def __init__(
        self,
        gauge: Gauge,
        interval_ms: int = STATISTICS_INTERVAL_MS,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._gauge = gauge
        self._interval_ms = interval_ms
        self._monotonic = monotonic
        self._shown: set[TopicPartition] = set()
        # Replaced whole by the consumer thread; readers on the loop see one document's state.
        self.group: GroupState | None = None

    def client_config(self) -> dict[str, Any]:
        """librdkafka settings that make the consumer report its statistics here."""
        return {"statistics.interval.ms": self._interval_ms, "stats_cb": self.on_statistics}

    def on_statistics(self, document: str) -> None:
        try:
            stats = orjson.loads(document)
        except orjson.JSONDecodeError as exc:
            log.warning("statistics_unreadable", error=str(exc))
            return
        if not isinstance(stats, Mapping):
            stats = {}
        self.group = group_state(stats, self._monotonic()) or self.group
        lags = consumer_lag(stats)
        for topic, partition in self._shown - lags.keys():
            self._gauge.remove(topic, str(partition))
        for (topic, partition), lag in lags.items():
            self._gauge.labels(topic, str(partition)).set(lag)
        self._shown = set(lags)
