"""Consumer lag and group state read from librdkafka's statistics documents."""

from __future__ import annotations

from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Gauge

from streamproc.kafka.records import TopicPartition
from streamproc.kafka.statistics import ConsumerStatistics, GroupState, consumer_lag, group_state

INVALID = -1001  # librdkafka's OFFSET_INVALID


def partition(number: int, **offsets: Any) -> dict[str, Any]:
    """A partition entry shaped like librdkafka 2.x writes it (fields this module reads)."""
    entry: dict[str, Any] = {
        "partition": number,
        "desired": True,
        "fetch_state": "active",
        "app_offset": INVALID,
        "committed_offset": INVALID,
        "hi_offset": INVALID,
        "ls_offset": INVALID,
        "consumer_lag": -1,
    }
    entry.update(offsets)
    return entry


def document(*partitions: dict[str, Any], topic: str = "tx") -> dict[str, Any]:
    return {
        "type": "consumer",
        "topics": {
            topic: {"topic": topic, "partitions": {str(p["partition"]): p for p in partitions}}
        },
    }


def test_lag_runs_from_the_position_to_the_last_stable_offset() -> None:
    """The lag is the end of the partition (last stable offset) less the consumer's position."""
    stats = document(
        partition(0, app_offset=14, committed_offset=10, hi_offset=40, ls_offset=30),
        partition(1, app_offset=16, hi_offset=16, ls_offset=16),
    )
    assert consumer_lag(stats) == {TopicPartition("tx", 0): 16, TopicPartition("tx", 1): 0}


def test_before_the_first_record_the_committed_offset_is_the_position() -> None:
    """A partition that handed out nothing yet counts from its committed offset."""
    stats = document(partition(0, committed_offset=5, hi_offset=12))
    assert consumer_lag(stats) == {TopicPartition("tx", 0): 7}


def test_unknown_offsets_and_unassigned_partitions_have_no_lag() -> None:
    """No position, no end, librdkafka's partition -1 or an unassigned partition: no value."""
    stats = document(
        partition(0, hi_offset=12),
        partition(1, app_offset=3),
        partition(-1, app_offset=0, hi_offset=9),
        partition(2, desired=False, app_offset=1, hi_offset=9),
    )
    assert consumer_lag(stats) == {}
    assert consumer_lag({"type": "consumer"}) == {}


def test_gauge_follows_the_assignment() -> None:
    """Each document sets the lag of assigned partitions and removes those no longer assigned."""
    registry = CollectorRegistry()
    gauge = Gauge("lag", "lag", ["topic", "partition"], registry=registry)
    lag = ConsumerStatistics(gauge)
    assert lag.client_config()["stats_cb"] == lag.on_statistics
    lag.on_statistics(
        orjson.dumps(
            document(
                partition(0, app_offset=1, hi_offset=5),
                partition(1, app_offset=2, hi_offset=2),
            )
        ).decode()
    )
    assert registry.get_sample_value("lag", {"topic": "tx", "partition": "0"}) == 4
    assert registry.get_sample_value("lag", {"topic": "tx", "partition": "1"}) == 0
    lag.on_statistics(orjson.dumps(document(partition(1, app_offset=2, hi_offset=9))).decode())
    assert registry.get_sample_value("lag", {"topic": "tx", "partition": "0"}) is None
    assert registry.get_sample_value("lag", {"topic": "tx", "partition": "1"}) == 7


def test_an_unreadable_document_changes_nothing() -> None:
    """A document that is not JSON leaves the last values in place."""
    registry = CollectorRegistry()
    gauge = Gauge("lag", "lag", ["topic", "partition"], registry=registry)
    lag = ConsumerStatistics(gauge)
    lag.on_statistics(orjson.dumps(document(partition(0, app_offset=1, hi_offset=5))).decode())
    lag.on_statistics("{not json")
    assert registry.get_sample_value("lag", {"topic": "tx", "partition": "0"}) == 4


CGRP = {
    "state": "up",
    "stateage": 6001,
    "join_state": "steady",
    "rebalance_age": 5952,
    "rebalance_cnt": 3,
    "rebalance_reason": "group is rebalancing",
    "assignment_size": 2,
}


def test_group_state_is_read_from_the_cgrp_object() -> None:
    """The group handler's state, join state, rebalance count, age and reason, and the number
    of assigned partitions come from the document's ``cgrp`` object (librdkafka 2.x fields)."""
    assert group_state({"cgrp": CGRP}, 12.5) == GroupState(
        state="up",
        join_state="steady",
        rebalances=3,
        rebalance_age_s=5.952,
        rebalance_reason="group is rebalancing",
        assigned=2,
        received_monotonic=12.5,
    )
    # Before its first rebalance a member has no "last rebalance" to date.
    first = group_state({"cgrp": {**CGRP, "rebalance_cnt": 0, "rebalance_age": 0}}, 0.0)
    assert first is not None
    assert first.rebalance_age_s is None
    assert group_state({"type": "producer"}, 0.0) is None


def test_statistics_keep_the_last_group_state() -> None:
    """Each consumer document replaces the group state; one without ``cgrp`` keeps the last."""
    registry = CollectorRegistry()
    gauge = Gauge("lag", "lag", ["topic", "partition"], registry=registry)
    statistics = ConsumerStatistics(gauge, monotonic=lambda: 7.0)
    assert statistics.group is None
    statistics.on_statistics(orjson.dumps({**document(), "cgrp": CGRP}).decode())
    assert statistics.group is not None
    assert statistics.group.rebalances == 3
    assert statistics.group.received_monotonic == 7.0
    statistics.on_statistics(orjson.dumps(document()).decode())
    assert statistics.group.rebalances == 3
    joined = {**CGRP, "rebalance_cnt": 4, "join_state": "wait-join"}
    statistics.on_statistics(orjson.dumps({**document(), "cgrp": joined}).decode())
    assert (statistics.group.rebalances, statistics.group.join_state) == (4, "wait-join")
