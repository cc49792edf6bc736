"""Consumer lag from librdkafka's statistics: the records of each partition not yet consumed.

librdkafka sends a JSON document every ``statistics.interval.ms`` to ``stats_cb``, on the
thread that serves the consumer (inside ``consume()``), so reading it costs one parse per
interval and nothing per record. For each partition this member is assigned, the lag is the
distance from the consumer's position (the offset after the last record handed to the
application, or else the committed offset) to the partition's end (the last stable offset, as
the consumer reads committed records only, or else the high watermark).

The lag of a partition paused for backpressure is a lower bound: librdkafka stops fetching
it, so its end is the one last fetched. Records consumed but not yet committed are the commit
lag (``streamproc_commit_lag``), not this.
"""

from __future__ import annotations

from collections.abc import Mapping
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


def _first_known(partition: Mapping[str, Any], *names: str) -> int | None:
    # librdkafka writes -1001 (OFFSET_INVALID) for an offset it does not know yet.
    for name in names:
        value = partition.get(name)
        if isinstance(value, int) and value >= 0:
            return value
    return None


class ConsumerLagGauge:
    """Keeps a ``[topic, partition]`` gauge equal to the last statistics document.

    A partition that is no longer assigned leaves the gauge, so a revoked partition's last lag
    does not stay on the dashboard as if it were still this member's.
    """

    def __init__(self, gauge: Gauge, interval_ms: int = STATISTICS_INTERVAL_MS) -> None:
        self._gauge = gauge
        self._interval_ms = interval_ms
        self._shown: set[TopicPartition] = set()

    def client_config(self) -> dict[str, Any]:
        """librdkafka settings that make the consumer report its statistics here."""
        return {"statistics.interval.ms": self._interval_ms, "stats_cb": self.on_statistics}

    def on_statistics(self, document: str) -> None:
        try:
            stats = orjson.loads(document)
        except orjson.JSONDecodeError as exc:
            log.warning("statistics_unreadable", error=str(exc))
            return
        lags = consumer_lag(stats) if isinstance(stats, Mapping) else {}
        for topic, partition in self._shown - lags.keys():
            self._gauge.remove(topic, str(partition))
        for (topic, partition), lag in lags.items():
            self._gauge.labels(topic, str(partition)).set(lag)
        self._shown = set(lags)
